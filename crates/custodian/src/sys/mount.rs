//! Where a file system object sits: its identity, its type and, where the kernel tells,
//! the mount it belongs to.
//!
//! Removal must never enter another mount. A bind mount of a directory of the same file
//! system shares its `st_dev` with everything around it, so the device alone cannot tell
//! a mount point from a plain directory. `statx` can:
//! - `STATX_ATTR_MOUNT_ROOT` (Linux 5.8) marks the root of a mount, whatever its file
//!   system; it is trusted only when `stx_attributes_mask` says the kernel reports it;
//! - `STATX_MNT_ID` (Linux 5.8) gives the mount id; an object whose mount id differs from
//!   its parent directory's is on another mount;
//! - the device is compared in every case (another file system is always another mount,
//!   and a btrfs subvolume is not ours to enter either).
//!
//! On kernels without them (`statx` itself is Linux 4.11; rustix turns its absence into
//! `ENOSYS`) only the device is compared: a same-file-system bind mount is then not
//! detectable by these calls.

use std::os::fd::BorrowedFd;

use rustix::fs::{AtFlags, FileType, Statx, StatxAttributes, StatxFlags};
use rustix::io::Errno;

use super::FileId;

/// What `statx` is asked for: the type, the inode and the mount id (the device comes
/// with every answer).
const MASK: StatxFlags = StatxFlags::TYPE
    .union(StatxFlags::INO)
    .union(StatxFlags::MNT_ID);

/// Identity, type and mount of one object, as seen by one `statx` (or `stat`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Place {
    /// Device and inode, comparable with [`FileId::of_stat`].
    pub(crate) id: FileId,
    /// The object's type (a symlink is reported as a symlink, never followed).
    pub(crate) kind: FileType,
    /// The mount id, if the kernel reported it.
    mnt_id: Option<u64>,
    /// Whether the object is the root of a mount, if the kernel reported it.
    mount_root: Option<bool>,
}

impl Place {
    fn of_statx(x: &Statx) -> Option<Self> {
        // A file system may leave out even the basic fields; then `stat` answers instead.
        let mask = StatxFlags::from_bits_retain(x.stx_mask);
        if !mask.contains(StatxFlags::TYPE | StatxFlags::INO) {
            return None;
        }
        let attrs_known = x.stx_attributes_mask.contains(StatxAttributes::MOUNT_ROOT);
        Some(Place {
            id: FileId {
                dev: rustix::fs::makedev(x.stx_dev_major, x.stx_dev_minor),
                ino: x.stx_ino,
            },
            kind: FileType::from_raw_mode(x.stx_mode.into()),
            mnt_id: mask.contains(StatxFlags::MNT_ID).then_some(x.stx_mnt_id),
            mount_root: attrs_known.then(|| x.stx_attributes.contains(StatxAttributes::MOUNT_ROOT)),
        })
    }

    fn of_stat(st: &rustix::fs::Stat) -> Self {
        Place {
            id: FileId::of_stat(st),
            kind: FileType::from_raw_mode(st.st_mode),
            mnt_id: None,
            mount_root: None,
        }
    }

    /// A place as a kernel that reports mounts (Linux 5.8+) would see it: for the mock
    /// file system of the removal walk's tests.
    #[cfg(test)]
    pub(crate) fn reported(id: FileId, kind: FileType, mnt_id: u64, mount_root: bool) -> Self {
        Place {
            id,
            kind,
            mnt_id: Some(mnt_id),
            mount_root: Some(mount_root),
        }
    }

    /// Whether this object, found inside the directory `parent`, is on another mount:
    /// a mount root, another mount id, or another device.
    pub(crate) fn crosses_from(&self, parent: &Place) -> bool {
        self.mount_root == Some(true)
            || matches!((self.mnt_id, parent.mnt_id), (Some(a), Some(b)) if a != b)
            || self.id.dev != parent.id.dev
    }

