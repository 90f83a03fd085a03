//! The state a child shares between its guard and its registry entry, and the stop
//! escalation both of them run.
//!
//! Invariants:
//! - the child is reaped in exactly one place, [`ChildCore::reap`], under the state lock,
//!   and only after its exit has been observed *without* reaping it (`waitid` with
//!   `WNOWAIT`, or the pidfd turning readable);
//! - every signal is sent under the state lock and only while the child is unreaped: the
//!   pidfd (or pid) and the process-group id cannot name another process until the reap,
//!   because the kernel does not reuse a pid, nor let another group take its id, while
//!   the process exists, even as a zombie;
//! - the last group SIGKILL happens right before the reap, with the leader a zombie, so
//!   members forked while the earlier signals were in flight are caught, and no signal
//!   is ever sent to the group after its id may have been reused;
//! - the reap drops the pidfd, so a guard forgotten with `mem::forget` keeps no fd open;
//! - a stop's grace covers the whole group, not only the leader: a leader that exits
//!   (or had exited, `sh -c 'worker & exit 0'`) still has its group sent SIGTERM and
//!   waited for, up to the grace, before SIGKILL;
//! - the grace ends early when shutdown stops waiting (`cut`: a forced shutdown or the
//!   builder's grace deadline), so no stop outlasts shutdown's own bound;
//! - every deadline is computed with `checked_add`: an overflow means "never".
//!
//! The OS calls go through [`ProcessOs`] (`core/os.rs`): [`RealOs`] in the crate, a mock
//! in the unit tests (`core/tests.rs`), which check the order and timing above on paused
//! time.

use std::io;
use std::os::fd::OwnedFd;
use std::process::ExitStatus;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::process::Child;
use tokio_util::sync::CancellationToken;

use crate::sys::escalate::{Policy, survivors_error};
use crate::sys::process::Sig;

mod census;
mod os;
#[cfg(test)]
mod tests;

pub(crate) use census::Exiting;
pub(crate) use os::{LiveChild, ProcessOs, RealOs};

/// How often an exit is polled for where the kernel has no pidfd (before Linux 5.3).
const POLL_WITHOUT_PIDFD: Duration = Duration::from_millis(10);
/// How long the emergency path waits for a SIGKILLed child to exit.
const EMERGENCY_WAIT: Duration = Duration::from_millis(200);
/// How long the SIGKILL round waits for the group (and cgroup) to be gone before the
/// final look names what is left.
const KILL_WAIT: Duration = Duration::from_secs(1);
/// The first and the longest pause between two scans for members of a group whose
/// leader has exited (doubling from one to the other).
const GROUP_POLL_FIRST: Duration = Duration::from_millis(5);
const GROUP_POLL_MAX: Duration = Duration::from_millis(50);

pub(crate) struct ChildCore<O: ProcessOs = RealOs> {
    pub(crate) pid: u32,
    state: Mutex<State<O::Child>>,
    /// The supervisor's `Inner::cut`: fires when shutdown stops waiting (forced, or its
    /// grace deadline), and ends any stop's grace at once.
    cut: CancellationToken,
    os: O,
    /// The child's line in the crash journal, if there is one: the reap records its end.
    pub(crate) journal: std::sync::OnceLock<crate::journal::ChildTicket>,
    /// Under the child-subreaper opt-in: told of the reap (the pid is no longer ours).
    /// Weak: a guard kept past its supervisor must not keep the process a subreaper.
    pub(crate) reaper: std::sync::OnceLock<std::sync::Weak<crate::reaper::Reaper>>,
    /// The cgroup tier: the child's own cgroup (`cgroup.kill` at the reap; emptied and
    /// removed by the release, see `process/cgroup.rs`).
    pub(crate) cgroup: std::sync::OnceLock<crate::sys::cgroup::ChildCgroup>,
}

enum State<C> {
    Live(C),
    Reaped(ExitStatus),
}

