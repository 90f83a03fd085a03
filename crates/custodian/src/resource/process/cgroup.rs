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
use crate::sys::cgroup::{
    ChildCgroup, EMERGENCY_WAIT, LimitWrite, SupervisorCgroup, still_populated,
};

/// How long a release waits for a killed cgroup to empty before it reports it.
const EMPTY_WAIT: Duration = Duration::from_secs(5);
/// How often the wait re-reads `populated` even without a wake-up.
const RECHECK: Duration = Duration::from_millis(100);

/// Creates the child's cgroup with `limits` written into it (see `Command::memory_max`)
/// and makes `cmd` enter it between fork and exec.
pub(super) fn place(
    cmd: &mut tokio::process::Command,
    sup: &Arc<SupervisorCgroup>,
    limits: &[LimitWrite],
) -> io::Result<ChildCgroup> {
    let (cg, procs) = sup.child(limits)?;
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
        if let Some(done) = self.cgroup_removed_if_empty() {
            return done;
        }
        // Once is enough (the kernel also kills what forks while a kill is in flight);
        // again if the reap's was skipped or failed.
        if !cg.was_killed() {
            cg.kill()?;
        }
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
        if let Some(done) = self.cgroup_removed_if_empty() {
            return done;
        }
        if !cg.was_killed() {
            cg.kill()?;
        }
        cg.wait_empty_blocking(EMERGENCY_WAIT)?;
        cg.remove()
    }

    /// The common case, in constant work (one read, one `rmdir`): no cgroup, already
    /// removed, or empty and now removed. `None`: something is still in it.
    pub(super) fn cgroup_removed_if_empty(&self) -> Option<io::Result<()>> {
        let Some(cg) = self.cgroup.get() else {
            return Some(Ok(()));
        };
        if cg.is_removed() {
            return Some(Ok(()));
        }
        match cg.populated() {
            Ok(false) => Some(cg.remove()),
            Ok(true) => None,
            Err(e) => Some(Err(e)),
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// The supervisor's cgroup under this process's own, or `None` without cgroup2.
    fn sup_cgroup() -> Option<Arc<SupervisorCgroup>> {
        let c =
            crate::containment::Contained::choose(crate::containment::Containment::Auto).ok()?;
        c.cgroup
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_wait_for_populated_0_wakes_on_the_event_not_the_recheck() {
        let Some(sup) = sup_cgroup() else {
            eprintln!("skipped: no writable cgroup2");
            return;
        };
        let mut cmd = tokio::process::Command::new("sh");
        cmd.args(["-c", "setsid sleep 1000 & exec sleep 1000"]);
        let cg = place(&mut cmd, &sup, &[]).unwrap();
        let mut child = cmd.spawn().unwrap();
        while std::fs::read_to_string(cg.path().join("cgroup.procs"))
            .unwrap()
            .lines()
            .count()
            < 2
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // epoll takes cgroup.events (kernfs polls): the event path, not the 5 ms polling.
        #[allow(deprecated)]
        let registered = AsyncFd::with_interest(cg.events().unwrap(), Interest::PRIORITY);
        assert!(registered.is_ok(), "{:?}", registered.err());
        drop(registered);
        let t = Instant::now();
        cg.kill().unwrap();
        wait_empty(&cg).await.unwrap();
        let took = t.elapsed();
        child.wait().await.unwrap();
        assert!(!cg.populated().unwrap());
        // The re-read every 100 ms would take at least that long.
        assert!(took < RECHECK, "woken by the re-read: {took:?}");
        cg.remove().unwrap();
        assert!(!cg.path().exists());
        drop(cg);
        sup.remove().unwrap();
    }
}
