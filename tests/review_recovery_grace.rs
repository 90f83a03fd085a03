//! Review: recovery gives each dead owner's child its *recorded* grace between SIGTERM
//! and SIGKILL. A child spawned with `grace(Duration::MAX)` ("as long as it takes",
//! which a live supervisor's shutdown deadline cuts) is recorded as `u64::MAX` ms; with
//! no cut, a SIGTERM-ignoring child kept `recover`, `custodian sweep`, `start()`'s sweep
//! and the watcher blocked for ever. Recovery now gives a recorded grace 30 s at most.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use custodian_suite::journal::{private_dir, start_time};
use custodian_suite::journal_frame as frame;
use custodian_suite::{poll_until, scratch_dir, serial};

#[test]
fn a_recorded_endless_grace_does_not_block_recovery_for_ever() {
    let _s = serial();
    let mut child = Command::new("sh")
        .args(["-c", "trap '' TERM; exec sleep 1000"])
        .process_group(0)
        .spawn()
        .unwrap();
    let pid = child.id();
    poll_until(Duration::from_secs(5), || {
        std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|c| c.starts_with("sleep"))
    });
    let scratch = scratch_dir("review-recovery-grace");
    let state = private_dir(&scratch.join("state"));
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    let mut owner = vec![1];
    owner.extend(std::process::id().to_le_bytes());
    owner.extend(1u64.to_le_bytes());
    owner.extend(boot.trim().as_bytes());
    // A child record with its grace (tag 9), as a `grace(Duration::MAX)` child's.
    let mut rec = vec![9];
    rec.extend(pid.to_le_bytes());
    rec.extend(start_time(pid).to_le_bytes());
    rec.extend(pid.to_le_bytes());
    rec.extend(u64::MAX.to_le_bytes());
    let mut bytes = frame(&owner);
    bytes.extend(frame(&rec));
    let path = state.join(format!("{}-1-0123456789abcdef.journal", std::process::id()));
    std::fs::write(&path, bytes).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let sweeper = {
        let state = state.clone();
        std::thread::spawn(move || {
            let r = tokio_custodian::Recovery::new()
                .state_dir(&state)
                .grace(Duration::from_millis(200))
                .run();
            let _ = tx.send(());
            r
        })
    };
    // Past the 30 s cap of a recorded grace and the SIGKILL rounds.
    let finished = rx.recv_timeout(Duration::from_secs(45)).is_ok();
    // Let a stuck sweep end (it sees the child gone) before asserting.
    let _ = child.kill();
    let _ = child.wait();
    let report = sweeper.join().unwrap().unwrap();
    std::fs::remove_dir_all(&scratch).unwrap();
    assert!(finished, "recovery still waiting after 45 s: {report}");
    assert!(report.is_clean(), "{report}");
}
