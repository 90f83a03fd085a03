//! Review: the reap of abandoned roots (every `start`, after only
//! `abandoned_min_age`, 10 s by default, and `custodian sweep --base` by default) judges
//! each entry inside a dead owner's root by its times, its locks and listening sockets,
//! but not by whether a live process has it open. A SIGKILLed owner's child that outlives
//! it (no state dir, no watcher) keeps writing a file it opened in its `TMPDIR` and never
//! locked: an unrelated start in the same temp base removed that file (and the `TMPDIR`
//! around it) 11 s after the owner's death, from under the running child. Reproduced with
//! `custodian run -- sh -c 'exec 3>$TMPDIR/db; ...; exec sleep 1000'`, the runner
//! SIGKILLed, then another `custodian run` 11 s later. Now a file another process holds
//! open is kept (`AgeKeptReason::Open`, from one scan of `/proc/*/fd` per sweep, made
//! only once a file is about to be removed), with the directories around it.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use custodian_suite::scratch_dir;
use tokio_custodian::AgeKeptReason;

#[test]
fn a_file_a_live_process_holds_open_in_a_dead_owners_root_is_kept() {
    let base = scratch_dir("review-age-open");
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o700)).unwrap();
    // A dead owner's root (nobody holds its lock), as `TempRoot` makes it.
    let root = base.join(format!("custodian-{}", "e".repeat(32)));
    std::fs::create_dir(&root).unwrap();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700)).unwrap();
    let db = root.join("db");
    // The owner's surviving child: holds `db` open for writing, no lock.
    let mut child = Command::new("sh")
        .args([
            "-c",
            "exec 3>\"$1\"; echo x >&3; echo ready; exec sleep 1000",
            "sh",
        ])
        .arg(&db)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    // An age of zero: everything made before the sweep is old (10 s at start).
    let report = tokio_custodian::AgeSweep::new(&base, Duration::ZERO)
        .run()
        .unwrap();
    let kept = db.exists();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        kept,
        "a file a live process holds open was removed: {report}"
    );
    let why = |p: &std::path::Path| {
        report
            .kept
            .iter()
            .find(|k| k.path == p)
            .map(|k| k.reason.clone())
    };
    assert_eq!(why(&db), Some(AgeKeptReason::Open), "{report}");
    assert_eq!(why(&root), Some(AgeKeptReason::NotEmpty), "{report}");
    // Let go of, it goes with its root at the next sweep.
    let report = tokio_custodian::AgeSweep::new(&base, Duration::ZERO)
        .run()
        .unwrap();
    assert!(!root.exists(), "{report}");
    std::fs::remove_dir_all(&base).unwrap();
}
