//! Finding and removing temp roots that a dead owner left behind (SIGKILL, abort, power
//! loss): the crash-recovery half of the private root.
//!
//! A root is *abandoned* when nobody holds its `flock`: a live supervisor keeps its root
//! locked until it is dropped, and the kernel releases the lock when its owner dies,
//! however it dies. A root is only taken if all of these hold, checked on an fd opened
//! without following symlinks:
//! - its name is the supervisor's prefix followed by exactly the 32 lower-case hex digits
//!   `root.rs` generates, and it is a directory (not a symlink);
//! - it is on the same mount as the temp base: a directory mounted over a root's name
//!   (however private it looks) is someone else's;
//! - it belongs to this effective uid and its mode is exactly 0700;
//! - it is older than `min_age` (a root a concurrent start has made but not locked yet
//!   is young);
//! - an exclusive `flock` on it succeeds *now*, and is held while it is removed, so two
//!   supervisors starting together never race on one root.
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

use rustix::fs::{Dir, FileType, FlockOperation, Mode, OFlags};

use super::FileId;
use super::mount::place_of;
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
        if is_root_name(name, prefix) && entry.file_type() != FileType::Symlink {
            names.push(OsString::from(std::ffi::OsStr::from_bytes(name)));
        }
    }
    let mut reaped = Vec::new();
    for name in names {
        match reap_one(&parent, &name, min_age) {
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

/// `<prefix><32 lower-case hex digits>`, the shape of every root `root.rs` creates.
fn is_root_name(name: &[u8], prefix: &str) -> bool {
    name.strip_prefix(prefix.as_bytes()).is_some_and(|rest| {
        rest.len() == 32
            && rest
                .iter()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
    })
}

fn reap_one(parent: &std::os::fd::OwnedFd, name: &OsString, min_age: Duration) -> io::Result<bool> {
    let Ok(fd) = remove::open_dir_nofollow(parent, name.as_os_str()) else {
        return Ok(false);
    };
    if place_of(fd.as_fd())?.crosses_from(&place_of(parent.as_fd())?) {
        return Ok(false);
    }
    let st = rustix::fs::fstat(&fd)?;
    let mode = st.st_mode & 0o7777;
    if st.st_uid != rustix::process::geteuid().as_raw() || mode != 0o700 {
        return Ok(false);
    }
    let changed =
        SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(st.st_ctime).unwrap_or(0));
    if SystemTime::now()
        .duration_since(changed)
        .is_ok_and(|age| age < min_age)
    {
        return Ok(false);
    }
    // Held until `fd` drops, after the removal: a live owner keeps it locked.
    if rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive).is_err() {
        return Ok(false);
    }
    let id = FileId::of_stat(&st);
    remove::clear_dir(&fd, id)?;
    Ok(remove::remove_tree_at(parent, name, id)? == Outcome::Removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_names_of_the_generated_shape_are_candidates() {
        let hex = "0123456789abcdef0123456789abcdef";
        assert!(is_root_name(
            format!("custodian-{hex}").as_bytes(),
            "custodian-"
        ));
        assert!(!is_root_name(b"custodian-notes", "custodian-"));
        assert!(!is_root_name(
            format!("custodian-{hex}0").as_bytes(),
            "custodian-"
        ));
        assert!(!is_root_name(
            format!("custodian-{}", hex.to_uppercase()).as_bytes(),
            "custodian-"
        ));
        assert!(!is_root_name(
            format!("other-{hex}").as_bytes(),
            "custodian-"
        ));
    }

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
