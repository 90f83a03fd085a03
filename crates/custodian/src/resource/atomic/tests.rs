//! The named-temp-file path (file systems without `O_TMPFILE`) and the sweep, driven
//! through the system-call layer directly.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use rustix::fs::FlockOperation;

use super::os::{Plan, commit, open_temp_with, sweep};
use crate::resource::ATOMIC_TEMP_PREFIX;

fn scratch(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("custodian-unit-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir(&d).unwrap();
    d
}

fn plan(target: &OsStr, replace: bool) -> Plan<'_> {
    Plan {
        target,
        sync_file: true,
        sync_dir: true,
        replace,
    }
}

#[test]
fn a_named_temp_is_0600_locked_and_renamed_or_refused() {
    let dir = scratch("named");
    let target = dir.join("t");
    std::fs::write(&target, b"old").unwrap();
    let opened = open_temp_with(&target, false).unwrap();
    let (name, _) = opened.named.clone().expect("a named temp file");
    assert!(name.to_str().unwrap().starts_with(ATOMIC_TEMP_PREFIX));
    let meta = std::fs::metadata(dir.join(&name)).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
    // Its writer holds its lock: a sweep, however old it thinks it is, leaves it.
    assert_eq!(sweep(&dir, Duration::ZERO).unwrap(), 0);
    assert!(dir.join(&name).exists());
    let file = std::fs::File::from(opened.file);
    commit(
        &opened.dir,
        file,
        Some(&name),
        Some(b"new"),
        plan(OsStr::new("t"), true),
    )
    .unwrap();
    assert_eq!(std::fs::read(&target).unwrap(), b"new");
    assert!(!dir.join(&name).exists(), "renamed, not copied");
    // Create-only onto an existing target: refused, the target kept, the temp name left
    // for the guard's release to remove.
    let opened = open_temp_with(&target, false).unwrap();
    let (name, _) = opened.named.clone().unwrap();
    let file = std::fs::File::from(opened.file);
    let err = commit(
        &opened.dir,
        file,
        Some(&name),
        Some(b"x"),
        plan(OsStr::new("t"), false),
    )
    .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
    assert_eq!(std::fs::read(&target).unwrap(), b"new");
    // Its writer is gone (the fd closed): now the sweep takes it, and nothing else.
    std::os::unix::fs::symlink("/etc/passwd", dir.join(format!("{ATOMIC_TEMP_PREFIX}link")))
        .unwrap();
    std::fs::write(dir.join("unrelated"), b"").unwrap();
    assert_eq!(
        sweep(&dir, Duration::from_secs(3600)).unwrap(),
        0,
        "too young"
    );
    assert_eq!(sweep(&dir, Duration::ZERO).unwrap(), 1);
    let mut left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(
        left,
        [
            format!("{ATOMIC_TEMP_PREFIX}link"),
            "t".into(),
            "unrelated".into()
        ]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_unnamed_temp_holds_its_lock_through_the_link_window() {
    let dir = scratch("unnamed");
    let target = dir.join("t");
    let opened = open_temp_with(&target, true).unwrap();
    if opened.named.is_some() {
        return; // this file system has no `O_TMPFILE`
    }
    // Another open file description cannot take the lock the writer holds.
    let other = rustix::fs::open(
        "/proc/self/fd/".to_owned() + &std::os::fd::AsRawFd::as_raw_fd(&opened.file).to_string(),
        rustix::fs::OFlags::RDONLY,
        rustix::fs::Mode::empty(),
    )
    .unwrap();
    assert!(rustix::fs::flock(&other, FlockOperation::NonBlockingLockExclusive).is_err());
    let file = std::fs::File::from(opened.file);
    commit(
        &opened.dir,
        file,
        None,
        Some(b"n"),
        plan(OsStr::new("t"), true),
    )
    .unwrap();
    assert_eq!(std::fs::read(&target).unwrap(), b"n");
    std::fs::remove_dir_all(&dir).unwrap();
}
