//! The age sweep's walk: iterative, one frame per directory on the current path (its
//! fd, which it holds `flock`ed in a real sweep if it is old, and its remaining names),
//! so memory is the depth plus the entries of the directories on that path; at most
//! [`MAX_DEPTH`] levels (one fd each), deeper directories are kept and reported.
//!
//! Each entry is judged on its own (the rules in `mod.rs`); a directory is decided after
//! its walk, from what was kept inside and from its own times as they were *before* the
//! walk (reading and emptying it changes them). Entries are opened with `O_NOATIME`
//! where allowed, so that a dry run does not make old directories young.

use std::cell::OnceCell;
use std::collections::HashSet;
use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::fs::{AtFlags, FileType, FlockOperation, OFlags, Stat};
use rustix::io::Errno;

use super::dirs::{names_of, open_nofollow};
use super::exclude::Excludes;
use super::{AgeKept, AgeKeptReason as Why, AgeReport, AgeSweep};
use crate::resource::ATOMIC_TEMP_PREFIX;
use crate::sys::FileId;
use crate::sys::live::{Live, is_listened_on};
use crate::sys::mount::{Place, place_at, place_of};
use crate::sys::ownership::{Lock, NotOurs, Shape, prove};
use crate::sys::remove::{self, Outcome};

/// How deep the walk goes below the base (one directory fd per level).
pub(super) const MAX_DEPTH: usize = 256;

/// What the walk needs from the sweep, fixed for one run.
#[derive(Debug)]
pub(super) struct Rules<'a> {
    pub(super) opts: &'a AgeSweep,
    /// Times at or after this (since the epoch) are young.
    pub(super) before: Duration,
    pub(super) euid: u32,
    pub(super) excludes: &'a Excludes,
    pub(super) live: &'a Live,
    /// The base as an absolute path (listening sockets are listed by path).
    pub(super) absolute: PathBuf,
    /// The files other processes hold open, read at the first file about to be removed.
    pub(super) open: OnceCell<io::Result<HashSet<FileId>>>,
}

impl Rules<'_> {
    /// atime, mtime and ctime all older than the age.
    fn old(&self, st: &Stat) -> bool {
        let older = |secs: i64, nsecs: i64| {
            secs >= 0
                && Duration::new(secs.unsigned_abs(), u32::try_from(nsecs).unwrap_or(0))
                    < self.before
        };
        #[allow(clippy::unnecessary_cast)] // `st_*time` types differ between targets.
        let all = older(st.st_atime as i64, st.st_atime_nsec as i64)
            && older(st.st_mtime as i64, st.st_mtime_nsec as i64)
            && older(st.st_ctime as i64, st.st_ctime_nsec as i64);
        all
    }

    /// Whether another process holds the file `id` open (an unreadable `/proc` says yes).
    fn is_open(&self, id: FileId) -> bool {
        match self.open.get_or_init(crate::sys::live::open_files) {
            Ok(open) => open.contains(&id),
            Err(_) => true,
        }
    }

    fn lock(&self) -> Lock<'_> {
        if self.opts.dry_run {
            Lock::Look(self.live)
        } else {
            Lock::Take
        }
    }
}

/// One directory on the current path.
struct Frame {
    fd: OwnedFd,
    place: Place,
    /// Its identity, for the inode-checked `rmdir`.
    id: FileId,
    /// Its name in the parent frame (unused for the base).
    name: OsString,
    /// Names still to judge (popped from the end).
    todo: Vec<OsString>,
    /// Whether each entry is judged on its own (all mode, or inside a proven root);
    /// otherwise only custodian's own names are candidates (the default mode's base).
    each: bool,
    /// Inside a proven root of custodian's: its symlinks are ours to remove too.
    own: bool,
    /// Whether all its times were older than the age before the walk entered it.
    was_old: bool,
    /// Something inside was kept: it cannot be removed.
    kept: bool,
    /// It (or a directory above it) left the base during the walk: its walk stopped.
    moved: bool,
}

/// What became of one entry.
enum Verdict {
    Removed,
    Kept(Why),
    Enter(Frame),
    Gone,
}

