//! Stopping the process groups a dead owner left: processes that are not our children,
//! found in `/proc` and signalled only once their identity is proven.
//!
//! A recorded child is `(pid, start time, pgid)`. What is signalled, and why it is safe:
//! - if a process has the recorded pid with *another* start time, the pid was reused:
//!   the group is left alone entirely (a pid is only reused once no process uses it as a
//!   pid, a group id or a session id, so the recorded group is gone too);
//! - otherwise a member is a process whose group is the recorded one and whose start
//!   time is not before the recorded child's (a member forked from it cannot be older),
//!   or the recorded child itself (same pid and start time, even if it changed group);
//! - each member is opened as a pidfd and its start time read *again* after the open:
//!   the signal goes to the pidfd, which can only name that process, so a pid reused
//!   between the scan and the signal is never hit. Where the kernel has no pidfd
//!   (before 5.3) the signal goes by pid right after the check (a window of a few µs).
//!
//! The residual case, documented in `docs/crash-recovery.md`: the recorded leader and
//! every member exited, its pid was reused by a process that made *itself* a group
//! leader, and that new leader has exited leaving members younger than the record. Such
//! members would pass the checks above; it takes a full pid-space wrap-around between the
//! crash and the sweep.
//!
//! A dead owner's cgroup (the cgroup tier, whose children carry no marker) is a third
//! kind of target: a process that the cgroup, opened and proven by the caller (the
//! journal's record, its inode, and the owner's pid in the name; `recovery/cgroup.rs`),
//! lists in its `cgroup.procs` or in those of the cgroups below it. Each member is then
//! opened as a pidfd and checked against its start time as above.
//!
//! Never signalled, whatever matches: the sweeping process and its ancestors (`spare`),
//! and the members of its own process group (its pipeline's partners), reported as
//! spared. The escalation is `sys::escalate::run` (its loop, its policy and
//! its final look): after the last SIGKILL round, members still running (a signal refused with
//! `EPERM`, a process stuck in the kernel) are reported as survivors, never as stopped.
//!
//! Blocking: this polls `/proc` (not our children, so there is nothing to wait on).

use std::collections::{HashMap, HashSet};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use super::cgroup::procs_below;
pub(crate) use super::escalate::{Left, LeftWhy};
use super::escalate::{Policy, Targets, run};
use super::marker::owner_in;
use super::process::{Sig, pidfd_inode, pidfd_open, signal_process};
use super::procfs::{ProcStat, all_processes, environ, proc_stat};

/// A recorded child whose group may still run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Recorded {
    pub(crate) pid: u32,
    pub(crate) start: u64,
    pub(crate) pgid: u32,
    /// Its own grace between SIGTERM and SIGKILL, if the journal recorded one.
    pub(crate) grace: Option<Duration>,
    /// Its pidfd's inode (`pidfs`), if the journal recorded one: a process with its pid
    /// and start time but another inode is another process.
    pub(crate) pidfd_ino: Option<u64>,
}

/// A dead owner's marker (`sys::marker`): a running process whose environment carries a
/// marker with this `stem` (the journal's checked name) and that started no earlier than
/// the owner descends from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Marker {
    pub(crate) stem: Vec<u8>,
    pub(crate) owner_start: u64,
}

/// A dead owner's supervisor cgroup, proven by the caller: a running process in it (or
/// in a cgroup below it) that started no earlier than the owner descends from it.
#[derive(Clone, Debug)]
pub(crate) struct CgroupMark {
    /// The proven cgroup, opened: its members are what its `cgroup.procs` (and those
    /// below it) list, never what a path or a name suggests (a cgroup of the same name
    /// elsewhere is another's; tests/review_cg4_cgroup_decoy.rs).
    pub(crate) dir: std::sync::Arc<OwnedFd>,
    pub(crate) owner_start: u64,
}

/// What to stop: recorded groups, and the processes carrying a marker or in a cgroup.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Wanted<'a> {
    pub(crate) groups: &'a [Recorded],
    pub(crate) markers: &'a [Marker],
    pub(crate) cgroups: &'a [CgroupMark],
}

impl Wanted<'_> {
    /// How many targets (each gets a [`Fate`]): groups, then markers, then cgroups.
    pub(crate) fn len(&self) -> usize {
        self.groups.len() + self.markers.len() + self.cgroups.len()
    }

    /// Whether there is nothing to look for.
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What became of one recorded group (or marker, or cgroup).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fate {
    /// Nothing of it was running.
    Gone,
    /// The pid belongs to another process now: nothing was signalled.
    Reused,
    /// Members ended after its signals; `kill_needed` if SIGTERM and the grace were not
    /// enough. `processes` counts those that ended, never a survivor.
    Stopped { processes: usize, kill_needed: bool },
}