impl ChildCore<RealOs> {
    /// Takes a freshly spawned (unreaped) child; `pidfd` is its pidfd if the kernel has
    /// one; `cut` is the supervisor's shutdown cut. Must be called inside a runtime (to
    /// register the pidfd with the reactor).
    pub(crate) fn new(
        child: Child,
        pid: u32,
        pidfd: Option<OwnedFd>,
        cut: CancellationToken,
    ) -> Arc<Self> {
        Self::with_os(RealOs, LiveChild::new(child, pidfd), pid, cut)
    }
}

impl<O: ProcessOs> ChildCore<O> {
    /// Takes an unreaped child as `os` names it.
    pub(crate) fn with_os(os: O, child: O::Child, pid: u32, cut: CancellationToken) -> Arc<Self> {
        Arc::new(ChildCore {
            pid,
            state: Mutex::new(State::Live(child)),
            cut,
            os,
            journal: std::sync::OnceLock::new(),
            reaper: std::sync::OnceLock::new(),
            cgroup: std::sync::OnceLock::new(),
        })
    }

    /// Shutdown's cut: fires when shutdown stops waiting.
    pub(super) fn cut(&self) -> &CancellationToken {
        &self.cut
    }

    fn lock(&self) -> MutexGuard<'_, State<O::Child>> {
        // Every transition is a single assignment: a panic cannot leave it half-made.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The exit status, once reaped.
    pub(crate) fn status(&self) -> Option<ExitStatus> {
        match &*self.lock() {
            State::Reaped(s) => Some(*s),
            State::Live(_) => None,
        }
    }

    /// Whether it has been reaped, without waiting for the state lock (for a snapshot
    /// read under a registry lock): a busy state reads as not reaped yet.
    pub(crate) fn reaped_now(&self) -> bool {
        match self.state.try_lock() {
            Ok(s) => matches!(*s, State::Reaped(_)),
            Err(std::sync::TryLockError::Poisoned(p)) => {
                matches!(*p.into_inner(), State::Reaped(_))
            }
            Err(std::sync::TryLockError::WouldBlock) => false,
        }
    }

    /// Signals the child's group, and the child itself unless it has exited, as long as
    /// it is unreaped: an exited leader (a zombie) still reserves the group's id, and
    /// what it left in the group must get the signal too. Nothing once reaped (its ids
    /// may belong to others now), nor when someone else reaped it (`ECHILD`, an error).
    pub(crate) fn signal(&self, sig: Sig) -> io::Result<()> {
        let st = self.lock();
        let State::Live(child) = &*st else {
            return Ok(());
        };
        // Also proves the child is still ours and unreaped (`ECHILD` otherwise).
        let exited = self.os.has_exited(child, self.pid)?;
        // The group first: it holds the leader too; the direct signal reaches a leader
        // that moved itself to another group.
        // Both are tried even if one fails (EPERM from a member that changed user).
        let mut group = self.os.signal_group(self.pid, sig);
        // The cgroup tier: SIGKILL is one write for the whole cgroup, whatever left the
        // group (constant work; SIGTERM to its members reads `/proc`: see `stop`).
        if sig == Sig::KILL
            && let Some(cg) = self.cgroup.get()
        {
            group = group.and(cg.kill_if_populated());
        }
        if exited {
            return group;
        }
        self.os.signal_process(child, self.pid, sig).and(group)
    }

    /// `Some(status)` if reaped; otherwise whether the child has exited, and what its
    /// exit can be awaited on.
    fn poll(&self) -> io::Result<Poll<O::ExitEvent>> {
        let st = self.lock();
        match &*st {
            State::Reaped(_) => Ok(Poll::Reaped),
            State::Live(child) => {
                if self.os.has_exited(child, self.pid)? {
                    Ok(Poll::Exited)
                } else {
                    Ok(Poll::Running(self.os.exit_event(child)))
                }
            }
        }
    }

    /// Whether the child has exited (reaped or not), without waiting.
    pub(crate) fn try_exited(&self) -> io::Result<bool> {
        Ok(!matches!(self.poll()?, Poll::Running(_)))
    }