    /// Whether `other` is the same object on the same mount (used to verify a directory
    /// reopened through `..`).
    pub(crate) fn same_as(&self, other: &Place) -> bool {
        self.id == other.id
            && match (self.mnt_id, other.mnt_id) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

/// Where `name` in `dir` sits, without following a symlink or triggering an automount.
pub(crate) fn place_at<P: rustix::path::Arg + Copy>(
    dir: BorrowedFd<'_>,
    name: P,
) -> Result<Place, Errno> {
    let flags = AtFlags::SYMLINK_NOFOLLOW | AtFlags::NO_AUTOMOUNT;
    match rustix::fs::statx(dir, name, flags, MASK) {
        Ok(x) => match Place::of_statx(&x) {
            Some(p) => Ok(p),
            None => rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
                .map(|st| Place::of_stat(&st)),
        },
        Err(Errno::NOSYS) => {
            rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).map(|st| Place::of_stat(&st))
        }
        Err(e) => Err(e),
    }
}

/// Where the open file `fd` sits.
pub(crate) fn place_of(fd: BorrowedFd<'_>) -> Result<Place, Errno> {
    match rustix::fs::statx(fd, c"", AtFlags::EMPTY_PATH, MASK) {
        Ok(x) => match Place::of_statx(&x) {
            Some(p) => Ok(p),
            None => rustix::fs::fstat(fd).map(|st| Place::of_stat(&st)),
        },
        Err(Errno::NOSYS) => rustix::fs::fstat(fd).map(|st| Place::of_stat(&st)),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn statx_identity_agrees_with_stat() {
        let dir = crate::sys::remove::open_dir_nofollow(rustix::fs::CWD, c"/tmp").unwrap();
        let p = place_of(dir.as_fd()).unwrap();
        assert_eq!(p.id, FileId::of_fd(&dir).unwrap());
        assert_eq!(p.kind, FileType::Directory);
        let root = crate::sys::remove::open_dir_nofollow(rustix::fs::CWD, c"/").unwrap();
        let at = place_at(root.as_fd(), c"tmp").unwrap();
        assert_eq!(at, p);
        // Whatever the kernel, a directory is never on another mount than itself.
        assert!(!p.crosses_from(&p) || p.mount_root == Some(true));
        assert!(p.same_as(&p));
        // From Linux 5.8 the mount is known: the statx path, not the st_dev fallback.
        let uname = rustix::system::uname();
        let release = uname.release().to_string_lossy();
        let mut v = release
            .split(|c: char| !c.is_ascii_digit())
            .map(|n| n.parse::<u32>());
        if let (Some(Ok(major)), Some(Ok(minor))) = (v.next(), v.next())
            && (major, minor) >= (5, 8)
        {
            assert!(p.mnt_id.is_some() && p.mount_root.is_some(), "{p:?}");
        }
    }

    #[test]
    fn a_mount_root_or_another_mount_id_or_device_crosses() {
        let base = Place {
            id: FileId { dev: 1, ino: 2 },
            kind: FileType::Directory,
            mnt_id: Some(10),
            mount_root: Some(false),
        };
        assert!(!base.crosses_from(&base));
        let root = Place {
            mount_root: Some(true),
            ..base
        };
        assert!(root.crosses_from(&base));
        let other_mnt = Place {
            mnt_id: Some(11),
            ..base
        };
        assert!(other_mnt.crosses_from(&base));
        assert!(!other_mnt.same_as(&base));
        let other_dev = Place {
            id: FileId { dev: 3, ino: 2 },
            mnt_id: None,
            mount_root: None,
            ..base
        };
        assert!(other_dev.crosses_from(&base));
        // Without mount information (old kernels) only the device decides.
        let old = Place {
            mnt_id: None,
            mount_root: None,
            ..base
        };
        assert!(!old.crosses_from(&base));
        assert!(old.same_as(&base));
    }
}