/// Walks the base `dir`, filling `report`.
pub(super) fn run(rules: &Rules<'_>, dir: OwnedFd, report: &mut AgeReport) -> io::Result<()> {
    let place = place_of(dir.as_fd())?;
    let mut stack = vec![Frame {
        todo: names_of(&dir)?,
        id: place.id,
        place,
        fd: dir,
        name: OsString::new(),
        each: rules.opts.all,
        own: false,
        was_old: false,
        kept: false,
        moved: false,
    }];
    let mut path = report.base.clone();
    let mut rel = PathBuf::new();
    loop {
        // A directory on the path renamed out of the base is not followed: its fd would
        // go on removing there (at most the entry being judged may still go).
        let moved = !rules.opts.dry_run && !attached(&stack);
        let Some(top) = stack.last_mut() else {
            return Ok(());
        };
        if moved && !top.moved {
            top.moved = true;
            top.kept = true;
            top.todo.clear();
        }
        if let Some(name) = top.todo.pop() {
            report.scanned += 1;
            path.push(&name);
            rel.push(&name);
            let verdict = judge(rules, top, &name, &rel)
                .unwrap_or_else(failed)
                .unwrap_or(Verdict::Gone);
            match verdict {
                Verdict::Enter(frame) if stack.len() > MAX_DEPTH => {
                    drop(frame);
                    keep(report, stack.last_mut(), &path, Why::TooDeep);
                }
                Verdict::Enter(frame) => {
                    stack.push(frame);
                    continue; // `path` stays on the directory until its walk ends
                }
                Verdict::Removed => report.removed.push(path.clone()),
                Verdict::Kept(why) => keep(report, stack.last_mut(), &path, why),
                Verdict::Gone => {}
            }
        } else {
            let done = stack.pop().expect("the loop checked the stack");
            let Some(parent) = stack.last_mut() else {
                return Ok(());
            };
            match finish(rules, parent, done) {
                Ok(None) => report.removed.push(path.clone()),
                Ok(Some(why)) => keep(report, Some(parent), &path, why),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => keep(report, Some(parent), &path, fail_reason(&e)),
            }
        }
        path.pop();
        rel.pop();
    }
}

fn keep(report: &mut AgeReport, parent: Option<&mut Frame>, path: &Path, reason: Why) {
    if let Some(p) = parent {
        p.kept = true;
    }
    report.kept.push(AgeKept {
        path: path.to_path_buf(),
        reason,
    });
}

/// A failure to judge one entry: `Gone` for one removed meanwhile, else kept as failed.
fn failed(e: io::Error) -> Option<Verdict> {
    (e.kind() != io::ErrorKind::NotFound).then(|| Verdict::Kept(fail_reason(&e)))
}

fn fail_reason(e: &io::Error) -> Why {
    Why::Failed {
        detail: e.to_string(),
    }
}

/// Decides a directory whose walk has ended: `None` if it is (or would be) removed.
fn finish(rules: &Rules<'_>, parent: &Frame, done: Frame) -> io::Result<Option<Why>> {
    if done.moved {
        return Ok(Some(Why::Failed {
            detail: "moved out of the base (or removed) during the sweep: not followed".into(),
        }));
    }
    if !done.was_old {
        return Ok(Some(Why::Young));
    }
    if done.kept {
        return Ok(Some(Why::NotEmpty));
    }
    // A live process's working directory, or one it holds open, is in use even empty.
    if rules.is_open(done.id) {
        return Ok(Some(Why::Open));
    }
    if rules.opts.dry_run {
        return Ok(None);
    }
    let st = rustix::fs::statat(&parent.fd, &done.name, AtFlags::SYMLINK_NOFOLLOW)?;
    if FileId::of_stat(&st) != done.id {
        return Err(remove::replaced_error());
    }
    // `done.fd` (and its lock) is held until after the `rmdir`.
    let removed = rustix::fs::unlinkat(&parent.fd, &done.name, AtFlags::REMOVEDIR);
    drop(done);
    match removed {
        Ok(()) => Ok(None),
        // Something was created inside during the walk: live.
        Err(Errno::NOTEMPTY | Errno::EXIST) => Ok(Some(Why::NotEmpty)),
        Err(Errno::BUSY) => Ok(Some(Why::MountPoint)),
        Err(e) => Err(e.into()),
    }
}

/// Whether each directory on the path is still where the walk entered it (its name in
/// its parent is still it): one `stat` per level.
fn attached(stack: &[Frame]) -> bool {
    stack.windows(2).all(|w| {
        rustix::fs::statat(&w[0].fd, &w[1].name, AtFlags::SYMLINK_NOFOLLOW)
            .is_ok_and(|st| FileId::of_stat(&st) == w[1].id)
    })
}

