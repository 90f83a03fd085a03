//! The child-subreaper opt-in (`Builder::child_subreaper`): processes that left a
//! managed child's process group (`setsid`, a double fork) and were orphaned become
//! children of this process; this module finds the ones it can *prove* descend from this
//! supervisor's children, stops them with the managed child that spawned them, and reaps
//! them by pid. It never reaps anything else: never `waitpid(-1)`.
//!
//! Every managed child carries the supervisor's owner marker (`sys::marker`:
//! `CUSTODIAN_OWNER=<pid>-<start>-<16 hex>-<seq>`, the same one the crash journal's
//! recovery matches), inherited by what it forks. A child of this process (`PPid` us) is
//! *adopted* by this supervisor when it is not a managed child and:
//! 1. alive, its environment carries this supervisor's marker; or
//! 2. alive or a zombie, its process group is that of a *leader* this supervisor owns (a
//!    managed child, or an adopted process), it is not that leader itself, it started no
//!    earlier than the leader, and, if the leader has been reaped, no later than the
//!    tick of that reap. Why it holds: a pid (so a group id) is only reused once nothing
//!    uses it as a pid or group; a zombie (or live) member still in group `g` proves `g`
//!    has been in use since it joined, and joining needs the group to exist; pids are
//!    allocated cyclically, so a reuse within the tick of the reap takes a full wrap.
//!
//! A zombie matching neither was never seen alive and is left (it may be a child that
//! other code spawned and will wait for); so is a live child without either proof. The
//! one way to fool proof 2: other code spawning its own child *into* a managed child's
//! process group (`process_group(pgid)`); documented in `docs/processes.md`.
//!
//! Invariants:
//! - a spawn holds `gate` shared from before the fork until the child is recorded in
//!   `leaders`; a scan decides under `gate` exclusively, so it never takes a managed child
//!   (which carries the marker) for an adopted one;
//! - adopted processes are signalled and reaped under `state`, and only while recorded:
//!   they are unreaped children of ours, so their pids (and group ids) are theirs;
//! - lock order: `gate`, then `state`; neither is held across a sleep or a read of a
//!   process's environment (`/proc/PID/environ`, read before a scan takes them).

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard};
use std::time::Duration;

use crate::sys::marker::{OwnerMark, owner_in};
use crate::sys::process::{Sig, signal_group};
use crate::sys::procfs::{self, ProcStat as Proc};
use crate::sys::subreaper::{self as sys, SubreaperHold};

mod stop;

use crate::stats::AdoptionStats;
pub(crate) use stop::STRAY_GRACE;

/// Children's markers' sequence numbers by (pid, start time), read before a scan takes
/// its locks: `Ok(None)` no marker of this supervisor's, `Err` unknown (unreadable).
type Markers = HashMap<(u32, u64), io::Result<Option<u64>>>;
/// How many reaped leaders are remembered for the group proof of late zombies.
const RETIRED_KEPT: usize = 4096;

/// A supervisor's reaper: its marker, what it owns, and the process-wide setting's hold.
pub(crate) struct Reaper {
    me: u32,
    /// The supervisor's owner marker (shared with its journal, if any).
    mark: Arc<OwnerMark>,
    gate: RwLock<()>,
    state: Mutex<State>,
    counts: Counts,
    _hold: SubreaperHold,
}

#[derive(Default)]
struct Counts {
    // Relaxed: independent tallies for the report.
    adopted: AtomicU64,
    reaped: AtomicU64,
    kill_needed: AtomicU64,
    unproven: AtomicU64,
}

#[derive(Clone, Copy, Debug)]
struct Leader {
    seq: u64,
    start: u64,
    managed: bool,
    /// The tick at which it was reaped, once it was.
    reaped_at: Option<u64>,
}

