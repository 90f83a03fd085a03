//! The one answer to "is this custodian's own, and abandoned?", asked by the reaping of
//! abandoned roots at start-up, by the age sweep (`recovery/age/`) and by
//! `AtomicFile::sweep` (`resource/atomic/os.rs`).
//!
//! Something is proven ours only if all of these hold, in this order, on an fd opened
//! without following a symlink (and checked to be the object that was looked at):
//! - its name has the exact shape custodian gives it: a temp root is
//!   `<prefix><32 lower-case hex>` (`root.rs`), an atomic writer's temp file
//!   `<prefix><16 lower-case hex>` (`resource/atomic/os.rs`);
//! - its type: a root is a directory, an atomic temp a regular file (never a symlink);
//! - it is on the same mount as the directory it was found in (by mount id, `mount.rs`);
//! - it belongs to this effective uid; a root's mode is exactly 0700;
//! - the caller's age test says it is old enough (a root a concurrent start has made but
//!   not locked yet is young);
//! - nobody holds a lock on it: with [`Lock::Take`] an exclusive `flock` that succeeds
//!   now and stays held by the returned fd while the caller removes it; with
//!   [`Lock::Look`] (a dry run, which must take no lock) the inode is not in
//!   `/proc/locks` (`live.rs`).

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{AtFlags, FileType, FlockOperation, Mode, OFlags, Stat};
use rustix::io::Errno;

use super::FileId;
use super::live::Live;
use super::mount::place_of;

/// What custodian makes, by the shape of its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shape<'a> {
    /// A private temp root: `<prefix><32 hex>`, a directory, mode 0700.
    Root(&'a str),
    /// An atomic writer's temp file: `<prefix><16 hex>`, a regular file.
    AtomicTemp(&'a str),
}

impl Shape<'_> {
    /// Whether `name` has this shape.
    pub(crate) fn matches(self, name: &[u8]) -> bool {
        let (prefix, digits) = match self {
            Shape::Root(p) => (p, 32),
            Shape::AtomicTemp(p) => (p, 16),
        };
        name.strip_prefix(prefix.as_bytes()).is_some_and(|rest| {
            rest.len() == digits
                && rest
                    .iter()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
        })
    }

    fn kind(self) -> FileType {
        match self {
            Shape::Root(_) => FileType::Directory,
            Shape::AtomicTemp(_) => FileType::RegularFile,
        }
    }
}

/// How the lock test is made.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Lock<'a> {
    /// Take an exclusive `flock` without waiting, held by [`Proven::fd`].
    Take,
    /// Take nothing: look the inode up in a reading of `/proc/locks` (a dry run).
    Look(&'a Live),
}

/// Why something is not proven ours and abandoned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NotOurs {
    /// The name does not have the shape custodian gives.
    Name,
    /// Not the type custodian makes under that name (a symlink, a file for a root...).
    Kind,
    /// On another mount than the directory it was found in.
    OtherMount,
    /// Another user's.
    OtherUser(u32),
    /// A root whose mode is not exactly 0700.
    Mode(u32),
    /// The caller's age test said it is too young.
    Young,
    /// Someone holds a lock on it: its owner is alive.
    Locked,
}

/// Something proven ours and abandoned, opened (and, with [`Lock::Take`], locked).
#[derive(Debug)]
pub(crate) struct Proven {
    /// The open object; with [`Lock::Take`] it holds the lock until dropped.
    pub(crate) fd: OwnedFd,
    /// Its identity, for the inode-checked removal.
    pub(crate) id: FileId,
}

