//! The age sweep (`tokio_custodian::clean_older_than`, issue 10): old, new, locked, symlinked
//! and mounted entries of a base directory, each handled as specified, in a dry run and
//! for real. Runs isolated in a private mount namespace (it mounts a tmpfs in the base).

use std::os::unix::fs::symlink;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use custodian_suite::{is_isolated, run_isolated, scratch_dir};
use tokio_custodian::AgeKeptReason;

const ISOLATED: &str = "CUSTODIAN_AGE_SWEEP_ISOLATED";

#[test]
fn old_new_locked_symlinked_and_mounted_entries() {
    run_isolated("age_sweep_isolated", ISOLATED, true);
}

#[test]
#[ignore = "run isolated by old_new_locked_symlinked_and_mounted_entries"]
fn age_sweep_isolated() {
    if !is_isolated(ISOLATED, "age_sweep_isolated") {
        return;
    }
    let scratch = scratch_dir("age-sweep");
    let base = scratch.join("base");
    std::fs::create_dir(&base).unwrap();
    let canary = scratch.join("canary");
    std::fs::write(&canary, b"keep").unwrap();
    std::fs::write(base.join("old-file"), b"x").unwrap();
    std::fs::create_dir_all(base.join("old-dir/nested")).unwrap();
    std::fs::write(base.join("old-dir/nested/file"), b"x").unwrap();
    symlink(&canary, base.join("old-link")).unwrap();
    std::fs::write(base.join("old-locked"), b"x").unwrap();
    let held = std::fs::File::open(base.join("old-locked")).unwrap();
    rustix::fs::flock(&held, rustix::fs::FlockOperation::LockExclusive).unwrap();
    let mnt = base.join("old-mount");
    std::fs::create_dir(&mnt).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "tmpfs"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(mounted.success(), "mount a tmpfs");
    std::fs::write(mnt.join("on-tmpfs"), b"keep").unwrap();
    // Setup, not an assertion: the entries above must be older than the age.
    std::thread::sleep(Duration::from_millis(1100));
    std::fs::write(base.join("new-file"), b"x").unwrap();

    let removed: Vec<PathBuf> = ["old-dir", "old-file", "old-link"]
        .iter()
        .map(|n| base.join(n))
        .collect();
    let kept = vec![
        (base.join("new-file"), AgeKeptReason::Young),
        (base.join("old-locked"), AgeKeptReason::Locked),
        (mnt.clone(), AgeKeptReason::MountPoint),
    ];
    for dry_run in [true, false] {
        let report =
            tokio_custodian::clean_older_than(&base, Duration::from_secs(1), dry_run).unwrap();
        assert_eq!(report.removed, removed, "dry run {dry_run}: {report:?}");
        let mut got: Vec<_> = report
            .kept
            .iter()
            .map(|k| (k.path.clone(), k.reason.clone()))
            .collect();
        got.sort_by(|a, b| a.0.cmp(&b.0));
        let mut want = kept.clone();
        want.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(got, want, "dry run {dry_run}");
        assert_eq!(
            removed.iter().all(|p| p.symlink_metadata().is_ok()),
            dry_run,
            "dry run {dry_run}"
        );
        println!("{}", serde_json::to_string(&report).unwrap());
    }
    assert_eq!(
        std::fs::read(&canary).unwrap(),
        b"keep",
        "the link's target"
    );
    assert_eq!(std::fs::read(mnt.join("on-tmpfs")).unwrap(), b"keep");
    assert!(base.join("old-locked").exists() && base.join("new-file").exists());
    drop(held);
    let _ = Command::new("umount").arg(&mnt).status();
    std::fs::remove_dir_all(&scratch).unwrap();
}
