//! What the removal walk needs from the file system, behind one small trait, so that the
//! walk's order and its answers to `EMFILE`, mounts, moved and replaced entries are
//! unit-tested against an in-memory mock (`remove/mock_tests.rs`).
//!
//! The real implementation, [`RealFs`], is zero-sized and makes exactly the `rustix`
//! calls the walk made before the trait: `openat` with `O_NOFOLLOW | O_DIRECTORY`,
//! `getdents`, `statx` (or `stat`), `unlinkat`.

use std::ffi::{CStr, CString};
use std::marker::PhantomData;
use std::os::fd::{AsFd, BorrowedFd};

use rustix::fs::{AtFlags, Dir, FileType};
use rustix::io::Errno;

use super::open_dir_nofollow;
use crate::sys::mount::{Place, place_at, place_of};

/// The file-system calls of one removal walk, each relative to a directory the walk holds.
pub(crate) trait WalkFs {
    /// A directory held by the walk (an open fd for the real one).
    type Dir;

    /// The entries of `dir`, without `.` and `..`, with the type `readdir` gave (possibly
    /// [`FileType::Unknown`]).
    fn list(&self, dir: &mut Self::Dir) -> Result<Vec<(CString, FileType)>, Errno>;

    /// Opens the directory `name` in `dir`, never following a symlink at `name`
    /// (`ELOOP`/`ENOTDIR` instead).
    fn open_below(&self, dir: &Self::Dir, name: &CStr) -> Result<Self::Dir, Errno>;

    /// Opens `..` of `dir`: whatever directory holds it now.
    fn open_parent(&self, dir: &Self::Dir) -> Result<Self::Dir, Errno>;

    /// Identity, type and mount of `dir` itself.
    fn place_of(&self, dir: &Self::Dir) -> Result<Place, Errno>;

    /// Identity, type and mount of `dir`'s `..` (whatever holds it now), without opening it.
    fn parent_place(&self, dir: &Self::Dir) -> Result<Place, Errno>;

    /// Identity, type and mount of `name` in `dir`, without following a symlink or
    /// triggering an automount.
    fn place_at(&self, dir: &Self::Dir, name: &CStr) -> Result<Place, Errno>;

    /// `unlinkat(dir, name, flags)`; `AtFlags::REMOVEDIR` removes an empty directory.
    fn unlink(&self, dir: &Self::Dir, name: &CStr, flags: AtFlags) -> Result<(), Errno>;
}

/// The kernel, through `rustix`. `'a` is the lifetime of the caller's directory fd.
#[derive(Debug, Default)]
pub(crate) struct RealFs<'a>(PhantomData<BorrowedFd<'a>>);

// Passed by reference through every walk: it must cost nothing.
const _: () = assert!(size_of::<RealFs<'static>>() == 0);

/// A directory held by a real walk.
#[derive(Debug)]
pub(crate) enum RealDir<'a> {
    /// The caller's directory: never closed by the walk.
    Borrowed(BorrowedFd<'a>),
    /// A directory the walk opened (the stream only serves to list it).
    Open(Dir),
}

impl RealDir<'_> {
    fn fd(&self) -> Result<BorrowedFd<'_>, Errno> {
        match self {
            RealDir::Borrowed(fd) => Ok(*fd),
            RealDir::Open(dir) => dir.fd(),
        }
    }
}

impl<'a> WalkFs for RealFs<'a> {
    type Dir = RealDir<'a>;

    fn list(&self, dir: &mut RealDir<'a>) -> Result<Vec<(CString, FileType)>, Errno> {
        match dir {
            // The caller's fd keeps its own offset: read through a new description.
            RealDir::Borrowed(fd) => list(&mut Dir::read_from(fd.as_fd())?),
            RealDir::Open(dir) => list(dir),
        }
    }

    fn open_below(&self, dir: &RealDir<'a>, name: &CStr) -> Result<RealDir<'a>, Errno> {
        Dir::new(open_dir_nofollow(dir.fd()?, name)?).map(RealDir::Open)
    }

    fn open_parent(&self, dir: &RealDir<'a>) -> Result<RealDir<'a>, Errno> {
        self.open_below(dir, c"..")
    }

    fn place_of(&self, dir: &RealDir<'a>) -> Result<Place, Errno> {
        place_of(dir.fd()?)
    }

    fn parent_place(&self, dir: &RealDir<'a>) -> Result<Place, Errno> {
        place_at(dir.fd()?, c"..")
    }

    fn place_at(&self, dir: &RealDir<'a>, name: &CStr) -> Result<Place, Errno> {
        place_at(dir.fd()?, name)
    }

    fn unlink(&self, dir: &RealDir<'a>, name: &CStr, flags: AtFlags) -> Result<(), Errno> {
        rustix::fs::unlinkat(dir.fd()?, name, flags)
    }
}

/// The entries of a directory, without `.` and `..`. Collected first so that removal
/// does not mutate the directory while it is being read.
fn list(dir: &mut Dir) -> Result<Vec<(CString, FileType)>, Errno> {
    let mut names = Vec::new();
    while let Some(entry) = dir.read() {
        let entry = entry?;
        let name = entry.file_name();
        if name != c"." && name != c".." {
            names.push((name.to_owned(), entry.file_type()));
        }
    }
    Ok(names)
}
