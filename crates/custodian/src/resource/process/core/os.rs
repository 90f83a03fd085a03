//! What a child's stop needs from the OS, behind one small trait, so that the stop's order
//! and timing are unit-tested with a mock on paused time (`core/tests.rs`), the way tokio
//! tests its orphan reaper (`trait Wait` in `tokio/src/process/unix/orphan.rs`).
//!
//! The real implementation, [`RealOs`], is zero-sized and only forwards to
//! `crate::sys::process` and tokio: a `ChildCore<RealOs>` costs what the code before the
//! trait cost, with no boxing and no dynamic dispatch.
//!
//! The safety contract is the callers': nothing here reaps except
//! [`ProcessOs::try_reap`], and every signal may only be sent while the child is unreaped
//! (see `core.rs`).

use std::future::Future;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::process::ExitStatus;
use std::sync::Arc;

use tokio::io::unix::AsyncFd;
use tokio::process::Child;

use super::census::Exiting;
use crate::sys::escalate::{Left, name_running};
use crate::sys::process::{GroupScan, Sig, has_exited, signal_group, signal_process};

/// The OS calls a child's stop makes. `pid` is the child's pid, which is also its
/// process-group id (every child is started with `process_group(0)`).
pub(crate) trait ProcessOs: Send + Sync + 'static {
    /// An unreaped child of ours: what reaps it, and what names it safely (its pidfd).
    type Child: Send;
    /// What an exit is awaited on; shared out of the state lock while it is awaited.
    type ExitEvent: Send + Sync;
    /// A scan for running members of a group, kept from one look to the next.
    type Scan: Send + 'static;

    /// Whether the child has exited, *without* reaping it. `ECHILD` (someone else reaped
    /// it) is an error: its ids may be reused.
    fn has_exited(&self, child: &Self::Child, pid: u32) -> io::Result<bool>;

    /// Signals the child alone, through its pidfd where it has one. A child already gone
    /// is not an error.
    fn signal_process(&self, child: &Self::Child, pid: u32, sig: Sig) -> io::Result<()>;

    /// Signals every process of the group `pid`. Only while the child is unreaped.
    fn signal_group(&self, pid: u32, sig: Sig) -> io::Result<()>;

    /// Reaps the child if it has exited; `None` if it still runs.
    fn try_reap(&self, child: &mut Self::Child) -> io::Result<Option<ExitStatus>>;

    /// What the child's exit can be awaited on; `None`: the exit is polled.
    fn exit_event(&self, child: &Self::Child) -> Option<Arc<Self::ExitEvent>>;

    /// Waits for `event` to fire, then asks `exited`: `true` if it says so, else clears
    /// the event (the next wait waits for a new one) and returns `false`.
    ///
    /// Cancel safe: it only observes.
    fn exit_event_fired(
        &self,
        event: &Self::ExitEvent,
        exited: impl FnOnce() -> io::Result<bool> + Send,
    ) -> impl Future<Output = io::Result<bool>> + Send;

    /// A new scan of the group `pid`, led by `child` (unreaped); its first pass counts
    /// `exiting` out (see `census.rs`).
    fn group_scan(&self, child: &Self::Child, pid: u32, exiting: Option<Exiting>) -> Self::Scan;

    /// Whether any process of the scanned group still runs (a zombie does not count).
    /// The outer error is the scan's task failing, the inner one the scan itself.
    ///
    /// Cancel safe: it only observes (a dropped scan is started afresh).
    fn group_running(
        &self,
        scan: Self::Scan,
    ) -> impl Future<Output = io::Result<(Self::Scan, io::Result<bool>)>> + Send;

    /// The final look (`sys::escalate`): the processes of the group `pid` still
    /// running, named with their reasons. Only while the leader is unreaped.
    ///
    /// Cancel safe: it only observes.
    fn survivors(&self, pid: u32) -> impl Future<Output = io::Result<Vec<Left>>> + Send;
}

/// The kernel, through `crate::sys::process` and tokio.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RealOs;

// Held in every `ChildCore`: it must cost nothing.
const _: () = assert!(size_of::<RealOs>() == 0);