#[derive(Default)]
struct State {
    /// Managed children and adopted processes by pid: the groups they lead prove
    /// membership.
    leaders: HashMap<u32, Leader>,
    /// Reaped leaders, oldest first, dropped past [`RETIRED_KEPT`].
    retired: VecDeque<u32>,
    /// Adopted processes not reaped yet: pid → (start, seq).
    adopted: HashMap<u32, (u64, u64)>,
    /// Sequence numbers of managed children not released yet, with their grace.
    live: HashMap<u64, Duration>,
    /// Children of ours already found to carry no marker (pid, start): not read again.
    unmarked: HashSet<(u32, u64)>,
}

impl Reaper {
    /// Makes this process a child subreaper; its children carry `mark` (the journal's,
    /// when the supervisor has one: one marker per supervisor), or a new one.
    pub(crate) fn start(mark: Option<Arc<OwnerMark>>) -> io::Result<Self> {
        let hold = sys::hold()?;
        let me = std::process::id();
        // Without a readable `/proc` (unmounted, an empty dir) every scan would find
        // nothing: orphans re-parented to us would be left, silently. Refuse instead.
        procfs::stat_of(me)?;
        let mark = match mark {
            Some(m) => m,
            None => Arc::new(OwnerMark::new()?),
        };
        Ok(Reaper {
            me,
            mark,
            gate: RwLock::new(()),
            state: Mutex::new(State::default()),
            counts: Counts::default(),
            _hold: hold,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update is a single insert or remove.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new child's sequence number and marker value; `grace` is how long its adopted
    /// descendants get between SIGTERM and SIGKILL.
    pub(crate) fn marker(&self, grace: Duration) -> (u64, std::ffi::OsString) {
        let (seq, value) = self.mark.next();
        self.lock().live.insert(seq, grace);
        (seq, value)
    }

    /// Held from before a managed child's fork until [`managed`](Self::managed).
    pub(crate) fn spawn_gate(&self) -> RwLockReadGuard<'_, ()> {
        self.gate.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a managed child just spawned (unreaped).
    pub(crate) fn managed(&self, pid: u32, seq: u64) {
        let start = procfs::stat(pid).map_or(0, |p| p.start);
        let leader = Leader {
            seq,
            start,
            managed: true,
            reaped_at: None,
        };
        self.lock().leaders.insert(pid, leader);
    }

    /// A managed child was reaped: its pid may be reused from now on.
    pub(crate) fn managed_reaped(&self, pid: u32) {
        let mut st = self.lock();
        retire(&mut st, pid);
    }

    /// A managed child's release has stopped what was adopted from it (or it failed to
    /// start): what is adopted from it from now on is a stray, stopped by the scan task.
    pub(crate) fn released(&self, seq: u64) {
        self.lock().live.remove(&seq);
    }

    /// Finds and records adopted children, and reaps adopted zombies. Returns the
    /// sequence numbers of adopted processes whose managed child was released already
    /// (strays to stop). Blocking: one `/proc` walk.
    pub(crate) fn scan(&self) -> io::Result<Vec<(u64, Duration)>> {
        // Managed children are not even read: with many, each scan would be O(them).
        let managed: HashSet<u32> = (self.lock().leaders.iter())
            .filter(|(_, l)| l.managed && l.reaped_at.is_none())
            .map(|(&pid, _)| pid)
            .collect();
        let kids = procfs::children_of(self.me, |pid| managed.contains(&pid))?;
        let need: Vec<Proc> = {
            let st = self.lock();
            kids.iter()
                .filter(|k| !k.zombie && !st.adopted.contains_key(&k.pid))
                .filter(|k| !st.unmarked.contains(&(k.pid, k.start)))
                .copied()
                .collect()
        };
        let mut envs = self.read_markers(need);
        let _gate = self.gate.write().unwrap_or_else(PoisonError::into_inner);
        let mut st = self.lock();
        let mut unproven = 0;
        let seen: HashSet<(u32, u64)> = kids.iter().map(|k| (k.pid, k.start)).collect();
        st.unmarked.retain(|k| seen.contains(k));
        self.forget_reaped_elsewhere(&mut st, &seen);
        for k in kids {
            if st
                .leaders
                .get(&k.pid)
                .is_some_and(|l| l.managed && l.reaped_at.is_none())
            {
                continue;
            }
            if let Some(&(start, _)) = st.adopted.get(&k.pid) {
                if start == k.start && k.zombie {
                    self.reap_adopted(&mut st, k.pid);
                }
                continue;
            }
            match self.prove(&mut st, k, &mut envs) {
                Some(seq) => {
                    st.adopted.insert(k.pid, (k.start, seq));
                    let leader = Leader {
                        seq,
                        start: k.start,
                        managed: false,
                        reaped_at: None,
                    };
                    st.leaders.insert(k.pid, leader);
                    self.counts.adopted.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(pid = k.pid, seq, "adopted a descendant of a managed child");
                    if k.zombie {
                        self.reap_adopted(&mut st, k.pid);
                    }
                }
                None if k.zombie => unproven += 1,
                None => {}
            }
        }
        self.counts.unproven.store(unproven, Ordering::Relaxed);
        let mut strays: Vec<(u64, Duration)> = st
            .adopted
            .values()
            .filter(|(_, seq)| !st.live.contains_key(seq))
            .map(|&(_, seq)| (seq, STRAY_GRACE))
            .collect();
        strays.sort_unstable_by_key(|s| s.0);
        strays.dedup_by_key(|s| s.0);
        Ok(strays)
    }

    /// The markers of `need` (live children not adopted or found unmarked yet), read
    /// with no lock held: a slow `/proc/PID/environ` read (up to 1 MiB, a process
    /// mid-`execve`) must not stall spawns (the gate) or the reports (the state). Each is
    /// kept only if the process was still the same child of ours (start time) after
    /// its environment was read. Whether one is used is decided under the gate.
    fn read_markers(&self, need: Vec<Proc>) -> Markers {
        need.into_iter()
            .filter_map(|k| {
                // The one parser; never an older version's name (no supervisor of this
                // process wrote it).
                let marker = procfs::environ(k.pid).map(|env| {
                    let owner = owner_in(&env, false);
                    owner.and_then(|o| self.mark.seq_of(&o))
                });
                // Read after the environment: it was this process's.
                let same =
                    procfs::stat(k.pid).is_some_and(|p| p.ppid == self.me && p.start == k.start);
                same.then_some(((k.pid, k.start), marker))
            })
            .collect()
    }

    /// The sequence number of the managed child `k` (a child of ours, not managed)
    /// provably descends from, if any: by its group, or by its marker in `envs` (read
    /// before the locks were taken, by [`read_markers`](Self::read_markers)).
    fn prove(&self, st: &mut State, k: Proc, envs: &mut Markers) -> Option<u64> {
        // Still our child, and the same process (same start time), after the scan.
        let same = || procfs::stat(k.pid).is_some_and(|p| p.ppid == self.me && p.start == k.start);
        let by_group = st.leaders.get(&k.pgid).and_then(|l| {
            let joined_ours = k.pid != k.pgid
                && k.start >= l.start
                && l.reaped_at.is_none_or(|r| k.start <= r.saturating_add(1));
            joined_ours.then_some(l.seq)
        });
        if by_group.is_some() {
            return by_group.filter(|_| same());
        }
        if k.zombie || st.unmarked.contains(&(k.pid, k.start)) {
            return None;
        }
        // Not read (gone or another process by then), or unknown (mid-`execve`,
        // unreadable): asked again at the next scan.
        let Some(Ok(seq)) = envs.remove(&(k.pid, k.start)) else {
            return None;
        };
        if seq.is_none() {
            st.unmarked.insert((k.pid, k.start));
        }
        seq
    }

    /// Forgets adopted processes that are no longer our children: other code reaped
    /// them (a `waitpid(-1)` loop, `SIGCHLD` ignored), so their pids may name others now
    /// and must not be signalled or waited for. Checked again by pid, as a `/proc` walk
    /// skips what it cannot read. Under `gate` and `state`: our adopted children do not
    /// come and go meanwhile, except by exiting.
    fn forget_reaped_elsewhere(&self, st: &mut State, seen: &HashSet<(u32, u64)>) {
        let gone: Vec<u32> = st
            .adopted
            .iter()
            .filter(|&(&pid, &(start, _))| !seen.contains(&(pid, start)))
            .filter(|&(&pid, &(start, _))| match procfs::stat_of(pid) {
                Ok(p) => p.ppid != self.me || p.start != start,
                Err(e) => e.kind() == io::ErrorKind::NotFound,
            })
            .map(|(&pid, _)| pid)
            .collect();
        for pid in gone {
            tracing::warn!(pid, "an adopted process was reaped by other code");
            st.adopted.remove(&pid);
            // Not `retire`: when it was reaped is unknown, so its group proves nothing.
            st.leaders.remove(&pid);
        }
    }

    /// Reaps a recorded adopted process if it has exited. Under `state`.
    fn reap_adopted(&self, st: &mut State, pid: u32) -> bool {
        match sys::reap(pid) {
            Ok(false) => false,
            r => {
                // Reaped, or reaped by someone else (`ECHILD`): either way no longer ours.
                if let Err(e) = r {
                    tracing::warn!(pid, error = %e, "an adopted process was reaped elsewhere");
                } else {
                    self.counts.reaped.fetch_add(1, Ordering::Relaxed);
                }
                st.adopted.remove(&pid);
                retire(st, pid);
                true
            }
        }
    }

    /// Signals every adopted process of `seq` (every one if `None`) and the group it
    /// leads, if any. Returns how many are still recorded.
    fn signal(&self, seq: Option<u64>, sig: Sig) -> usize {
        let st = self.lock();
        let mut n = 0;
        for (&pid, &(_, s)) in &st.adopted {
            if seq.is_none_or(|q| q == s) {
                n += 1;
                // Unreaped children of ours: the pid, and a group with its id, are theirs.
                let _ = signal_group(pid, sig);
                if let Some(p) = i32::try_from(pid)
                    .ok()
                    .and_then(rustix::process::Pid::from_raw)
                {
                    let _ = rustix::process::kill_process(p, sig);
                }
            }
        }
        n
    }

    /// Counters for the stats and the shutdown report.
    pub(crate) fn stats(&self) -> AdoptionStats {
        let live = self.lock().adopted.len() as u64;
        AdoptionStats {
            adopted: self.counts.adopted.load(Ordering::Relaxed),
            reaped: self.counts.reaped.load(Ordering::Relaxed),
            kill_needed: self.counts.kill_needed.load(Ordering::Relaxed),
            live,
            unproven_zombies: self.counts.unproven.load(Ordering::Relaxed),
        }
    }
}

/// Marks `pid` reaped in `leaders` and remembers it for late zombies' group proof.
fn retire(st: &mut State, pid: u32) {
    if let Some(l) = st.leaders.get_mut(&pid) {
        l.reaped_at = Some(procfs::now_ticks());
        st.retired.push_back(pid);
    }
    while st.retired.len() > RETIRED_KEPT {
        if let Some(old) = st.retired.pop_front()
            && st.leaders.get(&old).is_some_and(|l| l.reaped_at.is_some())
        {
            st.leaders.remove(&old);
        }
    }
}

impl Drop for Reaper {
    /// The supervisor is gone: SIGKILL what is still adopted (constant work per process;
    /// nothing waits). The hold, dropped after this, gives up the setting.
    fn drop(&mut self) {
        self.signal(None, Sig::KILL);
    }
}

#[cfg(test)]
mod tests;

impl std::fmt::Debug for Reaper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reaper")
            .field("marker", &self.mark.stem())
            .finish_non_exhaustive()
    }
}
