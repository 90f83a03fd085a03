//! Stopping what a managed child's descendants left adopted, through the one escalation
//! (`sys::escalate::run`, over [`Adopted`]): SIGTERM to each adopted process and the
//! group it leads, up to the child's grace for them to exit (each is reaped as it does,
//! and every poll scans for processes adopted meanwhile: the children of a process just
//! killed are re-parented to us), then SIGKILL rounds, and the final look: what is still
//! adopted then is named, pid and reason, in the stop's error. Blocking: callers run it
//! on the blocking pool.

use std::collections::HashSet;
use std::io;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::Reaper;
use crate::sys::escalate::{
    Backoff, Left, LeftWhy, Policy, Targets, final_look, run, survivors_error,
};
use crate::sys::process::{Sig, signal_group};

/// The grace of processes adopted after their managed child was released.
pub(crate) const STRAY_GRACE: Duration = Duration::from_secs(2);

/// `grace`, then at most 8 SIGKILL rounds, each waiting 500 ms (see `sys::escalate`).
fn policy(grace: Duration) -> Policy {
    Policy::new(grace, 8, Duration::from_millis(500))
}
/// How long the emergency path waits for SIGKILLed processes to exit.
const EMERGENCY_WAIT: Duration = Duration::from_millis(200);

impl Reaper {
    /// How many adopted processes of `seq` (all if `None`) are recorded now.
    fn count(&self, seq: Option<u64>) -> usize {
        let st = self.lock();
        st.adopted
            .values()
            .filter(|(_, s)| seq.is_none_or(|q| q == *s))
            .count()
    }

    /// Scans until nothing of `seq` is adopted in two scans in a row (a process killed
    /// between them may have had children re-parented to us), or `until` passes, or
    /// `cut` fires. `on_scan` runs after each scan. Whether it emptied.
    fn wait_empty(
        &self,
        seq: Option<u64>,
        until: Option<Instant>,
        cut: Option<&CancellationToken>,
        mut on_scan: impl FnMut(&Self),
    ) -> io::Result<bool> {
        let mut pause = Backoff::new(Duration::from_millis(2), Duration::from_millis(50));
        let mut quiet = 0;
        loop {
            self.scan()?;
            on_scan(self);
            if self.count(seq) == 0 {
                quiet += 1;
                if quiet >= 2 {
                    return Ok(true);
                }
                continue;
            }
            quiet = 0;
            if until.is_some_and(|u| Instant::now() >= u) || cut.is_some_and(|c| c.is_cancelled()) {
                return Ok(false);
            }
            std::thread::sleep(pause.next_pause());
        }
    }

    /// Stops what is adopted from the managed child `seq` (everything adopted if `None`):
    /// the escalation of `sys::escalate` (SIGTERM, up to `grace`, ended early when `cut`
    /// fires, SIGKILL rounds, the final look), looking for newly adopted processes at
    /// each poll and reaping each as it exits. A grace too long to represent waits as
    /// long as it takes, short of the cut. Blocking.
    ///
    /// # Errors
    ///
    /// `/proc` cannot be read; `TimedOut` naming each process still adopted after the
    /// last SIGKILL round (or that refused it), by pid and reason.
    pub(crate) fn stop(
        &self,
        seq: Option<u64>,
        grace: Duration,
        cut: Option<&CancellationToken>,
    ) -> io::Result<()> {
        // Nothing adopted from it: nothing of ours was killed that could re-parent more.
        self.scan()?;
        if self.count(seq) == 0 {
            return Ok(());
        }
        let policy = policy(grace);
        let mut adopted = Adopted {
            reaper: self,
            seq,
            cut,
            grace_end: None,
            policy,
            seen: HashSet::new(),
        };
        let ran = run(&mut adopted, &policy)?;
        // Relaxed: a tally for the report.
        (self.counts.kill_needed).fetch_add(ran.killed.len() as u64, Ordering::Relaxed);
        if ran.survivors.is_empty() {
            return Ok(());
        }
        Err(survivors_error("adopted processes", &ran.survivors))
    }