/// A scan of a group: its members found last time, and its leader's pidfd (a pass
/// need not read a leader it proves a zombie: see `census.rs`).
#[derive(Debug)]
pub(crate) struct Scan {
    group: GroupScan,
    leader: Option<super::census::Pidfd>,
    /// Counted out by the first pass asked for.
    exiting: Option<Exiting>,
}

/// A spawned, unreaped tokio child and its pidfd (registered with the reactor).
#[derive(Debug)]
pub(crate) struct LiveChild {
    child: Child,
    pidfd: Option<Arc<AsyncFd<OwnedFd>>>,
}

impl LiveChild {
    /// Takes a freshly spawned (unreaped) child and its pidfd, if the kernel has one.
    /// Must be called inside a runtime (to register the pidfd with the reactor).
    pub(crate) fn new(child: Child, pidfd: Option<OwnedFd>) -> Self {
        // A pidfd that epoll refuses is still useful for signals and `waitid`, but then
        // exits are polled.
        // `AsyncFd::new` is deprecated because a generic `AsRawFd` may change or close its
        // fd while registered; an `OwnedFd` moved into the `AsyncFd` cannot, which is
        // exactly the contract of the unsafe `register`, so the safe call is sound here.
        #[allow(deprecated)]
        let pidfd = pidfd.and_then(|fd| AsyncFd::new(fd).ok()).map(Arc::new);
        LiveChild { child, pidfd }
    }

    fn pidfd(&self) -> Option<BorrowedFd<'_>> {
        self.pidfd.as_ref().map(|a| a.get_ref().as_fd())
    }
}

impl ProcessOs for RealOs {
    type Child = LiveChild;
    type ExitEvent = AsyncFd<OwnedFd>;
    type Scan = Scan;

    fn has_exited(&self, child: &LiveChild, pid: u32) -> io::Result<bool> {
        has_exited(child.pidfd(), pid)
    }

    fn signal_process(&self, child: &LiveChild, pid: u32, sig: Sig) -> io::Result<()> {
        signal_process(child.pidfd(), pid, sig)
    }

    fn signal_group(&self, pid: u32, sig: Sig) -> io::Result<()> {
        signal_group(pid, sig)
    }

    fn try_reap(&self, child: &mut LiveChild) -> io::Result<Option<ExitStatus>> {
        child.child.try_wait()
    }

    fn exit_event(&self, child: &LiveChild) -> Option<Arc<AsyncFd<OwnedFd>>> {
        child.pidfd.clone()
    }

    async fn exit_event_fired(
        &self,
        event: &AsyncFd<OwnedFd>,
        exited: impl FnOnce() -> io::Result<bool> + Send,
    ) -> io::Result<bool> {
        // The pidfd turns readable when the child exits.
        let mut ready = event.readable().await?;
        if exited()? {
            return Ok(true);
        }
        // An exit between the check and this clear is seen by the caller's next check.
        ready.clear_ready();
        Ok(false)
    }

    fn group_scan(&self, child: &LiveChild, pid: u32, exiting: Option<Exiting>) -> Scan {
        Scan {
            group: GroupScan::new(pid),
            leader: child.pidfd.clone(),
            exiting,
        }
    }

    async fn group_running(&self, mut scan: Scan) -> io::Result<(Scan, io::Result<bool>)> {
        // Reading `/proc` blocks: on the blocking pool. The members found last time
        // first (a few `stat`s), then a full pass shared with every group asked about
        // meanwhile (a scope's end releases its children together).
        if scan.group.knows_members() {
            let mut group = scan.group;
            let known;
            (scan.group, known) = tokio::task::spawn_blocking(move || {
                let running = group.known_member_running();
                (group, running)
            })
            .await
            .map_err(io::Error::other)?;
            if !matches!(known, Ok(false)) {
                return Ok((scan, known));
            }
        }
        let exiting = scan.exiting.take();
        let found = super::census::running(scan.group.pgid(), scan.leader.as_ref(), exiting)
            .await
            .map(|members| {
                let any = !members.is_empty();
                scan.group.set_members(members);
                any
            });
        Ok((scan, found))
    }

    async fn survivors(&self, pid: u32) -> io::Result<Vec<Left>> {
        let members = super::census::running(pid, None, None).await?;
        // Reading `/proc` blocks: on the blocking pool.
        tokio::task::spawn_blocking(move || name_running(&members, 0))
            .await
            .map_err(io::Error::other)
    }
}
