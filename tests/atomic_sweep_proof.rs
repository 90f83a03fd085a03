//! `AtomicFile::sweep` removes only what it can prove an atomic writer of this user made
//! and abandoned: the same proof the recovery uses (`sys::ownership`). Until it moved onto
//! that proof it took any old, unlocked regular file whose name began with the prefix,
//! whoever owned it, and followed a symlinked directory.

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::time::Duration;

use custodian_suite::{entries, scratch_dir};
use tokio_custodian::{ATOMIC_TEMP_PREFIX, AtomicFile};

fn write(dir: &Path, name: &str) {
    std::fs::write(dir.join(name), b"x").unwrap();
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

#[test]
fn only_abandoned_temps_of_the_exact_shape_and_this_user_are_removed() {
    let dir = scratch_dir("atomic-sweep-proof");
    let ours = format!("{ATOMIC_TEMP_PREFIX}0123456789abcdef");
    let look_alike = format!("{ATOMIC_TEMP_PREFIX}notes");
    let too_long = format!("{ATOMIC_TEMP_PREFIX}0123456789abcdef0");
    let theirs = format!("{ATOMIC_TEMP_PREFIX}fedcba9876543210");
    for name in [&ours, &look_alike, &too_long, &theirs] {
        write(&dir, name);
    }
    if is_root() {
        // Another user's file of the exact shape: not ours to judge, even for root.
        std::os::unix::fs::chown(dir.join(&theirs), Some(65534), Some(65534)).unwrap();
    }
    let removed = AtomicFile::sweep(&dir, Duration::ZERO).unwrap();
    let left = entries(&dir);
    assert!(!left.contains(&ours), "the abandoned temp stayed: {left:?}");
    assert!(left.contains(&look_alike), "a look-alike name was removed");
    assert!(left.contains(&too_long), "a longer name was removed");
    if is_root() {
        assert!(left.contains(&theirs), "another user's file was removed");
        assert_eq!(removed, 1);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_locked_or_young_temp_stays() {
    let dir = scratch_dir("atomic-sweep-live");
    let locked = format!("{ATOMIC_TEMP_PREFIX}00000000000000aa");
    let young = format!("{ATOMIC_TEMP_PREFIX}00000000000000bb");
    write(&dir, &locked);
    write(&dir, &young);
    let held = std::fs::File::open(dir.join(&locked)).unwrap();
    rustix::fs::flock(&held, rustix::fs::FlockOperation::LockExclusive).unwrap();
    // `young` was written just now: an hour's minimum age keeps it, and `locked` too.
    assert_eq!(
        AtomicFile::sweep(&dir, Duration::from_secs(3600)).unwrap(),
        0
    );
    // With no minimum age only the held lock keeps `locked`.
    assert_eq!(AtomicFile::sweep(&dir, Duration::ZERO).unwrap(), 1);
    assert_eq!(entries(&dir), vec![locked.clone()]);
    drop(held);
    assert_eq!(
        AtomicFile::sweep(&dir, Duration::MAX).unwrap(),
        0,
        "MAX saturates"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_symlinked_directory_is_not_followed() {
    let dir = scratch_dir("atomic-sweep-link");
    let real = dir.join("real");
    std::fs::create_dir(&real).unwrap();
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o700)).unwrap();
    let temp = format!("{ATOMIC_TEMP_PREFIX}0123456789abcdef");
    write(&real, &temp);
    let link = dir.join("link");
    symlink(&real, &link).unwrap();
    let err = AtomicFile::sweep(&link, Duration::ZERO).unwrap_err();
    assert_eq!(err.operation(), tokio_custodian::Operation::Cleanup);
    assert!(err.to_string().contains("link"), "{err}");
    assert_eq!(entries(&real), vec![temp]);
    std::fs::remove_dir_all(&dir).unwrap();
}