/// Checks `name` in `parent` against `shape`, in the order of the module docs; `young`
/// is the caller's age test. `Ok(Err(_))` says why it is not ours (or not abandoned).
///
/// # Errors
///
/// A failing `stat` or `open` other than "gone" (`NotFound` is returned as is, for the
/// caller to ignore).
pub(crate) fn prove(
    parent: BorrowedFd<'_>,
    name: &OsStr,
    shape: Shape<'_>,
    young: impl Fn(&Stat) -> bool,
    lock: Lock<'_>,
) -> io::Result<Result<Proven, NotOurs>> {
    use std::os::unix::ffi::OsStrExt;
    if !shape.matches(name.as_bytes()) {
        return Ok(Err(NotOurs::Name));
    }
    // Look before opening: opening a device or a fifo can have effects of its own.
    let before = rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW)?;
    if FileType::from_raw_mode(before.st_mode) != shape.kind() {
        return Ok(Err(NotOurs::Kind));
    }
    let flags = match shape {
        Shape::Root(_) => OFlags::DIRECTORY,
        Shape::AtomicTemp(_) => OFlags::NONBLOCK | OFlags::NOCTTY,
    };
    // `O_NOATIME` (where allowed: the owner) so that reading a root does not make it young.
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | flags;
    let opened = match rustix::fs::openat(parent, name, flags | OFlags::NOATIME, Mode::empty()) {
        Err(Errno::PERM) => rustix::fs::openat(parent, name, flags, Mode::empty()),
        r => r,
    };
    let fd = match opened {
        Ok(fd) => fd,
        // Swapped for a symlink or another type between the look and the open.
        Err(Errno::LOOP | Errno::NOTDIR) => return Ok(Err(NotOurs::Kind)),
        Err(e) => return Err(e.into()),
    };
    let st = rustix::fs::fstat(&fd)?;
    if FileType::from_raw_mode(st.st_mode) != shape.kind() {
        return Ok(Err(NotOurs::Kind));
    }
    if place_of(fd.as_fd())?.crosses_from(&place_of(parent)?) {
        return Ok(Err(NotOurs::OtherMount));
    }
    if st.st_uid != rustix::process::geteuid().as_raw() {
        return Ok(Err(NotOurs::OtherUser(st.st_uid)));
    }
    let mode = st.st_mode & 0o7777;
    if matches!(shape, Shape::Root(_)) && mode != 0o700 {
        return Ok(Err(NotOurs::Mode(mode)));
    }
    if young(&st) {
        return Ok(Err(NotOurs::Young));
    }
    let id = FileId::of_stat(&st);
    let locked = match lock {
        Lock::Take => rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive).is_err(),
        Lock::Look(live) => live.is_locked(id.ino),
    };
    if locked {
        return Ok(Err(NotOurs::Locked));
    }
    Ok(Ok(Proven { fd, id }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_names_of_the_generated_shape_match() {
        let hex = "0123456789abcdef0123456789abcdef";
        let root = Shape::Root("custodian-");
        assert!(root.matches(format!("custodian-{hex}").as_bytes()));
        assert!(!root.matches(b"custodian-notes"));
        assert!(!root.matches(format!("custodian-{hex}0").as_bytes()));
        assert!(!root.matches(format!("custodian-{}", hex.to_uppercase()).as_bytes()));
        assert!(!root.matches(format!("other-{hex}").as_bytes()));
        let temp = Shape::AtomicTemp(".custodian-atomic-");
        assert!(temp.matches(b".custodian-atomic-0123456789abcdef"));
        assert!(!temp.matches(b".custodian-atomic-0123456789abcdef0"));
        assert!(!temp.matches(format!(".custodian-atomic-{hex}").as_bytes()));
    }

    #[test]
    fn a_locked_root_is_refused_by_both_lock_tests_and_a_free_one_proven() {
        let base =
            std::env::temp_dir().join(format!("custodian-ownership-unit-{}", std::process::id()));
        std::fs::create_dir_all(&base).unwrap();
        let parent = crate::sys::remove::open_dir_nofollow(rustix::fs::CWD, &base).unwrap();
        let live = crate::sys::root::TempRoot::create(&base, "r-").unwrap();
        let name = live.path().file_name().unwrap().to_owned();
        let old = |_: &Stat| false;
        let shape = Shape::Root("r-");
        let got = prove(parent.as_fd(), &name, shape, old, Lock::Take).unwrap();
        assert_eq!(got.unwrap_err(), NotOurs::Locked);
        let seen = Live::read().unwrap();
        let got = prove(parent.as_fd(), &name, shape, old, Lock::Look(&seen)).unwrap();
        assert_eq!(got.unwrap_err(), NotOurs::Locked);
        let got = prove(parent.as_fd(), &name, shape, |_: &Stat| true, Lock::Take).unwrap();
        assert_eq!(got.unwrap_err(), NotOurs::Young);
        live.remove().unwrap();
        let free = crate::sys::root::TempRoot::create(&base, "r-").unwrap();
        let name = free.path().file_name().unwrap().to_owned();
        let path = free.path().to_path_buf();
        drop(free);
        let seen = Live::read().unwrap();
        assert!(
            prove(parent.as_fd(), &name, shape, old, Lock::Look(&seen))
                .unwrap()
                .is_ok()
        );
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let got = prove(parent.as_fd(), &name, shape, old, Lock::Take).unwrap();
        assert_eq!(got.unwrap_err(), NotOurs::Mode(0o755));
        std::fs::remove_dir_all(&base).unwrap();
    }
}