    /// Signals one adopted process and the group it leads, only while it is recorded
    /// (an unreaped child of ours: its pid, and a group with its id, are its own).
    fn signal_one(&self, pid: u32, start: u64, sig: Sig) -> io::Result<()> {
        let st = self.lock();
        if st.adopted.get(&pid).is_none_or(|&(s, _)| s != start) {
            return Ok(());
        }
        let _ = signal_group(pid, sig);
        let p = i32::try_from(pid)
            .ok()
            .and_then(rustix::process::Pid::from_raw)
            .ok_or_else(|| io::Error::from(rustix::io::Errno::INVAL))?;
        match rustix::process::kill_process(p, sig) {
            Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The final look: what of `seq` (all if `None`) is still adopted, named with its
    /// reason, as the stop's error.
    pub(super) fn survivors(&self, seq: Option<u64>) -> io::Error {
        let left: Vec<Left> = {
            let st = self.lock();
            (st.adopted.iter())
                .filter(|(_, (_, s))| seq.is_none_or(|q| q == *s))
                .map(|(&pid, &(start, s))| {
                    // An unreaped child of ours: its pid is its own, so asking is safe.
                    let refused = i32::try_from(pid)
                        .ok()
                        .and_then(rustix::process::Pid::from_raw)
                        .is_some_and(|p| {
                            rustix::process::test_kill_process(p) == Err(rustix::io::Errno::PERM)
                        });
                    let why = match final_look(pid, start) {
                        _ if refused => LeftWhy::Refused,
                        Some(why) => why,
                        None => LeftWhy::Running,
                    };
                    let group = usize::try_from(s).unwrap_or(usize::MAX);
                    Left {
                        pid,
                        start,
                        group,
                        why,
                    }
                })
                .collect()
        };
        survivors_error("adopted processes", &left)
    }

    /// Emergency: SIGKILL what is adopted from `seq` (all if `None`), a brief wait, the
    /// reaps. Bounded.
    pub(crate) fn kill_now(&self, seq: Option<u64>) -> io::Result<()> {
        self.scan()?;
        if self.kill_counted(seq) == 0 {
            return Ok(());
        }
        let until = Instant::now().checked_add(EMERGENCY_WAIT);
        if self.wait_empty(seq, until, None, |r| {
            r.signal(seq, Sig::KILL);
        })? {
            Ok(())
        } else {
            Err(self.survivors(seq))
        }
    }

    /// SIGKILL to what is adopted from `seq` (all if `None`), counted as needing it;
    /// returns how many were signalled.
    fn kill_counted(&self, seq: Option<u64>) -> usize {
        let n = self.signal(seq, Sig::KILL);
        self.counts
            .kill_needed
            .fetch_add(n as u64, Ordering::Relaxed);
        n
    }

    /// SIGKILL to what is adopted from `seq` now, without a scan or a wait (constant
    /// work per process).
    pub(crate) fn kill_urgent(&self, seq: u64) {
        self.signal(Some(seq), Sig::KILL);
    }
}

/// What one subreaper stop escalates over: the processes adopted from `seq`.
struct Adopted<'a> {
    reaper: &'a Reaper,
    seq: Option<u64>,
    cut: Option<&'a CancellationToken>,
    /// Set at the first look: one grace for everything adopted from the child.
    grace_end: Option<Option<Instant>>,
    policy: Policy,
    /// Adopted processes found already (pid, start time).
    seen: HashSet<(u32, u64)>,
}

impl Targets for Adopted<'_> {
    /// Pid, start time, the managed child's number.
    type Member = (u32, u64, u64);

    fn id(&(pid, start, seq): &Self::Member) -> (u32, u64, usize) {
        (pid, start, usize::try_from(seq).unwrap_or(usize::MAX))
    }

    fn find(&mut self, t0: Instant) -> io::Result<Vec<(Self::Member, Option<Instant>)>> {
        let end = *self.grace_end.get_or_insert(self.policy.grace_end(t0));
        let st = self.reaper.lock();
        let seq = self.seq;
        let mut found = Vec::new();
        for (&pid, &(start, s)) in &st.adopted {
            if seq.is_none_or(|q| q == s) && self.seen.insert((pid, start)) {
                found.push(((pid, start, s), end));
            }
        }
        Ok(found)
    }

    fn signal(&mut self, &(pid, start, _): &Self::Member, sig: Sig) -> io::Result<()> {
        self.reaper.signal_one(pid, start, sig)
    }

    /// A scan: adopts what was re-parented to us, reaps what exited.
    fn poll(&mut self) -> io::Result<()> {
        self.reaper.scan().map(drop)
    }

    fn running(&mut self, &(pid, start, _): &Self::Member) -> bool {
        let st = self.reaper.lock();
        st.adopted.get(&pid).is_some_and(|&(s, _)| s == start)
    }

    fn cut(&self) -> bool {
        self.cut.is_some_and(CancellationToken::is_cancelled)
    }

    /// The children of an adopted process killed now are re-parented to us.
    const RESCAN_IN_GRACE: bool = true;
}
