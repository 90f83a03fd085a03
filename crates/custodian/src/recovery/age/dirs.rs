//! How the age sweep reads the tree: entries opened without following a symlink and,
//! where allowed, without touching their access times (so a dry run does not make old
//! directories young), and a directory's names in the order they are judged.

use std::ffi::OsString;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use rustix::fs::{Dir, Mode, OFlags};
use rustix::io::Errno;

/// Opens `name` in `dir` without following a symlink, with `O_NOATIME` where allowed
/// (the owner, or `CAP_FOWNER`).
pub(super) fn open_nofollow(
    dir: BorrowedFd<'_>,
    name: &OsString,
    extra: OFlags,
) -> Result<OwnedFd, Errno> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | extra;
    match rustix::fs::openat(dir, name, flags | OFlags::NOATIME, Mode::empty()) {
        Err(Errno::PERM) => rustix::fs::openat(dir, name, flags, Mode::empty()),
        r => r,
    }
}

/// The names in the open directory `fd`, read through a duplicate of it (same open file
/// description: its `O_NOATIME` holds), sorted so that they are judged in name order.
pub(super) fn names_of(fd: &OwnedFd) -> io::Result<Vec<OsString>> {
    let mut names = Vec::new();
    for e in Dir::new(rustix::io::fcntl_dupfd_cloexec(fd, 0)?)? {
        let n = e?.file_name().to_bytes().to_vec();
        if n != b"." && n != b".." {
            names.push(OsString::from(std::ffi::OsStr::from_bytes(&n)));
        }
    }
    // Popped from the end: reverse order.
    names.sort_unstable_by(|a, b| b.cmp(a));
    Ok(names)
}
