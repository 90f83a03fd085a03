//! The crash journal's writer and records (the services layer, 2b): what a supervisor with a state dir writes so
//! that the next start (or `custodian sweep`) can reap what it leaves if it dies.
//!
//! One append-only file per supervisor, `<pid>-<start time>-<random>.journal`, written
//! through `sys/journal.rs` (one framed, checksummed record per `write`):
//! 1. at start, before the temp root exists: [`Record::Owner`] (pid, start time, boot
//!    id), made durable (`fsync` of the file and the directory) on the blocking pool;
//!    [`Record::RootIntent`] (the
//!    root's path, 128 random bits in its name) right before its `mkdir`, and
//!    [`Record::Root`] (path, device, inode) right after; with the cgroup containment
//!    tier, [`Record::Cgroup`] (the supervisor's cgroup: path, device, inode) before any
//!    child is spawned into a cgroup below it;
//! 2. at each spawn, before `spawn` returns, *without* `fsync`: [`Record::Child`] (pid,
//!    start time, process group). The page cache keeps it across a crash of the process;
//!    only a crash of the machine can lose it, and a reboot kills the child anyway;
//! 3. at each reap: [`Record::Gone`]. Once [`COMPACT_AFTER`] records are written and most
//!    children are gone, the file is rewritten (owner, root, live children) under a new
//!    name and renamed over the old one, on the blocking pool (`compact.rs`).
//!
//! The file is removed when the supervisor's shared state is dropped, after the temp
//! root's removal (kept if that failed). Invariant: the writer's lock is only held for
//! one `write` (or a compaction's final `write` and `rename`, never its `fsync`), never
//! across an await.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use crate::sys::FileId;
use crate::sys::journal as sys;
use crate::sys::marker::OwnerMark;
use crate::sys::procfs;

mod compact;
mod record;
mod report;

pub(crate) use record::Record;

pub use report::{
    DeadOwner, DeathProof, SkipReason, Skipped, SpareReason, Spared, StoppedGroup, Survivor,
    SurvivorReason, SweepReport,
};

/// How many records a journal takes before it may be compacted.
pub(crate) const COMPACT_AFTER: usize = 4096;

/// The owner marker's stem (`sys::marker`) that the journal file `name` names: the name
/// without its suffix (`<pid>-<start>-<random>`). Every child of a journalled supervisor
/// carries `CUSTODIAN_OWNER=<stem>-<seq>`: a sweep finds a dead owner's descendants by
/// it, including a child killed with its owner before its record was written, and
/// descendants that left its process group (as long as they kept the environment).
pub(crate) fn marker_of(name: &OsStr) -> &[u8] {
    let b = name.as_bytes();
    b.strip_suffix(sys::SUFFIX.as_bytes()).unwrap_or(b)
}

/// The suffix of a compaction's new file, `<stem>.compacting` until it is renamed over
/// the journal: never a journal's name, so a crashed compaction's leftover is never
/// swept as one (the sweep removes it with its dead owner's journal).
pub(crate) const COMPACTING: &str = ".compacting";

/// A supervisor's open journal.
pub(crate) struct Journal {
    /// The supervisor's owner marker; the file is named by its stem.
    mark: Arc<OwnerMark>,
    dir: OwnedFd,
    name: OsString,
    path: PathBuf,
    state: Mutex<State>,
    /// Set when the root it records could not be removed: the file then stays.
    kept: std::sync::atomic::AtomicBool,
    /// Record writes that failed.
    failed: std::sync::atomic::AtomicU64,
}

struct State {
    fd: OwnedFd,
    /// Owner and root records, framed: the start of every compacted file.
    header: Vec<u8>,
    /// Records in the file (for the compaction threshold).
    written: usize,
    /// Live children by pid: their start time, group, grace (ms) and pidfd inode.
    live: HashMap<u32, (u64, u32, u64, Option<u64>)>,
    /// While a compaction runs: the frames appended since its snapshot.
    pending: Option<Vec<u8>>,
}

