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
//! Release: the child's own stop, over the whole cgroup. SIGTERM to every member (each
//! proven one: its pidfd opened, then `/proc/PID/cgroup` read, the signal through the
//! pidfd), what left the process group included; the child's grace until `populated 0`
//! (`POLLPRI` on `cgroup.events`, with a re-read every 100 ms in case a wake-up is
//! missed); then `cgroup.kill`, `populated 0`, and the cgroup removed. The same when the
//! child exited on its own and left members behind: `ManagedChild::wait` runs the stop
//! before it reaps, and a release after `try_wait` runs it before the removal. The
//! emergency path kills at once and waits at most 200 ms.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use super::core::{ChildCore, ProcessOs};
use crate::sys::cgroup::{
    ChildCgroup, EMERGENCY_WAIT, LimitWrite, SupervisorCgroup, still_populated,
};
use crate::sys::escalate::{Left, name_running, survivors_error};
use crate::sys::process::{Sig, pidfd_open, signal_process};
use crate::sys::procfs;

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
    // (async-signal-safe). Covered by tests/containment_release.rs and
    // tests/containment_cgroups.rs (every child and its descendants are in the cgroup)
    // and the unit tests of `sys::cgroup`.
    #[allow(unsafe_code)]
    unsafe {
        cmd.pre_exec(move || {
            rustix::io::write(&procs, b"0")?;
            Ok(())
        });
    }
    Ok(cg)
}

impl<O: ProcessOs> ChildCore<O> {
    /// The cgroup tier: SIGTERM to every proven member of the child's cgroup (on the
    /// blocking pool: it reads `/proc`). Nothing without a cgroup, or once it was killed.
    ///
    /// Cancel safe: the signals go out on the blocking pool whether or not this is
    /// awaited to the end.
    pub(super) async fn term_cgroup(&self) -> io::Result<()> {
        let Some(cg) = self.cgroup.get().filter(|cg| !cg.was_killed()) else {
            return Ok(());
        };
        let dir = cg.path();
        tokio::task::spawn_blocking(move || term_members(&dir))
            .await
            .map_err(io::Error::other)?
    }

    /// The cgroup tier: whether something still runs in the child's cgroup (a zombie
    /// does not count). `false` without a cgroup.
    pub(super) fn cgroup_populated(&self) -> bool {
        self.cgroup
            .get()
            .is_some_and(|cg| cg.populated().unwrap_or(true))
    }

    /// The final look at the child's cgroup (`sys::escalate`): its members still
    /// running, named (on the blocking pool: it reads `/proc`). Empty without a cgroup.
    ///
    /// Cancel safe: it only observes.
    pub(super) async fn cgroup_survivors(&self) -> Vec<Left> {
        let Some(cg) = self.cgroup.get().filter(|cg| !cg.is_removed()) else {
            return Vec::new();
        };
        let dir = cg.path();
        let named = tokio::task::spawn_blocking(move || {
            let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
            let pids: Vec<u32> = procs
                .lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect();
            name_running(&pids, 0)
        });
        named.await.unwrap_or_default()
    }

    /// Completes once the child's cgroup is empty (`populated 0`); at once without one.
    ///
    /// Cancel safe: it only observes.
    pub(super) async fn cgroup_gone(&self) -> io::Result<()> {
        match self.cgroup.get() {
            Some(cg) => wait_empty(cg).await,
            None => Ok(()),
        }
    }
}

impl ChildCore {
    /// The cgroup tier, after the reap: what is left in the child's cgroup gets the
    /// child's stop unless it had it (SIGTERM, up to `grace` until `populated 0`, ended
    /// early by shutdown's cut), then `cgroup.kill`; waits for `populated 0` (at most
    /// [`EMPTY_WAIT`]) and removes the cgroup. Nothing without a cgroup.
    ///
    /// Cancel safe: a later call resumes (the signals, the kill and the removal are
    /// idempotent).
    pub(super) async fn cgroup_emptied(&self, grace: Duration) -> io::Result<()> {
        let Some(cg) = self.cgroup.get() else {
            return Ok(());
        };
        if let Some(done) = self.cgroup_removed_if_empty() {
            return done;
        }
        // Once is enough (the kernel also kills what forks while a kill is in flight).
        if !cg.was_killed() {
            if let Err(e) = self.term_cgroup().await {
                tracing::debug!(cgroup = %cg.path().display(), error = %e, "SIGTERM to the cgroup failed");
            }
            let graceful = tokio::select! {
                biased;
                () = self.cut().cancelled() => false,
                r = tokio::time::timeout(grace, wait_empty(cg)) => matches!(r, Ok(Ok(()))),
            };
            if !graceful {
                cg.kill()?;
            }
        }
        match tokio::time::timeout(EMPTY_WAIT, wait_empty(cg)).await {
            Ok(r) => r?,
            Err(_) => {
                // The final look: name what is left, if it can be named.
                let left = self.cgroup_survivors().await;
                if left.is_empty() {
                    return Err(still_populated());
                }
                return Err(survivors_error("processes of the child's cgroup", &left));
            }
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

/// SIGTERM to each process listed in the cgroup `dir`, once proven a member: its pidfd
/// is opened, then its `/proc/PID/cgroup` must name this cgroup (its last two components,
/// `custodian-<pid>-<start>-<pidns>-<random>/child-<n>`, are unique), and the signal goes through the
/// pidfd. If the pid was reused between the listing and the open, the read names
/// another cgroup; if the process died after the read, the pidfd's signal finds it gone:
/// no other process is ever signalled. Without pidfds, nobody is (the kill comes later).
/// The list is read again until it names nobody new (at most [`TERM_PASSES`] times): a
/// member's fork that completed after a read is caught by the next.
fn term_members(dir: &std::path::Path) -> io::Result<()> {
    use std::os::fd::AsFd;
    use std::os::unix::ffi::OsStrExt;
    let parts: Vec<&[u8]> = dir.iter().map(|c| c.as_bytes()).collect();
    let suffix = match parts.as_slice() {
        [.., sup, child] => [b"/", *sup, b"/", *child].concat(),
        _ => return Ok(()),
    };
    let mut termed = std::collections::HashSet::new();
    for _ in 0..TERM_PASSES {
        let procs = std::fs::read_to_string(dir.join("cgroup.procs"))?;
        let mut new = false;
        for pid in procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()) {
            let Ok(Some(fd)) = pidfd_open(pid) else {
                continue;
            };
            // Its start time read after the open: with the pid, who was signalled.
            let Some(st) = procfs::stat(pid) else {
                continue;
            };
            if termed.contains(&(pid, st.start))
                || !matches!(procfs::cgroup_v2(pid), Ok(Some(p)) if p.ends_with(&suffix))
            {
                continue;
            }
            new = true;
            termed.insert((pid, st.start));
            let _ = signal_process(Some(fd.as_fd()), pid, Sig::TERM);
        }
        if !new {
            break;
        }
    }
    Ok(())
}

/// How many times [`term_members`] reads the cgroup's list at most.
const TERM_PASSES: usize = 16;

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
        let c = crate::containment::Contained::choose_with(
            crate::containment::Containment::Auto,
            |_| Ok(()),
        )
        .ok()?;
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
