//! Directory-fd-relative removal that never follows a symlink.
//!
//! Invariants:
//! - every name is resolved relative to a directory fd that custodian holds, so a parent
//!   directory renamed or swapped for a symlink cannot redirect a removal elsewhere;
//! - a symlink is unlinked as a link (`unlinkat` never follows the last component), its
//!   target is never touched;
//! - before a recorded entry is removed its device/inode is compared with the identity
//!   recorded at creation; an entry replaced by another object is left in place and
//!   reported;
//! - recursive removal never crosses into another file system (a mount point inside a temp
//!   dir is reported, not emptied).

use std::ffi::{CStr, OsStr};
use std::io;
use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags};
use rustix::io::Errno;

use super::FileId;

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

/// The error reported when a name no longer refers to the object custodian created.
pub(crate) fn replaced_error() -> io::Error {
    io::Error::other("the entry was replaced by another file; it was left in place")
}

/// Removes the non-directory `name` in `dir` if it is still the object `expect`.
pub(crate) fn remove_file_at(dir: impl AsFd, name: &OsStr, expect: FileId) -> io::Result<Outcome> {
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
/// directory `expect`.
pub(crate) fn remove_tree_at(dir: impl AsFd, name: &OsStr, expect: FileId) -> io::Result<Outcome> {
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
    let sub = match open_dir_nofollow(dir, name) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(Outcome::AlreadyGone),
        Err(e) => return Err(e.into()),
    };
    // The name may have been swapped between the stat and the open: check what we opened.
    if FileId::of_fd(&sub)? != expect {
        return Err(replaced_error());
    }
    clear_dir(&sub, expect.dev)?;
    drop(sub);
    unlink_missing_ok(dir, name, AtFlags::REMOVEDIR, Outcome::Removed)
}

/// Removes everything inside the open directory `dir`, staying on device `dev`.
pub(crate) fn clear_dir(dir: &OwnedFd, dev: u64) -> io::Result<()> {
    let mut first_error = None;
    for name in list(dir)? {
        if let Err(e) = remove_any_at(dir, &name, dev) {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Removes whatever `name` is inside a directory custodian owns (no identity to check).
fn remove_any_at(dir: &OwnedFd, name: &CStr, dev: u64) -> io::Result<()> {
    match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => return Ok(()),
        // A directory: empty it first. Anything else is a real failure.
        Err(Errno::ISDIR) | Err(Errno::PERM) => {}
        Err(e) => return Err(e.into()),
    }
    let sub = match open_dir_nofollow(dir, name) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(()),
        // Swapped for a symlink or a file since the unlink: unlink that instead.
        Err(Errno::NOTDIR) | Err(Errno::LOOP) => {
            return match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
                Ok(()) | Err(Errno::NOENT) => Ok(()),
                Err(e) => Err(e.into()),
            };
        }
        Err(e) => return Err(e.into()),
    };
    if FileId::of_fd(&sub)?.dev != dev {
        return Err(io::Error::other(
            "a mount point inside a managed directory was not emptied",
        ));
    }
    clear_dir(&sub, dev)?;
    drop(sub);
    match rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
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

/// The names in a directory, without `.` and `..`. Collected first so that removal does
/// not mutate the directory while it is being read.
fn list(dir: &OwnedFd) -> io::Result<Vec<std::ffi::CString>> {
    let mut names = Vec::new();
    for entry in Dir::read_from(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if name != c"." && name != c".." {
            names.push(name.to_owned());
        }
    }
    Ok(names)
}

fn unlink_missing_ok(
    dir: impl AsFd,
    name: &OsStr,
    flags: AtFlags,
    ok: Outcome,
) -> io::Result<Outcome> {
    match rustix::fs::unlinkat(dir, name, flags) {
        Ok(()) => Ok(ok),
        Err(Errno::NOENT) => Ok(Outcome::AlreadyGone),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn scratch() -> (std::path::PathBuf, OwnedFd) {
        let path = std::env::temp_dir().join(format!(
            "custodian-remove-test-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir(&path).unwrap();
        let fd = open_dir_nofollow(rustix::fs::CWD, &path).unwrap();
        (path, fd)
    }

    fn id_of(path: &std::path::Path) -> FileId {
        use std::os::unix::fs::MetadataExt;
        let md = std::fs::symlink_metadata(path).unwrap();
        FileId {
            dev: md.dev(),
            ino: md.ino(),
        }
    }

    #[test]
    fn removes_a_tree_without_following_symlinks() {
        let (root, fd) = scratch();
        let (outside, _ofd) = scratch();
        std::fs::write(outside.join("precious"), b"keep me").unwrap();
        let tree = root.join("tree");
        std::fs::create_dir_all(tree.join("a/b/c")).unwrap();
        std::fs::write(tree.join("a/b/c/file"), b"x").unwrap();
        symlink(&outside, tree.join("a/link-to-outside")).unwrap();
        symlink(outside.join("precious"), tree.join("a/b/link-to-file")).unwrap();
        let id = id_of(&tree);
        assert_eq!(
            remove_tree_at(&fd, OsStr::new("tree"), id).unwrap(),
            Outcome::Removed
        );
        assert!(!tree.exists());
        assert_eq!(std::fs::read(outside.join("precious")).unwrap(), b"keep me");
        std::fs::remove_dir_all(&root).unwrap();
        std::fs::remove_dir_all(&outside).unwrap();
    }

    #[test]
    fn a_symlink_planted_at_the_name_is_unlinked_not_followed() {
        let (root, fd) = scratch();
        let (outside, _ofd) = scratch();
        std::fs::write(outside.join("precious"), b"keep").unwrap();
        let id = id_of(&outside);
        symlink(&outside, root.join("d")).unwrap();
        assert_eq!(
            remove_tree_at(&fd, OsStr::new("d"), id).unwrap(),
            Outcome::SymlinkRemoved
        );
        assert!(outside.join("precious").exists());
        symlink(outside.join("precious"), root.join("f")).unwrap();
        assert_eq!(
            remove_file_at(&fd, OsStr::new("f"), id).unwrap(),
            Outcome::SymlinkRemoved
        );
        assert!(outside.join("precious").exists());
        std::fs::remove_dir_all(&root).unwrap();
        std::fs::remove_dir_all(&outside).unwrap();
    }

    #[test]
    fn a_replaced_entry_is_left_in_place() {
        let (root, fd) = scratch();
        std::fs::write(root.join("f"), b"1").unwrap();
        let id = id_of(&root.join("f"));
        std::fs::remove_file(root.join("f")).unwrap();
        std::fs::write(root.join("g"), b"keep inode busy").unwrap();
        std::fs::write(root.join("f"), b"2").unwrap();
        if id_of(&root.join("f")) != id {
            assert!(remove_file_at(&fd, OsStr::new("f"), id).is_err());
            assert!(root.join("f").exists());
        }
        assert_eq!(
            remove_file_at(&fd, OsStr::new("missing"), id).unwrap(),
            Outcome::AlreadyGone
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
}