impl Journal {
    /// Creates this supervisor's journal in `state_dir` (created 0700 if missing) with
    /// its owner record, written but not yet durable: [`Journal::durability`] does the
    /// two `fsync`s, on the blocking pool (`start` runs on a runtime thread).
    pub(crate) fn create(state_dir: &Path) -> io::Result<Self> {
        let dir = sys::open_state_dir(state_dir, true)?;
        let mark = Arc::new(OwnerMark::new()?);
        let (pid, start) = mark.owner();
        let owner = Record::Owner {
            pid,
            start,
            boot_id: procfs::boot_id()?,
            pidns: procfs::pid_ns(),
        };
        let name = OsString::from(format!("{}{}", mark.stem(), sys::SUFFIX));
        let header = sys::frame(&owner.encode());
        let fd = sys::create_journal(dir.as_fd(), &name)?;
        if let Err(e) = sys::append(fd.as_fd(), &header) {
            let _ = rustix::fs::unlinkat(&dir, &name, rustix::fs::AtFlags::empty());
            return Err(e);
        }
        Ok(Journal {
            mark,
            path: state_dir.join(&name),
            dir,
            name,
            kept: std::sync::atomic::AtomicBool::new(false),
            failed: std::sync::atomic::AtomicU64::new(0),
            state: Mutex::new(State {
                fd,
                header,
                written: 1,
                live: HashMap::new(),
                pending: None,
            }),
        })
    }

    /// The owner record's durability, to run off the runtime thread: `fsync` of the file
    /// and of the state dir, so that a machine crash cannot lose the record of a root
    /// that reached the disk. It works on duplicates of both fds (close-on-exec: a child
    /// spawned meanwhile must not inherit the journal's `flock`), not on the journal, so
    /// that the journal's removal at shutdown never waits for it. A failure is logged
    /// and counted in [`failed_writes`](Self::failed_writes). A process crash needs none
    /// of this (the page cache keeps what was written), and a root whose record a
    /// machine crash lost is still found by its name, mode and free lock (the start-up
    /// reap).
    pub(crate) fn durability(self: &Arc<Self>) -> impl FnOnce() + Send + 'static {
        let dup = |fd: std::os::fd::BorrowedFd<'_>| rustix::io::fcntl_dupfd_cloexec(fd, 0);
        let fds = dup(self.lock().fd.as_fd()).and_then(|f| Ok((f, dup(self.dir.as_fd())?)));
        let (weak, path) = (Arc::downgrade(self), self.path.clone());
        move || {
            let synced = fds.and_then(|(file, dir)| {
                rustix::fs::fsync(&file)?;
                rustix::fs::fsync(&dir)
            });
            if let Err(e) = synced {
                if let Some(j) = weak.upgrade() {
                    // Relaxed: a tally, read by `stats()`.
                    j.failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                tracing::warn!(journal = %path.display(), error = %e, "crash journal: the owner record could not be made durable");
            }
        }
    }

    /// Records the temp root's path right before it is created.
    pub(crate) fn root_intent(&self, path: &Path) -> io::Result<()> {
        let state = self.lock();
        let rec = Record::RootIntent {
            path: path.to_path_buf(),
        };
        sys::append(state.fd.as_fd(), &sys::frame(&rec.encode()))
    }

    /// Records the temp root, created, with its identity.
    pub(crate) fn root_created(&self, path: &Path, id: FileId) -> io::Result<()> {
        let mut state = self.lock();
        let frame = sys::frame(
            &Record::Root {
                path: path.to_path_buf(),
                id,
            }
            .encode(),
        );
        sys::append(state.fd.as_fd(), &frame)?;
        state.header.extend(frame);
        state.written += 2;
        Ok(())
    }

    /// Records the supervisor's cgroup's path right before it is created (the cgroup
    /// containment tier).
    pub(crate) fn cgroup_intent(&self, path: &Path) -> io::Result<()> {
        let state = self.lock();
        let rec = Record::CgroupIntent {
            path: path.to_path_buf(),
        };
        sys::append(state.fd.as_fd(), &sys::frame(&rec.encode()))
    }

    /// Records the supervisor's cgroup (the cgroup containment tier), with its identity,
    /// before any child is spawned into a cgroup below it. Kept by compaction.
    pub(crate) fn cgroup_created(&self, path: &Path, id: FileId) -> io::Result<()> {
        let mut state = self.lock();
        let rec = Record::Cgroup {
            path: path.to_path_buf(),
            id,
        };
        let frame = sys::frame(&rec.encode());
        sys::append(state.fd.as_fd(), &frame)?;
        state.header.extend(frame);
        state.written += 1;
        Ok(())
    }

    /// The stem of this supervisor's owner marker (the file's name without its suffix).
    pub(crate) fn marker(&self) -> &OsStr {
        OsStr::from_bytes(marker_of(&self.name))
    }

    /// This supervisor's owner marker, which its children carry (and the subreaper
    /// proves adoptions by, when it is on too: one marker per supervisor).
    pub(crate) fn mark(&self) -> &Arc<OwnerMark> {
        &self.mark
    }

