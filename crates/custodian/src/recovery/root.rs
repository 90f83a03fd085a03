//! Removing a dead owner's temp root from its journal record, proving first that the
//! recorded path still names the directory the owner created.
//!
//! Checked, in order, before anything is removed:
//! - the path is absolute and has no empty, `.` or `..` component;
//! - its last component has the shape of a root name (`<prefix><32 lower-case hex>`);
//! - every parent component is opened from `/` with `O_NOFOLLOW|O_DIRECTORY` (a symlinked
//!   parent is refused, not followed), and so is the root itself;
//! - the root's device and inode are the recorded ones (a sibling sharing the prefix, a
//!   directory recreated at the name, a path outside any temp base all fail here);
//! - it belongs to this user with mode exactly 0700, is on its parent's mount, and its
//!   `flock` can be taken now (no live owner holds it).
//!
//! The removal is then `sys/remove.rs`'s: relative to the root's fd, never following a
//! symlink, never entering a mount, inode-checked at every level.

use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{FlockOperation, Mode, OFlags};
use rustix::io::Errno;

use crate::journal::SkipReason;
use crate::sys::FileId;
use crate::sys::mount::place_of;
use crate::sys::remove::{self, Outcome};

fn unsafe_path(detail: impl Into<String>) -> SkipReason {
    SkipReason::UnsafePath {
        detail: detail.into(),
    }
}

fn failed(e: impl std::fmt::Display) -> SkipReason {
    SkipReason::Failed {
        detail: e.to_string(),
    }
}

/// Removes the recorded root. `Ok(true)`: removed; `Ok(false)`: nothing was there.
/// `id` is `None` when only the intent was recorded (the owner died between its record
/// and the `mkdir`'s): the name's 128 random bits are then the proof.
pub(super) fn remove(path: &Path, id: Option<FileId>) -> Result<bool, SkipReason> {
    let bytes = path.as_os_str().as_bytes();
    let Some(rel) = bytes.strip_prefix(b"/") else {
        return Err(unsafe_path("not an absolute path"));
    };
    let parts: Vec<&[u8]> = rel.split(|&b| b == b'/').collect();
    if parts
        .iter()
        .any(|p| p.is_empty() || *p == b"." || *p == b"..")
    {
        return Err(unsafe_path("an empty, `.` or `..` component"));
    }
    let Some((name, parents)) = parts.split_last() else {
        return Err(unsafe_path("no file name"));
    };
    if !is_root_name(name) {
        return Err(unsafe_path("the name is not a temp root's"));
    }
    let mut dir: OwnedFd = rustix::fs::open(
        "/",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(failed)?;
    for part in parents {
        dir = match remove::open_dir_nofollow(&dir, OsStr::from_bytes(part)) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(false),
            Err(Errno::LOOP | Errno::NOTDIR) => {
                return Err(unsafe_path(
                    "a parent component is a symlink or not a directory",
                ));
            }
            Err(e) => return Err(failed(e)),
        };
    }
    let name = OsStr::from_bytes(name);
    let fd = match remove::open_dir_nofollow(&dir, name) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(false),
        Err(Errno::LOOP | Errno::NOTDIR) => {
            return Err(unsafe_path(
                "the root's name is a symlink or not a directory",
            ));
        }
        Err(e) => return Err(failed(e)),
    };
    let st = rustix::fs::fstat(&fd).map_err(failed)?;
    let found = FileId::of_stat(&st);
    let id = id.unwrap_or(found);
    if found != id {
        return Err(unsafe_path(
            "another directory than the recorded one is at this path",
        ));
    }
    if st.st_uid != rustix::process::geteuid().as_raw() || st.st_mode & 0o7777 != 0o700 {
        return Err(unsafe_path("not this user's, or not mode 0700"));
    }
    let (inner, outer) = (
        place_of(fd.as_fd()).map_err(failed)?,
        place_of(dir.as_fd()).map_err(failed)?,
    );
    if inner.crosses_from(&outer) {
        return Err(unsafe_path("a mount point"));
    }
    // Held until `fd` drops, after the removal.
    if rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive).is_err() {
        return Err(SkipReason::Locked);
    }
    remove::clear_dir(&fd, id).map_err(failed)?;
    match remove::remove_tree_at(&dir, name, id).map_err(failed)? {
        Outcome::Removed => Ok(true),
        Outcome::AlreadyGone => Ok(false),
        Outcome::SymlinkRemoved => Err(unsafe_path("a symlink replaced the root during removal")),
    }
}

/// `<prefix><32 lower-case hex digits>` with a non-empty prefix, as `sys/root.rs` names.
fn is_root_name(name: &[u8]) -> bool {
    name.len() > 32
        && name[name.len() - 32..]
            .iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
}
