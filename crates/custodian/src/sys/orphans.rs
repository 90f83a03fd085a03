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
//! Blocking: this polls `/proc` (not our children, so there is nothing to wait on).

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use super::journal::{ProcStat, all_processes, proc_stat};
use super::process::{Sig, pidfd_open, signal_process};

/// A recorded child whose group may still run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Recorded {
    pub(crate) pid: u32,
    pub(crate) start: u64,
    pub(crate) pgid: u32,
}

/// A dead owner's environment marker: a running process whose environment holds
/// `needle` (`\0NAME=VALUE\0`) and that started no earlier than the owner descends from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Marker {
    pub(crate) needle: Vec<u8>,
    pub(crate) owner_start: u64,
}

/// What became of one recorded group (or marker).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fate {
    /// Nothing of it was running.
    Gone,
    /// The pid belongs to another process now: nothing was signalled.
    Reused,
    /// Signalled; `kill_needed` if SIGTERM and the grace were not enough.
    Stopped { processes: usize, kill_needed: bool },
}

/// How many rounds of SIGKILL (each followed by a rescan for forks in flight) at most.
const KILL_ROUNDS: usize = 8;
/// How long one SIGKILL round waits for its targets to die.
const KILL_WAIT: Duration = Duration::from_secs(1);

struct Member {
    pid: u32,
    start: u64,
    /// `None` where the kernel has no pidfds.
    fd: Option<OwnedFd>,
    group: usize,
}

/// Stops every recorded group, and every process carrying one of the `markers`:
/// SIGTERM to every proven member, up to `grace` for them to exit, then SIGKILL rounds
/// until none runs. One `/proc` scan per round serves all. The fates are the groups'
/// then the markers', in order.
pub(crate) fn stop(
    groups: &[Recorded],
    markers: &[Marker],
    grace: Duration,
) -> io::Result<Vec<Fate>> {
    let n = groups.len() + markers.len();
    let mut fates = vec![Fate::Gone; n];
    let mut members = members_of(groups, markers, &mut fates, &[])?;
    for m in &members {
        let _ = signal_process(m.fd.as_ref().map(AsFd::as_fd), m.pid, Sig::TERM);
    }
    let mut count = vec![0usize; n];
    for m in &members {
        count[m.group] += 1;
    }
    // `checked_add`: a grace too long to represent waits as long as it takes.
    let until = Instant::now().checked_add(grace);
    wait_gone(&mut members, until);
    let mut killed = vec![false; n];
    for _ in 0..KILL_ROUNDS {
        // Forks in flight during the grace join the group: scan again.
        let mut more = members_of(groups, markers, &mut fates, &members)?;
        for m in &more {
            count[m.group] += 1;
        }
        members.append(&mut more);
        members.retain(running);
        if members.is_empty() {
            break;
        }
        for m in &members {
            killed[m.group] = true;
            let _ = signal_process(m.fd.as_ref().map(AsFd::as_fd), m.pid, Sig::KILL);
        }
        wait_gone(&mut members, Instant::now().checked_add(KILL_WAIT));
    }
    for (i, fate) in fates.iter_mut().enumerate() {
        if *fate != Fate::Reused && count[i] > 0 {
            *fate = Fate::Stopped {
                processes: count[i],
                kill_needed: killed[i],
            };
        }
    }
    Ok(fates)
}

/// The running, proven members of every group not known to be reused, minus `known`.
fn members_of(
    groups: &[Recorded],
    markers: &[Marker],
    fates: &mut [Fate],
    known: &[Member],
) -> io::Result<Vec<Member>> {
    let procs = all_processes()?;
    let by_pid: HashMap<u32, ProcStat> = procs.iter().copied().collect();
    let mut out = Vec::new();
    for (i, g) in groups.iter().enumerate() {
        if fates[i] == Fate::Reused {
            continue;
        }
        if by_pid.get(&g.pid).is_some_and(|st| st.start != g.start) {
            fates[i] = Fate::Reused;
            continue;
        }
        for &(pid, st) in &procs {
            let is_leader = pid == g.pid && st.start == g.start;
            let is_member = st.pgid == g.pgid && st.start >= g.start;
            if st.state == b'Z' || !(is_leader || is_member) {
                continue;
            }
            if known
                .iter()
                .chain(&out)
                .any(|m| m.pid == pid && m.start == st.start)
            {
                continue;
            }
            if let Some(m) = open_proven(pid, st.start, i) {
                out.push(m);
            }
        }
    }
    if markers.is_empty() {
        return Ok(out);
    }
    for &(pid, st) in &procs {
        if st.state == b'Z'
            || known
                .iter()
                .chain(&out)
                .any(|m| m.pid == pid && m.start == st.start)
        {
            continue;
        }
        // A leading NUL, so that a needle (`\0NAME=VALUE\0`) matches a whole entry.
        let mut env = vec![0u8];
        match std::fs::File::open(format!("/proc/{pid}/environ")) {
            Ok(mut f) => drop(std::io::Read::read_to_end(&mut f, &mut env)),
            Err(_) => continue,
        }
        let found = markers.iter().position(|m| {
            st.start >= m.owner_start && env.windows(m.needle.len()).any(|w| w == m.needle)
        });
        if let Some(j) = found
            && let Some(m) = open_proven(pid, st.start, groups.len() + j)
        {
            out.push(m);
        }
    }
    Ok(out)
}

/// A pidfd for `pid`, kept only if the process behind it started at `start`.
fn open_proven(pid: u32, start: u64, group: usize) -> Option<Member> {
    let fd = pidfd_open(pid).ok()?;
    // Read after the open: the pidfd names the process that had `pid` at the open, so
    // a matching start time now proves it is the one we scanned.
    let st = proc_stat(pid).ok()??;
    (st.start == start && st.state != b'Z').then_some(Member {
        pid,
        start,
        fd,
        group,
    })
}

fn running(m: &Member) -> bool {
    matches!(proc_stat(m.pid), Ok(Some(st)) if st.start == m.start && st.state != b'Z')
}

/// Polls until no member runs or `until` passes (`None`: no end).
fn wait_gone(members: &mut Vec<Member>, until: Option<Instant>) {
    let mut pause = Duration::from_millis(1);
    loop {
        members.retain(running);
        if members.is_empty() || until.is_some_and(|u| Instant::now() >= u) {
            return;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}
