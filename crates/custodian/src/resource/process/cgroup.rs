//! The cgroup tier for a managed child (`Builder::containment`): the child enters a
//! cgroup of its own before it runs any code, and its release ends with the cgroup
//! empty (`populated 0`) and removed.
//!
//! Placement: the cgroup and its `cgroup.procs` fd are made before the fork, and a
//! `pre_exec` hook writes `0` to that fd in the forked child (one `write`, async-signal
//! safe), so the child is in its cgroup before `exec`, before it can fork anything.
//! Spawning first and moving after would race with the child's own forks. `clone3` with
//! `CLONE_INTO_CGROUP` would avoid the fork that any `pre_exec` forces on std, but std's
//! `Command` cannot reach it.
//!
//! Release: the reap (`ChildCore::reap`) writes `cgroup.kill` after the stop's TERM and
//! grace, then the release waits for `populated 0` (`POLLPRI` on `cgroup.events`, with a
//! re-read every 100 ms in case a wake-up is missed) and removes the cgroup. The emergency
//! path does the same synchronously, waiting at most 200 ms.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use super::core::ChildCore;
use crate::sys::cgroup::{ChildCgroup, EMERGENCY_WAIT, SupervisorCgroup, still_populated};

/// How long a release waits for a killed cgroup to empty before it reports it.
const EMPTY_WAIT: Duration = Duration::from_secs(5);
/// How often the wait re-reads `populated` even without a wake-up.
const RECHECK: Duration = Duration::from_millis(100);

/// Creates the child's cgroup and makes `cmd` enter it between fork and exec.
pub(super) fn place(
    cmd: &mut tokio::process::Command,
    sup: &Arc<SupervisorCgroup>,
) -> io::Result<ChildCgroup> {
    let (cg, procs) = sup.child()?;
    // SAFETY: the hook runs between fork and exec and makes one raw `write` system call
    // on an fd it owns (opened before the fork, close-on-exec), then at most builds an
    // `io::Error` from an errno; it neither allocates nor takes a lock
    // (async-signal-safe). Covered by tests/containment_release.rs (every child and its
    // descendants are in the cgroup) and the unit tests of `sys::cgroup`.
    #[allow(unsafe_code)]
    unsafe {
        cmd.pre_exec(move || {
            rustix::io::write(&procs, b"0")?;
            Ok(())
        });
    }
    Ok(cg)
}

impl ChildCore {
    /// The cgroup tier, after the reap: kills what is left once more, waits for
    /// `populated 0` (at most [`EMPTY_WAIT`]) and removes the child's cgroup. Nothing
    /// without a cgroup.
    ///
    /// Cancel safe: a later call resumes (the kill and the removal are idempotent).
    pub(super) async fn cgroup_emptied(&self) -> io::Result<()> {
        let Some(cg) = self.cgroup.get() else {
            return Ok(());
        };
        if cg.is_removed() {
            return Ok(());
        }
        cg.kill()?;
        match tokio::time::timeout(EMPTY_WAIT, wait_empty(cg)).await {
            Ok(r) => r?,
            Err(_) => return Err(still_populated()),
        }
        cg.remove()
    }

    /// [`cgroup_emptied`](Self::cgroup_emptied) on this thread, without a runtime (the
    /// emergency path), waiting at most 200 ms.
    pub(super) fn cgroup_emptied_now(&self) -> io::Result<()> {
        let Some(cg) = self.cgroup.get() else {
            return Ok(());
        };
        if cg.is_removed() {
            return Ok(());
        }
        cg.kill()?;
        cg.wait_empty_blocking(EMERGENCY_WAIT)?;
        cg.remove()
    }

    /// `cgroup.kill` at once (constant work), for the urgent path.
    pub(super) fn cgroup_kill(&self) {
        if let Some(cg) = self.cgroup.get() {
            let _ = cg.kill();
        }
    }
}

/// Waits for `populated 0`: `POLLPRI` on `cgroup.events` where epoll takes it, a re-read
/// every [`RECHECK`] either way.
async fn wait_empty(cg: &ChildCgroup) -> io::Result<()> {
    let events = cg.events()?;
    // Registered before the first read: a change after it wakes the wait below.
    // Deprecated because a generic `AsRawFd` may close its fd while registered; an
    // `OwnedFd` moved into the `AsyncFd` cannot (as in `core/os.rs`).
    #[allow(deprecated)]
    let events = match AsyncFd::with_interest(events, Interest::PRIORITY) {
        Ok(fd) => Watch::Event(fd),
        Err(e) => {
            tracing::debug!(error = %e, "cgroup.events: no poll; re-reading");
            Watch::Poll
        }
    };
    loop {
        let populated = match &events {
            Watch::Event(fd) => ChildCgroup::populated_at(fd.get_ref())?,
            Watch::Poll => cg.populated()?,
        };
        if !populated {
            return Ok(());
        }
        match &events {
            Watch::Event(fd) => {
                tokio::select! {
                    ready = fd.ready(Interest::PRIORITY) => ready?.clear_ready(),
                    () = tokio::time::sleep(RECHECK) => {}
                }
            }
            Watch::Poll => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

enum Watch {
    Event(AsyncFd<std::os::fd::OwnedFd>),
    Poll,
}
