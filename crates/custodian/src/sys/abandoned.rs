//! Finding and removing temp roots that a dead owner left behind (SIGKILL, abort, power
//! loss): the crash-recovery half of the private root.
//!
//! A root is *abandoned* when nobody holds its `flock`: a live supervisor keeps its root
//! locked until it is dropped, and the kernel releases the lock when its owner dies,
//! however it dies. A root is only taken when `ownership.rs` proves it ours and abandoned
//! (name shape, a directory, same mount, this user, mode 0700, older than `min_age` by
//! its ctime, and an exclusive `flock` that succeeds now and is held while it is
//! removed, so two supervisors starting together never race on one root).
//!
//! Removal reuses the dirfd-relative, inode-checked code of `remove.rs`, which never
//! enters a mount point inside the root: such a root is emptied around it, left in place
//! and reported (a warning), never counted as reaped.

use std::ffi::OsString;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rustix::fs::{Dir, FileType, Mode, OFlags};

use super::ownership::{Lock, Shape, prove};
use super::remove::{self, Outcome};

/// Removes every abandoned root named `<prefix>*` in `base`; returns the removed paths.
/// Blocking.
pub(crate) fn reap(base: &Path, prefix: &str, min_age: Duration) -> io::Result<Vec<PathBuf>> {
    let parent = rustix::fs::open(
        base,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut names = Vec::new();
    for entry in Dir::read_from(&parent)? {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if Shape::Root(prefix).matches(name) && entry.file_type() != FileType::Symlink {
            names.push(OsString::from(std::ffi::OsStr::from_bytes(name)));
        }
    }
    let mut reaped = Vec::new();
    for name in names {
        match reap_one(&parent, &name, prefix, min_age) {
            Ok(true) => reaped.push(base.join(&name)),
            Ok(false) => {}
            // The root was taken (locked) but not fully removed: worth a warning.
            Err(e) => {
                tracing::warn!(root = %base.join(&name).display(), error = %e, "abandoned root not removed")
            }
        }
    }
    Ok(reaped)
}

fn reap_one(
    parent: &std::os::fd::OwnedFd,
    name: &OsString,
    prefix: &str,
    min_age: Duration,
) -> io::Result<bool> {
    let young = |st: &rustix::fs::Stat| {
        let changed =
            SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(st.st_ctime).unwrap_or(0));
        SystemTime::now()
            .duration_since(changed)
            .is_ok_and(|age| age < min_age)
    };
    let proven = match prove(parent.as_fd(), name, Shape::Root(prefix), young, Lock::Take) {
        Ok(Ok(p)) => p,
        // Not ours, not abandoned, or gone or not openable meanwhile: not ours to take.
        Ok(Err(_)) | Err(_) => return Ok(false),
    };
    // `proven.fd` holds the lock until it drops, after the removal.
    remove::clear_dir(&proven.fd, proven.id)?;
    Ok(remove::remove_tree_at(parent, name, proven.id)? == Outcome::Removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unlocked_private_root_is_reaped_and_a_locked_one_is_not() {
        let base =
            std::env::temp_dir().join(format!("custodian-abandoned-unit-{}", std::process::id()));
        std::fs::create_dir_all(&base).unwrap();
        let live = crate::sys::root::TempRoot::create(&base, "r-").unwrap();
        let dead = crate::sys::root::TempRoot::create(&base, "r-").unwrap();
        std::fs::write(dead.path().join("left-behind"), b"x").unwrap();
        let dead_path = dead.path().to_path_buf();
        drop(dead); // its lock goes, as when its owner is SIGKILLed
        let stranger = base.join("r-0123456789abcdef0123456789abcdef");
        std::fs::create_dir(&stranger).unwrap(); // mode 0755: not ours to take
        let reaped = reap(&base, "r-", Duration::ZERO).unwrap();
        assert_eq!(reaped, vec![dead_path.clone()]);
        assert!(!dead_path.exists());
        assert!(live.path().exists());
        assert!(stranger.exists());
        live.remove().unwrap();
        std::fs::remove_dir_all(&base).unwrap();
    }
}
