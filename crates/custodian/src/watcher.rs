//! The watcher (`Builder::watcher`, layer 7 beside `recovery`): a small process forked
//! from the owner at `start` that recovers the owner's crash journal the moment the
//! owner dies without a shutdown, so that a SIGKILLed owner's tree, temp root and
//! cgroups are gone within milliseconds, with nothing restarted.
//!
//! Why a fork, and why at `start`: a library cannot count on a helper binary being
//! installed, and the recovery is this crate's own code (`recovery::sweep_one`: the
//! same examine, stop, kill-by-cgroup, root removal and journal drop as `custodian
//! sweep`, for exactly this journal). `start` runs early in a service's life, when the
//! heap is small: the fork shares the owner's pages copy-on-write, and the watcher keeps
//! the start-time image of the pages the owner later writes (measured in
//! `docs/processes.md`). The child is made safe to run in `sys/watch/` (no lock of
//! another thread, signals reset, every fd but two closed, own session).
//!
//! The protocol:
//! - the owner dies (its pidfd, taken before the fork, becomes readable) without having
//!   said `DONE`: the watcher sweeps the journal (it proves the owner dead, as every
//!   sweep does, and takes the journal's `flock`, so a concurrent `custodian sweep` or
//!   start-up sweep of another supervisor never acts twice), then exits; its exit
//!   status is 0 when the sweep was clean;
//! - `Supervisor::shutdown` ends by telling it `DONE` and reaping it (0 zombies, 0 fds
//!   left: its pidfd and socket are closed with the link);
//! - the supervisor dropped without a shutdown (the emergency path): the link's end
//!   closes; the watcher stays until the emergency clean-up has dropped the journal
//!   (checked every 100 ms), or recovers it if the process dies first. The monitor task
//!   reaps it if the runtime still runs;
//! - the watcher dies (SIGKILL, OOM): the monitor task reaps it, logs a warning and
//!   records [`WatcherState::Died`](crate::WatcherState::Died); the owner's own releases
//!   do not depend on it. It is not restarted: a crash is then left to the next start or
//!   `custodian sweep`, as without a watcher, and later `kill_on_parent_death` spawns go
//!   back to the kernel's signal.
//!
//! While it watches, it also serves `Command::kill_on_parent_death` (issue 22): such a
//! child is journalled with no grace, so the watcher's sweep SIGKILLs its group at once,
//! and its spawn needs no `pre_exec` hook (std's `posix_spawn`, a cost that does not
//! grow with the owner's memory). The owner also tells the watcher each such child's
//! identity (pid, start time, pidfd inode) over the link, and its reap: if the journal file was
//! removed under a live owner (an operator's `rm`, an age sweep of a state dir), the
//! watcher still stops those children, their descendants by parent links, and every
//! process carrying the owner's marker (`recovery::sweep_without_journal`), as the
//! kernel's death signal would have; the root and cgroups, recorded only in the journal,
//! are then left to the abandoned-root reap and a person.
//!
//! It is never one of the things a sweep kills: it is in no managed child's group or
//! cgroup, carries no marker of this journal, is no descendant of a managed child, and
//! as the sweeper it spares itself.

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use crate::inner::{Inner, Records};
use crate::stats::WatcherState;
use crate::sys::watch::{self, Link, Reaped, Served, Told, Verdict};

/// How long `shutdown` waits for the watcher to exit after `DONE` before SIGKILL (it
/// exits within microseconds: this only bounds a watcher stuck in the kernel).
const FINISH_WAIT: Duration = Duration::from_secs(2);

/// Forks the watcher of the journal `journal` (a file in `state_dir`), and starts the
/// task that notices its death. Needs a Tokio runtime.
pub(crate) fn start(
    journal: &Path,
    grace: Duration,
    records: Arc<Records>,
    handle: &tokio::runtime::Handle,
) -> io::Result<Arc<Link>> {
    // Absolute: the watcher leaves the owner's working directory (see `sys/watch/`).
    let journal = &std::path::absolute(journal)?;
    let (dir, name) = match (journal.parent(), journal.file_name()) {
        (Some(d), Some(n)) => (d.to_path_buf(), n.to_os_string()),
        _ => return Err(io::ErrorKind::InvalidInput.into()),
    };
    let path = journal.to_path_buf();
    let link = Arc::new(watch::spawn(move |w| body(&w, &dir, &name, &path, grace))?);
    let pid = link.pid();
    records
        .stats
        .set_watcher(WatcherState::Watching, Some(pid), None);
    tracing::info!(pid, journal = %journal.display(), "watcher started");
    let fd = watch::dup(link.pidfd())?;
    let weak = Arc::downgrade(&link);
    let _guard = handle.enter();
    let fd = register(fd)?;
    drop(handle.spawn(monitor(weak, fd, pid, records)));
    Ok(link)
}

/// What the forked watcher runs (see `sys/watch/` for what it may touch).
fn body(w: &watch::Watch, dir: &Path, name: &OsString, journal: &PathBuf, grace: Duration) -> i32 {
    // No `tracing` event from the sweep here: registering a callsite can block on a lock
    // another thread of the owner held at the fork (see `recovery::SILENCED`).
    crate::recovery::silence();
    let gone = || matches!(std::fs::symlink_metadata(journal), Err(e) if e.kind() == io::ErrorKind::NotFound);
    let mut served = ServedList::default();
    let verdict = w.wait(gone, |word| match word {
        Told::Serve(c) => served.push(c),
        Told::Gone(c) => served.reaped(c),
    });
    let report = match verdict {
        Verdict::Done | Verdict::Released => return 0,
        // Its own emergency clean-up dropped the journal: nothing of it is left to do.
        Verdict::OwnerDied { let_go: true } if gone() => return 0,
        // Removed under a live owner (an operator's `rm`, a tmpfiles age sweep): what
        // the owner told this watcher still proves its children.
        Verdict::OwnerDied { let_go: false } if gone() => {
            crate::recovery::sweep_without_journal(journal, &served.children, grace)
        }
        Verdict::OwnerDied { .. } => crate::recovery::sweep_one(dir, name, grace),
    };
    match report {
        Ok(report) if report.is_clean() => 0,
        Ok(_) => 1,
        Err(_) => 2,
    }
}

