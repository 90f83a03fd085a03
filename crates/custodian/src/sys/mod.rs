//! OS primitives with no knowledge of the rest of the crate.
//!
//! Everything here works on file descriptors, never on paths that another process could
//! swap under us: removal is relative to a directory fd and never follows a symlink, the
//! private temp root is created exclusively and held with a `flock`.

pub(crate) mod cgroup;
pub(crate) mod create;
pub(crate) mod escalate;
pub(crate) mod journal;
pub(crate) mod live;
pub(crate) mod marker;
pub(crate) mod mount;
pub(crate) mod orphans;
pub(crate) mod ownership;
pub(crate) mod pipes;
pub(crate) mod process;
pub(crate) mod procfs;
pub(crate) mod remove;
pub(crate) mod root;
pub(crate) mod subreaper;
pub(crate) mod watch;

use std::os::fd::AsFd;

/// Identity of a file system object: device and inode number.
///
/// Recorded when custodian creates something so that cleanup can check that the name
/// still refers to the same object before removing it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct FileId {
    pub(crate) dev: u64,
    pub(crate) ino: u64,
}

impl FileId {
    pub(crate) fn of_stat(st: &rustix::fs::Stat) -> Self {
        // `st_dev`/`st_ino` are unsigned on every Linux target; the casts only widen.
        #[allow(clippy::unnecessary_cast)]
        FileId {
            dev: st.st_dev as u64,
            ino: st.st_ino as u64,
        }
    }

    /// Identity of an open file.
    pub(crate) fn of_fd(fd: impl AsFd) -> std::io::Result<Self> {
        Ok(Self::of_stat(&rustix::fs::fstat(fd)?))
    }
}