    /// Keeps the file when this is dropped: the root it records is still there (a
    /// failed removal), and the next sweep, once the owner is gone, retries it.
    pub(crate) fn keep(&self) {
        // Relaxed: read by `drop`, after every handle is gone.
        self.kept.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// The journal file's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Records a child just spawned (unreaped, so its `/proc` entry is its own), with
    /// the inode of `pidfd`, the spawn's pidfd for it (`None`: the kernel has none). A
    /// failed write is logged, never fatal: the child still runs and is still owned.
    pub(crate) fn child_started(
        self: &Arc<Self>,
        pid: u32,
        pidfd: Option<BorrowedFd<'_>>,
        grace: std::time::Duration,
    ) -> Option<ChildTicket> {
        let st = match procfs::proc_stat(pid) {
            Ok(Some(st)) => st,
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!(pid, error = %e, "crash journal: cannot read the child's start time");
                return None;
            }
        };
        // Saturating: a grace too long for a u64 of milliseconds is "wait for ever".
        let grace_ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX);
        let pidfd_ino = pidfd.and_then(crate::sys::process::pidfd_inode);
        let rec = Record::Child {
            pid,
            start: st.start,
            pgid: st.pgid,
            grace_ms: Some(grace_ms),
            pidfd_ino,
        };
        let mut state = self.lock();
        state
            .live
            .insert(pid, (st.start, st.pgid, grace_ms, pidfd_ino));
        self.write(&mut state, &rec);
        Some(ChildTicket {
            journal: self.clone(),
            pid,
            start: st.start,
            pidfd_ino,
            served_by: None,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every update is a single insert/remove or a whole-file swap.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends `rec` (one `write`, no `fsync`); a failure is logged and counted in
    /// [`failed_writes`](Self::failed_writes), never fatal. Starts a compaction, off this
    /// thread, once the file is long and mostly dead records.
    fn write(self: &Arc<Self>, state: &mut State, rec: &Record) {
        let frame = sys::frame(&rec.encode());
        if let Err(e) = sys::append(state.fd.as_fd(), &frame) {
            // Relaxed: a tally, read by `stats()`.
            self.failed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(journal = %self.path.display(), error = %e, "crash journal write failed");
        }
        if let Some(p) = &mut state.pending {
            p.extend_from_slice(&frame);
        }
        state.written += 1;
        if state.pending.is_none()
            && state.written >= COMPACT_AFTER
            && state.live.len() * 4 < state.written
        {
            compact::start(self, state);
        }
    }

    /// How many record writes failed (a full or read-only file system, EIO).
    pub(crate) fn failed_writes(&self) -> u64 {
        self.failed.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for Journal {
    /// Everything it recorded has been released (or the process is exiting): drop it,
    /// unless the root it records is still there. The supervisor drops it only after
    /// the root's removal has ended, on every path (shutdown, emergency, last drop).
    fn drop(&mut self) {
        if *self.kept.get_mut() {
            return;
        }
        let _ = rustix::fs::unlinkat(
            &self.dir,
            OsStr::new(&self.name),
            rustix::fs::AtFlags::empty(),
        );
    }
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// A child's line in the journal; [`reaped`](Self::reaped) writes its removal record.
pub(crate) struct ChildTicket {
    journal: Arc<Journal>,
    pid: u32,
    start: u64,
    pidfd_ino: Option<u64>,
    /// The watcher told of this child (`Link::serve`), told again at its reap. Weak: a
    /// child outliving its supervisor must not keep the link open (its drop says
    /// `LET_GO`).
    served_by: Option<std::sync::Weak<crate::sys::watch::Link>>,
}

impl ChildTicket {
    /// The child as its record proves it: what the watcher is told of a child it serves.
    pub(crate) fn identity(&self) -> crate::sys::watch::Served {
        crate::sys::watch::Served {
            pid: self.pid,
            start: self.start,
            pidfd_ino: self.pidfd_ino,
        }
    }

    /// The watcher `link` was told of this child: its reap is told too.
    pub(crate) fn served_by(&mut self, link: &Arc<crate::sys::watch::Link>) {
        self.served_by = Some(Arc::downgrade(link));
    }

    /// The child was reaped: its pid may be reused from now on.
    pub(crate) fn reaped(&self) {
        let mut state = self.journal.lock();
        state.live.remove(&self.pid);
        let rec = Record::Gone {
            pid: self.pid,
            start: self.start,
        };
        self.journal.write(&mut state, &rec);
        drop(state);
        // Without it, the watcher's journal-less sweep would still take a process that
        // got this pid within the child's start tick for it
        // (tests/review_watch2_served_reaped.rs).
        if let Some(link) = self.served_by.as_ref().and_then(std::sync::Weak::upgrade) {
            link.gone(self.identity());
        }
    }
}

impl std::fmt::Debug for ChildTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildTicket")
            .field("pid", &self.pid)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_junk_is_refused() {
        let recs = [
            Record::Owner {
                pid: 1,
                start: 2,
                boot_id: procfs::boot_id().unwrap(),
                pidns: None,
            },
            Record::RootIntent {
                path: "/tmp/custodian-y".into(),
            },
            Record::CgroupIntent {
                path: "/sys/fs/cgroup/custodian-1-0123456789abcdef".into(),
            },
            Record::Root {
                path: "/tmp/custodian-x".into(),
                id: FileId { dev: 1, ino: 2 },
            },
            Record::Owner {
                pid: 1,
                start: 2,
                boot_id: procfs::boot_id().unwrap(),
                pidns: Some(FileId { dev: 3, ino: 4 }),
            },
            Record::Child {
                pid: 7,
                start: 8,
                pgid: 7,
                grace_ms: None,
                pidfd_ino: None,
            },
            Record::Child {
                pid: 7,
                start: 8,
                pgid: 7,
                grace_ms: Some(u64::MAX),
                pidfd_ino: None,
            },
            Record::Child {
                pid: 7,
                start: 8,
                pgid: 7,
                grace_ms: Some(5),
                pidfd_ino: Some(6),
            },
            Record::Gone { pid: 7, start: 8 },
            Record::Swept { at: 9 },
            Record::Survivor { pid: 7, start: 8 },
        ];
        for r in &recs {
            assert_eq!(Record::decode(&r.encode()).as_ref(), Some(r));
        }
        assert_eq!(Record::decode(&[]), None);
        assert_eq!(Record::decode(&[9, 0, 0]), None);
        assert_eq!(Record::decode(&[3, 1, 2]), None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn compaction_keeps_owner_root_and_live_children_and_the_lock() {
        let dir =
            std::env::temp_dir().join(format!("custodian-journal-unit-{}", std::process::id()));
        let j = Arc::new(Journal::create(&dir).unwrap());
        j.root_created(Path::new("/tmp/custodian-r"), FileId { dev: 1, ino: 2 })
            .unwrap();
        let me = std::process::id();
        let own = crate::sys::process::pidfd_open(me).unwrap();
        let kept = j
            .child_started(
                me,
                own.as_ref().map(AsFd::as_fd),
                std::time::Duration::from_secs(2),
            )
            .unwrap();
        for _ in 0..COMPACT_AFTER {
            // This process stands in for a child: started and reaped again and again.
            j.child_started(
                me,
                own.as_ref().map(AsFd::as_fd),
                std::time::Duration::from_secs(2),
            )
            .unwrap()
            .reaped();
            if j.lock().pending.is_some() {
                break;
            }
        }
        // The compaction runs on the blocking pool: wait for the swap.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while j.lock().pending.is_some() {
            assert!(std::time::Instant::now() < deadline, "never compacted");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let mut leftover = j.marker().to_os_string();
        leftover.push(COMPACTING);
        assert!(!dir.join(leftover).exists());
        let bytes = std::fs::read(j.path()).unwrap();
        let (frames, bad) = sys::frames(&bytes);
        assert_eq!(bad, None);
        let recs: Vec<Record> = frames
            .iter()
            .map(|(_, p)| Record::decode(p).unwrap())
            .collect();
        assert!(recs.len() < 64, "compacted: {} records", recs.len());
        assert!(matches!(recs[0], Record::Owner { pid, .. } if pid == me));
        assert!(matches!(recs[1], Record::Root { .. }));
        // The compacted file is locked as the journal was.
        let other = std::fs::File::open(j.path()).unwrap();
        assert!(
            rustix::fs::flock(&other, rustix::fs::FlockOperation::NonBlockingLockExclusive)
                .is_err()
        );
        let path = j.path().to_path_buf();
        drop((kept, j));
        assert!(!path.exists(), "dropped with the supervisor");
        std::fs::remove_dir(&dir).unwrap();
    }

    #[test]
    fn a_failed_write_is_counted_never_fatal() {
        let dir =
            std::env::temp_dir().join(format!("custodian-journal-fail-{}", std::process::id()));
        let j = Arc::new(Journal::create(&dir).unwrap());
        // A read-only fd in place of the file: every write fails (EBADF).
        j.lock().fd = rustix::fs::open(
            "/dev/null",
            rustix::fs::OFlags::RDONLY,
            rustix::fs::Mode::empty(),
        )
        .unwrap();
        assert_eq!(j.failed_writes(), 0);
        let t = j
            .child_started(std::process::id(), None, std::time::Duration::ZERO)
            .unwrap();
        t.reaped();
        assert_eq!(j.failed_writes(), 2);
        drop((t, j));
        std::fs::remove_dir(&dir).unwrap();
    }
}