/// The children whose death signal the watcher serves, as the owner told it; those
/// no longer running are dropped now and then, so a long-lived owner's list stays as
/// long as its live children.
#[derive(Default)]
struct ServedList {
    children: Vec<Served>,
    /// The length at which the next pass drops the children that have exited.
    prune_at: usize,
}

impl ServedList {
    fn push(&mut self, child: Served) {
        if self.children.len() >= self.prune_at.max(64) {
            // Unknown (no `/proc`): kept, never dropped on a guess.
            self.children
                .retain(|c| match crate::sys::procfs::proc_stat(c.pid) {
                    Ok(Some(st)) => st.start == c.start,
                    Ok(None) => false,
                    Err(_) => true,
                });
            self.prune_at = self.children.len().saturating_mul(2);
        }
        self.children.push(child);
    }

    /// The owner reaped `child`: its pid may be reused from now on.
    fn reaped(&mut self, child: Served) {
        if let Some(i) = self.children.iter().rposition(|c| *c == child) {
            self.children.swap_remove(i);
        }
    }
}

/// Waits for the watcher to exit; unless shutdown told it to, reaps it and says so.
async fn monitor(link: Weak<Link>, fd: AsyncFd<OwnedFd>, pid: u32, records: Arc<Records>) {
    // A pidfd polls readable once its process has exited, and stays so.
    let _ = fd.readable().await;
    let (state, how) = match link.upgrade() {
        // `finish` reaps it and records how it went.
        Some(l) if l.was_told() => return,
        // Let go by the supervisor's drop: it exits once the journal is gone.
        Some(l) if l.was_let_go() => (
            WatcherState::LetGo,
            ended(watch::try_reap(fd.get_ref().as_fd())),
        ),
        Some(_) => {
            let how = ended(watch::try_reap(fd.get_ref().as_fd()));
            tracing::warn!(
                pid,
                ended = %how,
                "the watcher died: a crash of this process is now left to the next start or \
                 `custodian sweep`, and children it served `kill_on_parent_death` for no \
                 longer die with it"
            );
            (WatcherState::Died, how)
        }
        None => (
            WatcherState::LetGo,
            ended(watch::try_reap(fd.get_ref().as_fd())),
        ),
    };
    records.stats.set_watcher(state, Some(pid), Some(how));
}

/// The end of a clean shutdown: tells the watcher `DONE`, waits for it to exit (SIGKILL
/// after [`FINISH_WAIT`]) and reaps it. Idempotent.
pub(crate) async fn finish(inner: &Inner) {
    let Some(link) = inner.watcher.as_ref() else {
        return;
    };
    let told_now = link.tell_done();
    if let Ok(fd) = watch::dup(link.pidfd()).and_then(register)
        && tokio::time::timeout(FINISH_WAIT, fd.readable())
            .await
            .is_err()
    {
        link.kill();
        let _ = tokio::time::timeout(FINISH_WAIT, fd.readable()).await;
    }
    let reaped = watch::try_reap(link.pidfd());
    let stats = &inner.records.stats;
    if told_now && stats.watcher().state == WatcherState::Watching {
        stats.set_watcher(
            WatcherState::Finished,
            Some(link.pid()),
            Some(ended(reaped)),
        );
        tracing::debug!(pid = link.pid(), "watcher finished");
    }
}

/// A pidfd registered for readability. `AsyncFd::with_interest` is deprecated because a
/// generic `AsRawFd` may change or close its fd while registered; an `OwnedFd` moved
/// into the `AsyncFd` cannot (the contract of the unsafe `register`), as in
/// `resource/process/core/os.rs`.
#[allow(deprecated)]
fn register(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    AsyncFd::with_interest(fd, Interest::READABLE)
}

fn ended(r: Reaped) -> String {
    match r {
        Reaped::Exited {
            code: Some(c),
            signal: None,
        } => format!("exit {c}"),
        Reaped::Exited {
            signal: Some(s), ..
        } => format!("signal {s}"),
        Reaped::Exited { .. } => "ended".to_owned(),
        Reaped::Running => "still running".to_owned(),
        Reaped::ByOther => "reaped elsewhere".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The served list stays as long as the live children: exited ones are dropped
    /// once it doubles, a running one (this test process) is kept.
    #[test]
    fn the_served_list_drops_exited_children_and_keeps_running_ones() {
        let me = std::process::id();
        let start = crate::sys::procfs::proc_stat(me).unwrap().unwrap().start;
        let mut list = ServedList::default();
        list.push(Served {
            pid: me,
            start,
            pidfd_ino: None,
        });
        // Above the kernel's highest pid (2^22): never running.
        for pid in 0..1000 {
            list.push(Served {
                pid: (1 << 22) + 1 + pid,
                start: 1,
                pidfd_ino: None,
            });
        }
        assert!(list.children.len() <= 64, "{} kept", list.children.len());
        assert_eq!(list.children[0].pid, me);
        // This process with another start time is another process: dropped.
        let mut list = ServedList::default();
        for _ in 0..65 {
            list.push(Served {
                pid: me,
                start: start + 1,
                pidfd_ino: None,
            });
        }
        assert_eq!(list.children.len(), 1);
    }
}
