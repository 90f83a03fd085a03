//! The private temp root: one directory per supervisor, created exclusively with mode
//! 0700 under the temp base and held with an exclusive `flock` while the supervisor lives.
//!
//! Every temp file and temp dir custodian hands out lives directly inside it, so other
//! users cannot reach them whatever the umask, and a crash sweep can tell a live root
//! (locked) from an abandoned one.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FlockOperation, Mode, OFlags};
use rustix::io::Errno;

use super::FileId;
use super::remove::{self, Outcome};

const NAME_ATTEMPTS: usize = 16;

/// An exclusively created, locked, private directory.
#[derive(Debug)]
pub(crate) struct TempRoot {
    path: PathBuf,
    parent: OwnedFd,
    name: OsString,
    fd: OwnedFd,
    id: FileId,
}

impl TempRoot {
    /// Creates `<base>/<prefix><random>` with mode 0700 and locks it (the builder uses
    /// [`create_with`](Self::create_with)).
    #[cfg(test)]
    pub(crate) fn create(base: &Path, prefix: &str) -> io::Result<Self> {
        Self::create_with(base, prefix, |_| Ok(()))
    }

    /// [`create`](Self::create), calling `before` with each path it is about to create
    /// (the crash journal records it first, so a crash right after the `mkdir` still
    /// leaves a record of it).
    pub(crate) fn create_with(
        base: &Path,
        prefix: &str,
        mut before: impl FnMut(&Path) -> io::Result<()>,
    ) -> io::Result<Self> {
        // A name fragment, never a path: a separator would create the root elsewhere.
        if prefix.contains(['/', '\0']) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the temp root prefix contains a path separator or NUL",
            ));
        }
        let parent = rustix::fs::open(
            base,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let mut last = None;
        for _ in 0..NAME_ATTEMPTS {
            let name = OsString::from(format!("{prefix}{}", super::create::random_hex(16)?));
            before(&base.join(&name))?;
            match rustix::fs::mkdirat(&parent, name.as_os_str(), Mode::RWXU) {
                Ok(()) => {
                    return Self::adopt(base, &parent, &name).inspect_err(|_| {
                        // Do not leave the directory we just made behind.
                        let _ = rustix::fs::unlinkat(&parent, name.as_os_str(), AtFlags::REMOVEDIR);
                    });
                }
                Err(Errno::EXIST) => last = Some(Errno::EXIST),
                Err(e) => return Err(e.into()),
            }
        }
        Err(last.unwrap_or(Errno::EXIST).into())
    }

    fn adopt(base: &Path, parent: &OwnedFd, name: &OsString) -> io::Result<Self> {
        let fd = remove::open_dir_nofollow(parent, name.as_os_str())?;
        // The umask can only clear bits; set the mode explicitly so it is exactly 0700.
        rustix::fs::fchmod(&fd, Mode::RWXU)?;
        let st = rustix::fs::fstat(&fd)?;
        if st.st_uid != rustix::process::geteuid().as_raw() {
            return Err(io::Error::other(
                "the new temp root is owned by another user",
            ));
        }
        rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive)?;
        Ok(TempRoot {
            path: base.join(name),
            parent: parent.try_clone()?,
            name: name.clone(),
            fd,
            id: FileId::of_stat(&st),
        })
    }

    /// The root's path, as created.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The root's device and inode, as created (recorded in the crash journal).
    pub(crate) fn id(&self) -> FileId {
        self.id
    }

    /// The open, locked directory; names inside the root are resolved relative to it.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Checks that the root's path still names the directory custodian created (it has
    /// not been renamed away or swapped for a symlink).
    pub(crate) fn check(&self) -> io::Result<()> {
        let st = rustix::fs::statat(
            &self.parent,
            self.name.as_os_str(),
            AtFlags::SYMLINK_NOFOLLOW,
        )?;
        if FileId::of_stat(&st) == self.id {
            Ok(())
        } else {
            Err(remove::replaced_error())
        }
    }

    /// Checks that `name` inside the root is the object `id` (used right after creating
    /// through the root's path, to prove the new object landed inside the root).
    pub(crate) fn contains(&self, name: &OsStr, id: FileId) -> io::Result<bool> {
        let st = rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW)?;
        Ok(FileId::of_stat(&st) == id)
    }

    /// Empties the root through its fd, then removes the root itself if its name still
    /// refers to it. Blocking: call from the blocking pool or a non-async context.
    pub(crate) fn remove(&self) -> io::Result<Outcome> {
        remove::clear_dir(&self.fd, self.id)?;
        remove::remove_tree_at(&self.parent, &self.name, self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn root_is_private_locked_and_removable() {
        let base = std::env::temp_dir();
        let root = TempRoot::create(&base, "custodian-unit-").unwrap();
        let md = std::fs::symlink_metadata(root.path()).unwrap();
        assert!(md.is_dir());
        assert_eq!(md.permissions().mode() & 0o777, 0o700);
        // A second lock on the same directory fails while the first is held.
        let other = rustix::fs::open(
            root.path(),
            OFlags::RDONLY | OFlags::DIRECTORY,
            Mode::empty(),
        )
        .unwrap();
        assert!(rustix::fs::flock(&other, FlockOperation::NonBlockingLockExclusive).is_err());
        std::fs::create_dir_all(root.path().join("a/b")).unwrap();
        std::fs::write(root.path().join("a/b/f"), b"x").unwrap();
        root.check().unwrap();
        assert_eq!(root.remove().unwrap(), Outcome::Removed);
        assert!(!root.path().exists());
    }

    #[test]
    fn a_root_swapped_for_a_symlink_is_detected_and_not_followed() {
        let base = std::env::temp_dir();
        let root = TempRoot::create(&base, "custodian-unit-").unwrap();
        let victim = TempRoot::create(&base, "custodian-victim-").unwrap();
        std::fs::write(victim.path().join("precious"), b"keep").unwrap();
        let moved = base.join(format!("{}-moved", root.name.to_string_lossy()));
        std::fs::rename(root.path(), &moved).unwrap();
        std::os::unix::fs::symlink(victim.path(), root.path()).unwrap();
        assert!(root.check().is_err());
        // Removal empties the real root (through its fd) and unlinks the planted link.
        assert_eq!(root.remove().unwrap(), Outcome::SymlinkRemoved);
        assert!(victim.path().join("precious").exists());
        std::fs::remove_dir(&moved).unwrap();
        victim.remove().unwrap();
    }
}
