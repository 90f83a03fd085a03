//! The age sweep's edges (issue 18): a dry run takes no lock, a tree deeper than the walk
//! goes is kept (no stack overflow), and a mounted entry is never entered. The scenarios
//! of both modes are in `crash_age_sweep.rs`.

use std::process::Command;
use std::time::{Duration, Instant};

use custodian_suite::{is_isolated, run_isolated, scratch_dir};
use tokio_custodian::{AgeKeptReason as Why, AgeSweep};

#[path = "support/age_sweep.rs"]
mod common;
use common::{AGE, abandoned_root, age_past, kept};

const ISOLATED: &str = "CUSTODIAN_AGE_SWEEP_ISOLATED";

#[test]
fn a_dry_run_takes_no_lock() {
    run_isolated("dry_run_isolated", ISOLATED, false);
}

/// Polls `/proc/locks` for a lock of this process while dry runs sweep a tree of
/// abandoned roots and old entries (the old code took an `flock` on each one).
#[test]
#[ignore = "run isolated by a_dry_run_takes_no_lock"]
#[allow(deprecated)]
fn dry_run_isolated() {
    if !is_isolated(ISOLATED, "dry_run_isolated") {
        return;
    }
    let scratch = scratch_dir("age-dry");
    let base = scratch.join("base");
    std::fs::create_dir(&base).unwrap();
    for i in 0..300u32 {
        abandoned_root(&base, &format!("{i:032x}"));
        std::fs::write(base.join(format!("old-{i}")), b"x").unwrap();
    }
    age_past();
    let pid = std::process::id().to_string();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop = done.clone();
    let poller = std::thread::spawn(move || {
        let (mut reads, mut seen) = (0u32, Vec::new());
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let locks = std::fs::read_to_string("/proc/locks").unwrap();
            reads += 1;
            seen.extend(
                locks
                    .lines()
                    .filter(|l| l.split_whitespace().any(|f| f == pid))
                    .map(str::to_owned),
            );
        }
        (reads, seen)
    });
    let start = Instant::now();
    let mut runs = 0;
    while start.elapsed() < Duration::from_secs(2) {
        let own = tokio_custodian::clean_older_than(&base, AGE, true).unwrap();
        assert_eq!(own.removed.len(), 600, "300 roots and their files");
        runs += 1;
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let (reads, seen) = poller.join().unwrap();
    assert!(
        seen.is_empty(),
        "{} locks of ours seen during dry runs, such as {:?}",
        seen.len(),
        &seen[..seen.len().min(3)]
    );
    println!("{runs} dry runs, /proc/locks read {reads} times meanwhile, no lock of ours");
    // Nothing was removed, and every root is still free to lock.
    for i in 0..300u32 {
        let root = base.join(format!("custodian-{i:032x}"));
        let f = std::fs::File::open(&root).unwrap();
        rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive).unwrap();
    }
    std::fs::remove_dir_all(&scratch).unwrap();
}

#[test]
fn a_tree_deeper_than_the_walk_goes_is_kept_not_a_stack_overflow() {
    let scratch = scratch_dir("age-deep");
    let base = scratch.join("base");
    let mut deepest = base.clone();
    for _ in 0..300 {
        deepest.push("d");
    }
    std::fs::create_dir_all(&deepest).unwrap();
    std::fs::write(deepest.join("f"), b"x").unwrap();
    std::fs::write(base.join("d/old"), b"x").unwrap();
    age_past();
    let report = AgeSweep::new(&base, AGE).all(true).run().unwrap();
    assert_eq!(report.removed, vec![base.join("d/old")], "{report:?}");
    let too_deep: Vec<_> = report
        .kept
        .iter()
        .filter(|k| k.reason == Why::TooDeep)
        .collect();
    assert_eq!(too_deep.len(), 1, "{too_deep:?}");
    assert_eq!(
        too_deep[0].path.components().count(),
        base.components().count() + 257
    );
    assert!(deepest.join("f").exists());
    assert!(report.is_clean());
    std::fs::remove_dir_all(&scratch).unwrap();
}

#[test]
fn mounted_entries_are_never_entered() {
    run_isolated("mounted_isolated", ISOLATED, true);
}

#[test]
#[ignore = "run isolated by mounted_entries_are_never_entered"]
fn mounted_isolated() {
    if !is_isolated(ISOLATED, "mounted_isolated") {
        return;
    }
    let scratch = scratch_dir("age-mount");
    let base = scratch.join("base");
    let mnt = base.join("old/mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "tmpfs"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(mounted.success(), "mount a tmpfs");
    std::fs::write(mnt.join("on-tmpfs"), b"keep").unwrap();
    std::fs::write(base.join("old/file"), b"x").unwrap();
    age_past();
    for dry_run in [true, false] {
        let report = AgeSweep::new(&base, AGE)
            .all(true)
            .dry_run(dry_run)
            .run()
            .unwrap();
        assert_eq!(report.removed, vec![base.join("old/file")], "{report}");
        assert_eq!(kept(&report, &mnt), Some(Why::MountPoint), "{report}");
        assert_eq!(kept(&report, &base.join("old")), Some(Why::NotEmpty));
    }
    assert_eq!(std::fs::read(mnt.join("on-tmpfs")).unwrap(), b"keep");
    let _ = Command::new("umount").arg(&mnt).status();
    std::fs::remove_dir_all(&scratch).unwrap();
}