/// What [`stop`] did.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// The groups', the markers' then the cgroups' fates, in order.
    pub(crate) fates: Vec<Fate>,
    /// Members still running after the last SIGKILL round.
    pub(crate) survivors: Vec<Left>,
    /// Matches never signalled: the sweeper and its ancestors.
    pub(crate) spared: Vec<Left>,
}

/// At most 8 SIGKILL rounds (each after a rescan for forks in flight), each waiting 1 s
/// for its targets; the grace is each member's own (see `sys::escalate`).
fn policy(grace: Duration) -> Policy {
    Policy::new(grace, 8, Duration::from_secs(1))
}

struct Member {
    pid: u32,
    start: u64,
    /// `None` where the kernel has no pidfds.
    fd: Option<OwnedFd>,
    group: usize,
    /// When its grace ends (`None`: never).
    deadline: Option<Instant>,
}

/// Everything one stop has looked at, so that a rescan adds only new processes.
struct Scan<'a> {
    groups: &'a [Recorded],
    markers: &'a [Marker],
    cgroups: &'a [CgroupMark],
    spare: &'a [(u32, u64)],
    /// The sweeping process's own group: its pipeline's partners are spared too (`None`:
    /// not visible, its leader outside this pid namespace).
    own_pgid: Option<u32>,
    grace: Duration,
    fates: Vec<Fate>,
    /// Groups found running at an earlier look; once their pid names another process
    /// they are done (not looked at again) but stay stopped, not reused.
    had: Vec<bool>,
    done: Vec<bool>,
    seen: HashSet<(u32, u64)>,
    spared: Vec<Left>,
}

/// Stops every recorded group, every process carrying one of the markers and every
/// process in one of the cgroups: SIGTERM to every proven member, up to its grace (the
/// record's, else `grace`) for it to exit, then SIGKILL rounds until none runs or none
/// can be killed. One `/proc` scan per round serves all. `spare` (pid, start time) is
/// never signalled.
pub(crate) fn stop(
    wanted: Wanted<'_>,
    grace: Duration,
    spare: &[(u32, u64)],
) -> io::Result<Outcome> {
    let Wanted {
        groups,
        markers,
        cgroups,
    } = wanted;
    let n = wanted.len();
    let policy = policy(grace);
    let mut scan = Scan {
        groups,
        markers,
        cgroups,
        spare,
        // Not `getpgrp`: in a pid namespace whose group leader is outside, it is 0. A
        // sweeper inside a recorded group (a script without job control) spares only
        // itself and its ancestors there: the group is the dead owner's to stop.
        own_pgid: crate::sys::procfs::self_pgid().filter(|g| groups.iter().all(|r| r.pgid != *g)),
        grace,
        fates: vec![Fate::Gone; n],
        had: vec![false; n],
        done: vec![false; n],
        seen: HashSet::new(),
        spared: Vec::new(),
    };
    let ran = run(&mut scan, &policy)?;
    let mut count = vec![0usize; n];
    let mut killed = vec![false; n];
    for &(_, _, group) in &ran.found {
        count[group] += 1;
    }
    for &group in &ran.killed {
        killed[group] = true;
    }
    let survivors = ran.survivors;
    // A survivor was signalled but not stopped: it is counted as a survivor only.
    for s in &survivors {
        count[s.group] = count[s.group].saturating_sub(1);
    }
    let mut fates = scan.fates;
    for (i, fate) in fates.iter_mut().enumerate() {
        if *fate != Fate::Reused && count[i] > 0 {
            *fate = Fate::Stopped {
                processes: count[i],
                kill_needed: killed[i],
            };
        }
    }
    Ok(Outcome {
        fates,
        survivors,
        spared: scan.spared,
    })
}

impl Targets for Scan<'_> {
    type Member = Member;

    fn id(m: &Member) -> (u32, u64, usize) {
        (m.pid, m.start, m.group)
    }

    fn find(&mut self, t0: Instant) -> io::Result<Vec<(Member, Option<Instant>)>> {
        let members = self.members(t0)?;
        Ok(members
            .into_iter()
            .map(|m| {
                let deadline = m.deadline;
                (m, deadline)
            })
            .collect())
    }

    fn signal(&mut self, m: &Member, sig: Sig) -> io::Result<()> {
        signal_process(m.fd.as_ref().map(AsFd::as_fd), m.pid, sig)
    }

    fn running(&mut self, m: &Member) -> bool {
        alive(m.pid, m.start)
    }

    /// Not our children: nothing is re-parented to the sweeper, and a fork in flight
    /// comes from a member (found by the rescan before each SIGKILL round).
    const RESCAN_IN_GRACE: bool = false;
}