/// Judges one entry of `dir`. `Ok(None)`: gone meanwhile.
fn judge(
    rules: &Rules<'_>,
    dir: &Frame,
    name: &OsString,
    rel: &Path,
) -> io::Result<Option<Verdict>> {
    if let Some(pattern) = rules.excludes.matching(name, rel) {
        return Ok(Some(Verdict::Kept(Why::Excluded { pattern })));
    }
    if !dir.each {
        return own(rules, dir, name);
    }
    let st = match rustix::fs::statat(&dir.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::NOENT) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let kind = FileType::from_raw_mode(st.st_mode);
    let why = match kind {
        FileType::RegularFile | FileType::Directory | FileType::Symlink => None,
        FileType::Socket if rules.live.is_listening(&rules.absolute.join(rel)) => {
            Some(Why::ListeningSocket)
        }
        // A dead owner's inspect socket, in its proven root: ours, and nobody listens
        // (kept, it kept the root for good after every SIGKILLed `custodian run`), not
        // even from another network namespace, which `/proc/net/unix` does not list
        // (tests/review_final2_age_netns_socket.rs).
        FileType::Socket if dir.own && crate::inspect::is_socket_name(name) => {
            match is_listened_on(dir.fd.as_fd(), name) {
                Some(false) => None,
                Some(true) => Some(Why::ListeningSocket),
                None => Some(Why::Socket),
            }
        }
        FileType::Socket => Some(Why::Socket),
        FileType::Fifo => Some(Why::Fifo),
        FileType::CharacterDevice | FileType::BlockDevice => Some(Why::Device),
        FileType::Unknown => Some(Why::Special),
    };
    if let Some(why) = why {
        return Ok(Some(Verdict::Kept(why)));
    }
    if kind == FileType::Symlink && !(rules.opts.symlinks || dir.own) {
        return Ok(Some(Verdict::Kept(Why::Symlink)));
    }
    // `other_users` is a switch of `all`: the default mode takes only this user's, even
    // inside a root of its own (a dead owner's child may have become another user).
    if st.st_uid != rules.euid && !(rules.opts.all && rules.opts.other_users) {
        return Ok(Some(Verdict::Kept(Why::OtherUser { uid: st.st_uid })));
    }
    let id = FileId::of_stat(&st);
    if rules.live.is_locked(id.ino) {
        return Ok(Some(Verdict::Kept(Why::Locked)));
    }
    match place_at(dir.fd.as_fd(), name.as_os_str()) {
        Ok(p) if p.id != id => return Err(remove::replaced_error()),
        Ok(p) if p.crosses_from(&dir.place) => return Ok(Some(Verdict::Kept(Why::MountPoint))),
        Ok(_) => {}
        Err(Errno::NOENT) => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let old = rules.old(&st);
    if kind == FileType::Directory {
        return enter(rules, dir, name, id, old).map(Some);
    }
    let link = kind == FileType::Symlink;
    if !old {
        return Ok(Some(Verdict::Kept(Why::Young)));
    }
    if link {
        return remove_file(rules, dir.fd.as_fd(), name, id, None, true);
    }
    // A socket cannot be opened (nor locked): its inode check is the unlink's.
    let file = if rules.opts.dry_run || kind == FileType::Socket {
        None
    } else {
        match open_nofollow(dir.fd.as_fd(), name, OFlags::NONBLOCK | OFlags::NOCTTY) {
            Ok(fd) => Some(fd),
            Err(Errno::NOENT) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    };
    remove_file(rules, dir.fd.as_fd(), name, id, file, false)
}

/// The default mode's base: only custodian's own names are candidates, each proven by
/// `sys/ownership.rs`.
fn own(rules: &Rules<'_>, dir: &Frame, name: &OsString) -> io::Result<Option<Verdict>> {
    let bytes = name.as_bytes();
    let shape = if Shape::Root(&rules.opts.root_prefix).matches(bytes) {
        Shape::Root(&rules.opts.root_prefix)
    } else if !rules.opts.roots_only && Shape::AtomicTemp(ATOMIC_TEMP_PREFIX).matches(bytes) {
        Shape::AtomicTemp(ATOMIC_TEMP_PREFIX)
    } else {
        return Ok(Some(Verdict::Kept(Why::NotOurs)));
    };
    let young = |st: &Stat| !rules.old(st);
    let proven = match prove(dir.fd.as_fd(), name, shape, young, rules.lock()) {
        Ok(Ok(p)) => p,
        Ok(Err(why)) => {
            return Ok(Some(Verdict::Kept(match why {
                NotOurs::Name => Why::NotOurs,
                NotOurs::Kind | NotOurs::Mode(_) if matches!(shape, Shape::Root(_)) => {
                    Why::NotARoot
                }
                NotOurs::Kind | NotOurs::Mode(_) => Why::NotOurs,
                NotOurs::OtherMount => Why::MountPoint,
                NotOurs::OtherUser(uid) => Why::OtherUser { uid },
                NotOurs::Young => Why::Young,
                NotOurs::Locked => Why::Locked,
            })));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    match shape {
        // Its insides are judged one by one: a dead owner's descendants may still use them.
        Shape::Root(_) => Ok(Some(Verdict::Enter(Frame {
            todo: names_of(&proven.fd)?,
            place: place_of(proven.fd.as_fd())?,
            id: proven.id,
            fd: proven.fd,
            name: name.clone(),
            each: true,
            own: true,
            was_old: true,
            kept: false,
            moved: false,
        }))),
        Shape::AtomicTemp(_) => remove_file(
            rules,
            dir.fd.as_fd(),
            name,
            proven.id,
            Some(proven.fd),
            false,
        ),
    }
}

/// Opens a directory to walk it; in a real sweep its `flock` must be free now, and an old
/// one's is held until the frame is dropped, after its `rmdir`.
fn enter(
    rules: &Rules<'_>,
    dir: &Frame,
    name: &OsString,
    id: FileId,
    was_old: bool,
) -> io::Result<Verdict> {
    let fd = open_nofollow(dir.fd.as_fd(), name, OFlags::DIRECTORY)?;
    let place = place_of(fd.as_fd())?;
    if place.id != id {
        return Err(remove::replaced_error());
    }
    if place.crosses_from(&dir.place) {
        return Ok(Verdict::Kept(Why::MountPoint));
    }
    if !rules.opts.dry_run {
        if rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive).is_err() {
            return Ok(Verdict::Kept(Why::Locked));
        }
        // A young directory is never removed: its lock, held while walking it, would only
        // refuse its live owner's own `flock` (a temp root is made `mkdir`, then `flock`).
        if !was_old {
            rustix::fs::flock(&fd, FlockOperation::Unlock)?;
        }
    }
    Ok(Verdict::Enter(Frame {
        todo: names_of(&fd)?,
        place,
        id,
        fd,
        name: name.clone(),
        each: true,
        own: dir.own,
        was_old,
        kept: false,
        moved: false,
    }))
}

/// Removes a non-directory (a real sweep: `held` open, whose `flock` must be free and is
/// held across the inode-checked `unlink`); `link`: a symlink is expected.
fn remove_file(
    rules: &Rules<'_>,
    dir: BorrowedFd<'_>,
    name: &OsString,
    id: FileId,
    held: Option<OwnedFd>,
    link: bool,
) -> io::Result<Option<Verdict>> {
    // Held open by a live process (a dead owner's child writing its `TMPDIR`): in use.
    if !link && rules.is_open(id) {
        return Ok(Some(Verdict::Kept(Why::Open)));
    }
    if rules.opts.dry_run {
        return Ok(Some(Verdict::Removed));
    }
    if let Some(fd) = &held {
        if FileId::of_fd(fd)? != id {
            return Err(remove::replaced_error());
        }
        // Already held when `prove` took it; `flock` on the same description again is a
        // no-op then, and a conflict with anyone else's.
        if rustix::fs::flock(fd, FlockOperation::NonBlockingLockExclusive).is_err() {
            return Ok(Some(Verdict::Kept(Why::Locked)));
        }
    }
    match remove::remove_file_at(dir, name, id)? {
        Outcome::Removed => Ok(Some(Verdict::Removed)),
        Outcome::SymlinkRemoved if link => Ok(Some(Verdict::Removed)),
        Outcome::AlreadyGone => Ok(None),
        // A file swapped for a symlink: the link is gone, the file it replaced was not ours.
        Outcome::SymlinkRemoved => Err(remove::replaced_error()),
    }
}
