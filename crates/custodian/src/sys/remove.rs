//! Directory-fd-relative removal that never follows a symlink, never enters another mount
//! and walks a tree of any depth without recursion.
//!
//! Invariants:
//! - every name is resolved relative to a directory fd that custodian holds, so a parent
//!   directory renamed or swapped for a symlink cannot redirect a removal elsewhere;
//! - a symlink is unlinked as a link (`unlinkat` never follows the last component), its
//!   target is never touched;
//! - before a recorded entry is removed its device/inode is compared with the identity
//!   recorded at creation; an entry replaced by another object is left in place and
//!   reported; an emptied directory is checked again before its `rmdir`;
//! - removal never enters another mount: a mount point inside a managed directory (a
//!   directory, or a single file bind-mounted onto a file) is neither entered nor
//!   unlinked, everything around it is removed, and the removal fails with
//!   [`io::ErrorKind::ResourceBusy`] "a mount point inside a managed directory was left in
//!   place: PATH" ([`is_mount_point_error`] tells it from other failures);
//! - the walk is iterative, with an explicit stack of frames (identity, remaining names):
//!   no recursion, so no depth can overflow a thread's stack. Only the deepest
//!   [`MAX_OPEN`] levels keep an fd (fewer when the process runs out: `EMFILE` closes
//!   the shallowest ones); going back up past a closed level reopens it through the
//!   child's `..` and checks its device, inode and mount id against those recorded on the
//!   way down. A mismatch means the tree was moved: the walk stops and fails rather than
//!   remove anything it has not verified. Memory is proportional to the depth plus the
//!   entries of the directories on the current path.
//!
//! Which kernels get which guarantee (details in `mount.rs`): from Linux 5.8,
//! `statx` reports `STATX_ATTR_MOUNT_ROOT` and `STATX_MNT_ID`, so every mount point is
//! detected, same-file-system bind mounts included. Before 5.8 (and wherever the
//! file system does not report them) only `st_dev` is compared: a mount of another file
//! system is still detected and left alone, but a bind mount of a directory of the same
//! file system looks like a plain directory and is emptied (its `rmdir` then fails with
//! `EBUSY`). A single-file bind mount is safe on every kernel: `unlink` of a mount point
//! fails with `EBUSY` in the mount namespace that sees it.
//!
//! Errors keep the kind of the failing call (an `EMFILE` stays `EMFILE`, so a caller can
//! retry later). When several entries fail, the first failure is reported, except that a
//! mount point left in place yields to any other failure: that one may be transient, and
//! a retry finds the mount point again.
//!
//! The walk's file-system calls go through [`WalkFs`] (`remove/fs.rs`): [`RealFs`] here,
//! an in-memory mock in the unit tests (`remove/mock_tests.rs`).

use std::ffi::{CStr, CString, OsStr};
use std::fmt;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use super::FileId;

mod fs;
#[cfg(test)]
mod mock_fs;
#[cfg(test)]
mod mock_tests;
#[cfg(test)]
pub(super) mod tests;
mod walk;

use walk::{Walk, unlink_gone_ok, unlink_missing_ok};

pub(crate) use fs::{RealDir, RealFs, WalkFs};

/// How many directory fds one walk holds open at most, besides the caller's: enough to
/// make wide trees cheap, few enough for a process close to its fd limit.
pub(crate) const MAX_OPEN: usize = 16;

/// Entries removed between two checks that the open levels have not moved (besides the
/// check at every return to a parent).
const CHECK_EVERY: usize = 64;

/// What a removal found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The recorded object was removed.
    Removed,
    /// Nothing was there any more (already removed by someone else).
    AlreadyGone,
    /// A symlink had been planted at the name; the link was removed, its target kept.
    SymlinkRemoved,
}

/// A name that no longer refers to the object custodian created.
#[derive(Debug)]
struct Replaced;

impl fmt::Display for Replaced {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the entry was replaced by another file; it was left in place")
    }
}

impl std::error::Error for Replaced {}

/// The error reported when a name no longer refers to the object custodian created.
pub(crate) fn replaced_error() -> io::Error {
    io::Error::other(Replaced)
}

/// Whether `e` is [`replaced_error`], as opposed to a failure of the check itself (a
/// `stat` failing with `EMFILE` is not a replaced root).
pub(crate) fn is_replaced(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|e| e.is::<Replaced>())
}

/// A mount point found inside a managed directory, left in place; the path is relative
/// to the directory being removed.
#[derive(Debug)]
struct MountPointLeft(String);

impl fmt::Display for MountPointLeft {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a mount point inside a managed directory was left in place: {}",
            self.0
        )
    }
}