impl Scan<'_> {
    /// The running, proven members of every group not known to be reused that this
    /// stop has not seen yet; the sweeper and its ancestors go to `spared` instead.
    fn members(&mut self, t0: Instant) -> io::Result<Vec<Member>> {
        let procs = all_processes()?;
        let by_pid: HashMap<u32, ProcStat> = procs.iter().map(|st| (st.pid, *st)).collect();
        let mut found = Vec::new();
        for (i, g) in self.groups.iter().enumerate() {
            if self.fates[i] == Fate::Reused || self.done[i] {
                continue;
            }
            if by_pid.get(&g.pid).is_some_and(|st| st.start != g.start) || !same_inode(g) {
                // Nothing is left of the group (its id is free once its pid is reused):
                // a group found at an earlier look (stopped by its signals, before the
                // look of a SIGKILL round) is done, not "reused, nothing signalled".
                if self.had[i] {
                    self.done[i] = true;
                } else {
                    self.fates[i] = Fate::Reused;
                }
                continue;
            }
            for st in &procs {
                let is_leader = st.pid == g.pid && st.start == g.start;
                let is_member = st.pgid == g.pgid && st.start >= g.start;
                if !st.zombie && (is_leader || is_member) {
                    found.push((st.pid, st.start, i, st.pgid));
                    self.had[i] = true;
                }
            }
        }
        if !self.markers.is_empty() {
            for st in &procs {
                if st.zombie || self.seen.contains(&(st.pid, st.start)) {
                    continue;
                }
                let Ok(env) = environ(st.pid) else {
                    continue;
                };
                // An older version's name too: a dead owner may predate the one marker.
                let Some(owner) = owner_in(&env, true) else {
                    continue;
                };
                let hit = (self.markers.iter())
                    .position(|m| st.start >= m.owner_start && owner.stem == m.stem);
                if let Some(j) = hit {
                    found.push((st.pid, st.start, self.groups.len() + j, st.pgid));
                }
            }
        }
        // Read after the `/proc` scan: a pid listed here that was another process at the
        // scan (since exited, the pid reused by a member) has the scan's start time,
        // which `open_proven` refuses. One unreadable cgroup is left to its kill.
        let first = self.groups.len() + self.markers.len();
        for (j, c) in self.cgroups.iter().enumerate() {
            let Ok(pids) = procs_below(&c.dir) else {
                continue;
            };
            let pids: HashSet<u32> = pids.into_iter().collect();
            for st in &procs {
                let new = !st.zombie && !self.seen.contains(&(st.pid, st.start));
                if new && st.start >= c.owner_start && pids.contains(&st.pid) {
                    found.push((st.pid, st.start, first + j, st.pgid));
                }
            }
        }
        let mut out = Vec::new();
        for (pid, start, group, pgid) in found {
            if !self.seen.insert((pid, start)) {
                continue;
            }
            let spared = match self.spare.iter().position(|&s| s == (pid, start)) {
                Some(0) => Some(LeftWhy::Sweeper),
                Some(_) => Some(LeftWhy::Ancestor),
                None if Some(pgid) == self.own_pgid => Some(LeftWhy::SweeperGroup),
                None => None,
            };
            if let Some(why) = spared {
                self.spared.push(Left {
                    pid,
                    start,
                    group,
                    why,
                });
                continue;
            }
            let grace = self
                .groups
                .get(group)
                .and_then(|g| g.grace)
                .unwrap_or(self.grace);
            if let Some(m) = open_proven(pid, start, group, policy(grace).grace_end(t0)) {
                out.push(m);
            }
        }
        Ok(out)
    }
}

/// Unless the record's pidfd inode names another process than the one with its pid now
/// (checked only where both are known: a recorded inode, `pidfs` here, a process there).
fn same_inode(g: &Recorded) -> bool {
    let Some(ino) = g.pidfd_ino else {
        return true;
    };
    let now = pidfd_open(g.pid)
        .ok()
        .flatten()
        .and_then(|fd| pidfd_inode(fd.as_fd()));
    now.is_none_or(|now| now == ino)
}

/// A pidfd for `pid`, kept only if the process behind it started at `start`.
fn open_proven(pid: u32, start: u64, group: usize, deadline: Option<Instant>) -> Option<Member> {
    let fd = pidfd_open(pid).ok()?;
    // Read after the open: the pidfd names the process that had `pid` at the open, so
    // a matching start time now proves it is the one we scanned.
    let st = proc_stat(pid).ok()??;
    // `zombie`, not the state letter: a process whose main thread exited while others
    // run shows `Z` and still runs (tests/review_final4_main_thread_exited.rs).
    (st.start == start && !st.zombie).then_some(Member {
        pid,
        start,
        fd,
        group,
        deadline,
    })
}

/// Whether the process `(pid, start)` is running (not a zombie).
pub(crate) fn alive(pid: u32, start: u64) -> bool {
    matches!(proc_stat(pid), Ok(Some(st)) if st.start == start && !st.zombie)
}