    /// Completes once the child has exited. Does not reap.
    ///
    /// Cancel safe: it only observes.
    pub(crate) async fn exited(&self) -> io::Result<()> {
        loop {
            match self.poll()? {
                Poll::Reaped | Poll::Exited => return Ok(()),
                Poll::Running(None) => tokio::time::sleep(POLL_WITHOUT_PIDFD).await,
                Poll::Running(Some(event)) => {
                    // Not fired or not an exit yet: the next check at the top of the loop
                    // sees an exit that came meanwhile.
                    if self
                        .os
                        .exit_event_fired(&event, || self.try_exited())
                        .await?
                    {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Completes once the child has exited and no running process is left in its group,
    /// scanned every few milliseconds (there is no event for it; see
    /// [`GroupScan`](crate::sys::process::GroupScan)). Does not reap. A group that cannot
    /// be scanned (no `/proc`) counts as empty once the leader has exited.
    ///
    /// Cancel safe: it only observes.
    async fn group_gone(&self, exiting: Option<Exiting>) -> io::Result<()> {
        self.exited().await?;
        let mut scan = match &*self.lock() {
            State::Live(child) => self.os.group_scan(child, self.pid, exiting),
            State::Reaped(_) => return Ok(()),
        };
        let mut pause = GROUP_POLL_FIRST;
        loop {
            // After the reap the id may name another group: nothing left to wait for.
            if self.status().is_some() {
                return Ok(());
            }
            let (s, running) = self.os.group_running(scan).await?;
            scan = s;
            match running {
                Ok(true) => {}
                Ok(false) => return Ok(()),
                Err(e) => {
                    tracing::debug!(pgid = self.pid, error = %e, "cannot scan the process group");
                    return Ok(());
                }
            }
            tokio::time::sleep(pause).await;
            pause = pause.saturating_mul(2).min(GROUP_POLL_MAX);
        }
    }

    /// Kills what is left of the group and reaps the leader, which must have exited.
    /// Idempotent: later calls return the same status.
    pub(crate) fn reap(&self) -> io::Result<ExitStatus> {
        let mut st = self.lock();
        let child = match &mut *st {
            State::Reaped(s) => return Ok(*s),
            State::Live(child) => child,
        };
        // The leader is a zombie, so the group id is still ours: sweep it once more.
        // A failed sweep must not keep the leader unreaped: reap, then report it. The
        // cgroup tier's members are not killed here: a cgroup names no pid, so they get
        // the child's own stop (SIGTERM, the grace, the kill) before or after the reap
        // (`ManagedChild::wait`, the release), never a bare SIGKILL.
        let swept = self.os.signal_group(self.pid, Sig::KILL);
        match self.os.try_reap(child)? {
            Some(status) => {
                // Drops the child (already reaped, so it leaves no orphan) and the pidfd.
                *st = State::Reaped(status);
                // Its pid may be reused from now on: a sweep must not look for it.
                if let Some(ticket) = self.journal.get() {
                    ticket.reaped();
                }
                if let Some(r) = self.reaper.get().and_then(std::sync::Weak::upgrade) {
                    r.managed_reaped(self.pid);
                }
                swept.map(|()| status)
            }
            None => Err(io::Error::other("child has not exited yet")),
        }
    }

    /// The whole release: SIGTERM to the group, up to `grace` for the leader to exit
    /// and the group to empty, SIGKILL to the group, wait, final group sweep, reap.
    /// `term_sent` skips the first signal. The grace ends at once when shutdown's `cut`
    /// fires (already fired: no grace at all). A grace too long to add to the clock
    /// (`Duration::MAX`) never ends by itself.
    ///
    /// Cancel safe in the sense that a later call resumes it; the child stays
    /// registered with its owner until one call completes.
    pub(crate) async fn stop(&self, grace: Duration, term_sent: bool) -> io::Result<ExitStatus> {
        self.stop_exiting(grace, term_sent, None).await
    }

    /// [`stop`](Self::stop), for a child counted [`Exiting`] since its SIGTERM (a
    /// release's): the first group scan counts it out.
    pub(crate) async fn stop_exiting(
        &self,
        grace: Duration,
        term_sent: bool,
        exiting: Option<Exiting>,
    ) -> io::Result<ExitStatus> {
        if let Some(s) = self.status() {
            return Ok(s);
        }
        if !term_sent && let Err(e) = self.signal(Sig::TERM) {
            // SIGKILL after the grace period may still work; if not, it reports.
            tracing::debug!(pid = self.pid, error = %e, "SIGTERM failed");
        }
        // The cgroup tier: what left the group gets the same SIGTERM and grace.
        if let Err(e) = self.term_cgroup().await {
            tracing::debug!(pid = self.pid, error = %e, "SIGTERM to the cgroup failed");
        }
        // One SIGKILL round (the reap's own SIGKILL to the group follows it).
        let policy = Policy::new(grace, 1, KILL_WAIT);
        // `timeout` adds with `checked_add` and waits forever on overflow.
        let gone = async {
            self.group_gone(exiting).await?;
            self.cgroup_gone().await
        };
        let graceful = tokio::select! {
            biased;
            () = self.cut.cancelled() => {
                tracing::debug!(pid = self.pid, "shutdown cut the grace short: SIGKILL");
                false
            }
            r = tokio::time::timeout(policy.grace, gone) => matches!(r, Ok(Ok(()))),
        };
        // Anything but a clean exit within the grace period escalates: a failed wait
        // must not leave the child unkilled or unreaped (its entry is already gone).
        if !graceful {
            let killed = self.signal(Sig::KILL);
            let waited = self.exited().await;
            let left = self.left_after_kill(&policy).await;
            let reaped = self.reap();
            killed?;
            waited?;
            let status = reaped?;
            return left.map_or(Ok(status), Err);
        }
        self.reap()
    }

    /// The final look (`sys::escalate`), with the leader exited and unreaped (so the
    /// group id is still its own): up to the policy's SIGKILL wait for the group and
    /// the cgroup to be gone, then what still runs is named, as an error. `None` when
    /// nothing is left (or nothing can be looked at: no `/proc`).
    async fn left_after_kill(&self, policy: &Policy) -> Option<io::Error> {
        let gone = async {
            self.group_gone(None).await?;
            self.cgroup_gone().await
        };
        match tokio::time::timeout(policy.kill_wait, gone).await {
            Ok(Ok(())) => return None,
            Ok(Err(e)) => {
                tracing::debug!(pid = self.pid, error = %e, "no final look at the group");
                return None;
            }
            Err(_) => {}
        }
        let mut left = self.os.survivors(self.pid).await.unwrap_or_default();
        left.extend(self.cgroup_survivors().await);
        left.sort_unstable_by_key(|l| l.pid);
        left.dedup_by_key(|l| l.pid);
        for l in &left {
            tracing::warn!(pid = l.pid, why = %l.why, "a process of a stopped child survived");
        }
        (!left.is_empty()).then(|| survivors_error("processes of the child", &left))
    }

    /// Emergency release without a runtime: SIGKILL the group, wait briefly for the
    /// leader to exit, sweep and reap. A leader stuck in the kernel longer than that is
    /// left a zombie (until this process exits) and reported.
    pub(crate) fn kill_now(&self) -> io::Result<()> {
        self.signal(Sig::KILL)?;
        // This wait must stay bounded: an end past the clock's range (it cannot happen
        // with 200 ms) gives up at the first check rather than waiting forever.
        let until = Instant::now().checked_add(EMERGENCY_WAIT);
        while !self.try_exited()? {
            if until.is_none_or(|u| Instant::now() >= u) {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "child did not exit after SIGKILL",
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        self.reap().map(drop)
    }
}

enum Poll<E> {
    Reaped,
    Exited,
    Running(Option<Arc<E>>),
}
