//! Stopping what a managed child's descendants left adopted: SIGTERM to each adopted
//! process and the group it leads, up to the child's grace for them to exit (each is
//! reaped as it does), then SIGKILL rounds, each with a new scan for processes adopted
//! meanwhile (the children of a process just killed are re-parented to us), and the
//! final look of `sys::escalate`: what is still adopted then is named, pid and reason,
//! in the stop's error. Blocking: callers run it on the blocking pool.

use std::collections::HashSet;
use std::io;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::Reaper;
use crate::sys::escalate::{Backoff, Left, LeftWhy, Policy, final_look, survivors_error};
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

    /// SIGTERM to the adopted processes of `seq` not signalled yet (and their groups).
    fn term_new(&self, seq: Option<u64>, termed: &mut HashSet<u32>) {
        let st = self.lock();
        for (&pid, &(_, s)) in &st.adopted {
            if seq.is_none_or(|q| q == s) && termed.insert(pid) {
                // Unreaped children of ours (see `Reaper::signal`).
                let _ = signal_group(pid, Sig::TERM);
                if let Some(p) = i32::try_from(pid)
                    .ok()
                    .and_then(rustix::process::Pid::from_raw)
                {
                    let _ = rustix::process::kill_process(p, Sig::TERM);
                }
            }
        }
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
    /// SIGTERM, up to `grace` (ended early when `cut` fires), SIGKILL rounds; reaps each
    /// as it exits. A grace too long to represent waits as long as it takes, short of
    /// the cut. Blocking.
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
        let mut termed = HashSet::new();
        let policy = policy(grace);
        let until = policy.grace_end(Instant::now());
        if self.wait_empty(seq, until, cut, |r| r.term_new(seq, &mut termed))? {
            return Ok(());
        }
        for _ in 0..policy.kill_rounds {
            if self.kill_counted(seq) == 0 {
                return Ok(());
            }
            if self.wait_empty(seq, policy.kill_end(), None, |_| {})? {
                return Ok(());
            }
        }
        Err(self.survivors(seq))
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