impl std::error::Error for MountPointLeft {}

/// The error for a mount point left in place (`ResourceBusy`, like the `EBUSY` that
/// removing it would give). It is permanent until someone unmounts it.
pub(crate) fn mount_point_error(path: String) -> io::Error {
    io::Error::new(io::ErrorKind::ResourceBusy, MountPointLeft(path))
}

/// Whether `e` says a mount point was left in place (retrying will not help until it is
/// unmounted).
pub(crate) fn is_mount_point_error(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|e| e.is::<MountPointLeft>())
}

/// The error for a directory whose `..` is no longer the parent recorded on the way
/// down.
fn moved_error() -> io::Error {
    io::Error::other(
        "the directory tree was moved during removal; stopped before removing anything unverified",
    )
}

/// Removes the non-directory `name` in `dir` if it is still the object `expect`. A name
/// given as a `&CStr` goes to both system calls as it is (no copy, no NUL scan).
pub(crate) fn remove_file_at<N: rustix::path::Arg + Copy>(
    dir: impl AsFd,
    name: N,
    expect: FileId,
) -> io::Result<Outcome> {
    let dir = dir.as_fd();
    let st = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::NOENT) => return Ok(Outcome::AlreadyGone),
        Err(e) => return Err(e.into()),
    };
    if FileType::from_raw_mode(st.st_mode) == FileType::Symlink {
        return unlink_missing_ok(dir, name, AtFlags::empty(), Outcome::SymlinkRemoved);
    }
    if FileId::of_stat(&st) != expect {
        return Err(replaced_error());
    }
    unlink_missing_ok(dir, name, AtFlags::empty(), Outcome::Removed)
}

/// Removes the directory `name` in `dir` and everything below it, if it is still the
/// directory `expect` and on the same mount as `dir`.
pub(crate) fn remove_tree_at(dir: impl AsFd, name: &OsStr, expect: FileId) -> io::Result<Outcome> {
    // A name with a NUL byte names nothing: `EINVAL`, as the system call would say.
    let name = CString::new(name.as_bytes()).map_err(|_| Errno::INVAL)?;
    tree_at(
        &RealFs::default(),
        &RealDir::Borrowed(dir.as_fd()),
        &name,
        expect,
    )
}

/// [`remove_tree_at`] through `fs`.
fn tree_at<F: WalkFs>(fs: &F, dir: &F::Dir, name: &CStr, expect: FileId) -> io::Result<Outcome> {
    let at = match fs.place_at(dir, name) {
        Ok(p) => p,
        Err(Errno::NOENT) => return Ok(Outcome::AlreadyGone),
        Err(e) => return Err(e.into()),
    };
    if at.kind == FileType::Symlink {
        return unlink_gone_ok(fs, dir, name, AtFlags::empty(), Outcome::SymlinkRemoved);
    }
    if at.id != expect {
        return Err(replaced_error());
    }
    let parent = fs.place_of(dir)?;
    let mount_point = || mount_point_error(name.to_string_lossy().into_owned());
    if at.crosses_from(&parent) {
        return Err(mount_point());
    }
    let sub = match fs.open_below(dir, name) {
        Ok(d) => d,
        Err(Errno::NOENT) => return Ok(Outcome::AlreadyGone),
        Err(e) => return Err(e.into()),
    };
    // The name may have been swapped (or mounted on) between the stat and the open:
    // check what we opened.
    let top = fs.place_of(&sub)?;
    if top.id != expect {
        return Err(replaced_error());
    }
    if top.crosses_from(&parent) {
        return Err(mount_point());
    }
    // The walk closes `sub` when it ends, before the `rmdir`.
    Walk::new(fs, sub, top)?.run()?;
    unlink_gone_ok(fs, dir, name, AtFlags::REMOVEDIR, Outcome::Removed)
}

/// Removes everything inside the open directory `dir`, which must be the directory
/// `expect`, without leaving its mount.
pub(crate) fn clear_dir(dir: impl AsFd, expect: FileId) -> io::Result<()> {
    clear(&RealFs::default(), RealDir::Borrowed(dir.as_fd()), expect)
}

/// [`clear_dir`] through `fs`.
fn clear<F: WalkFs>(fs: &F, dir: F::Dir, expect: FileId) -> io::Result<()> {
    let top = fs.place_of(&dir)?;
    if top.id != expect {
        return Err(replaced_error());
    }
    Walk::new(fs, dir, top)?.run()
}

/// Opens a directory relative to `dir` without following a symlink at the last component.
pub(crate) fn open_dir_nofollow(
    dir: impl AsFd,
    name: impl rustix::path::Arg,
) -> Result<OwnedFd, Errno> {
    rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}
