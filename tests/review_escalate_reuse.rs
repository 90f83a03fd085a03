//! Review: recovery's escalation (`sys::orphans` over `sys::escalate::run`) looks again
//! before each SIGKILL round. A recorded leader that exited on SIGTERM has a free pid;
//! when that pid is reused before the round, the group was reported "pid reused, nothing
//! signalled" although its members had been signalled and stopped (the look flipped the
//! group's fate), and the report lost the group it had stopped.
//!
//! Provoked with `ns_last_pid` (root): one recorded leader exits on SIGTERM, another
//! ignores it (so the grace runs out), and the first one's pid is given to a new process
//! during the grace.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use custodian_suite::journal::{Reaped, private_dir, start_time};
use custodian_suite::journal_frame as frame;
use custodian_suite::{pid_running, poll_until, scratch_dir, serial};

/// A journal of a dead owner (this process, start time 1) with these child records.
fn write_journal(state: &Path, children: &[(u32, u64)]) {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    let mut owner = vec![1];
    owner.extend(std::process::id().to_le_bytes());
    owner.extend(1u64.to_le_bytes());
    owner.extend(boot.trim().as_bytes());
    let mut bytes = frame(&owner);
    for &(child, child_start) in children {
        let mut rec = vec![3];
        rec.extend(child.to_le_bytes());
        rec.extend(child_start.to_le_bytes());
        rec.extend(child.to_le_bytes());
        bytes.extend(frame(&rec));
    }
    let path = state.join(format!("{}-1-0123456789abcdef.journal", std::process::id()));
    std::fs::write(&path, bytes).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// A process with exactly `pid`, through `ns_last_pid`; `None` if another fork took it.
fn spawn_with_pid(pid: u32) -> Option<Reaped> {
    for _ in 0..20 {
        if std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string()).is_err() {
            return None;
        }
        let c = Reaped(Command::new("sleep").arg("1000").spawn().unwrap());
        if c.0.id() == pid {
            return Some(c);
        }
    }
    None
}

#[test]
fn a_group_stopped_before_its_leaders_pid_was_reused_is_reported_stopped() {
    let _s = serial();
    // A leaves on SIGTERM; B ignores it, so the grace runs out and a SIGKILL round
    // (with its look for forks in flight) follows.
    let mut a = Command::new("sleep")
        .arg("1000")
        .process_group(0)
        .spawn()
        .unwrap();
    let b = Reaped(
        Command::new("sh")
            .args(["-c", "trap '' TERM; exec sleep 1000"])
            .process_group(0)
            .spawn()
            .unwrap(),
    );
    let (apid, bpid) = (a.id(), b.0.id());
    // B's `trap` is set once it has exec'd `sleep`.
    poll_until(Duration::from_secs(5), || {
        std::fs::read_to_string(format!("/proc/{bpid}/cmdline"))
            .is_ok_and(|c| c.starts_with("sleep"))
    });
    let scratch = scratch_dir("review-escalate-reuse");
    let state = private_dir(&scratch.join("state"));
    write_journal(
        &state,
        &[(apid, start_time(apid)), (bpid, start_time(bpid))],
    );
    let sweeper = {
        let state = state.clone();
        std::thread::spawn(move || {
            tokio_custodian::Recovery::new()
                .state_dir(&state)
                .grace(Duration::from_millis(1500))
                .run()
                .unwrap()
                .journals
                .unwrap()
        })
    };
    // A leaves on SIGTERM; reaped here, its pid is free: give it to another process
    // while B's grace runs.
    let status = a.wait().unwrap();
    assert!(
        status.code().is_none(),
        "not stopped by a signal: {status:?}"
    );
    let impostor = spawn_with_pid(apid);
    let report = sweeper.join().unwrap();
    let b_gone = !pid_running(bpid);
    drop(b);
    let Some(impostor) = impostor else {
        let _ = std::fs::remove_dir_all(&scratch);
        eprintln!("skipped: could not reuse pid {apid} (no ns_last_pid, or a race)");
        return;
    };
    let impostor_alive = pid_running(impostor.0.id());
    drop(impostor);
    std::fs::remove_dir_all(&scratch).unwrap();
    assert!(b_gone, "B survived: {report}");
    assert!(
        impostor_alive,
        "the pid's new owner was signalled: {report}"
    );
    assert!(
        report.skipped.is_empty(),
        "a group stopped by SIGTERM reported as a reused pid: {report}"
    );
    assert_eq!(report.stopped.len(), 2, "{report}");
}
