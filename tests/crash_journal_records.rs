//! What the crash sweep makes of each record of a forged journal (issue 18): a journal
//! named like a live owner's, a child record naming another group, an owner of another
//! pid namespace, a pidfd inode that is not the process's: none of them signals anything.
//! A journal damaged mid-file is acted on up to the damage, then set aside for good; a
//! crashed compaction's leftover is not a journal.
//!
//! The journal acted on at most once is in `crash_journal_acts_once.rs`; roots and the
//! state dir in `crash_journal_roots.rs`.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use custodian_suite::journal::{
    Reaped, child_record, dead_owner, marker, private_dir, sleeper, start_time, sweep,
    write_journal,
};
use custodian_suite::journal_frame as frame;
use custodian_suite::{pid_running, poll_until, scratch_dir, serial};

/// A running child of a live owner (this process), with that owner's marker.
fn marked_sleeper(marker: &str) -> std::process::Child {
    Command::new("sleep")
        .arg("1000")
        .process_group(0)
        .env("CUSTODIAN_JOURNAL", marker)
        .spawn()
        .unwrap()
}

#[test]
fn a_journal_named_like_a_live_owners_does_not_stop_its_children() {
    let _s = serial();
    let scratch = scratch_dir("lifecycle-lookalike");
    let state = private_dir(&scratch.join("state"));
    // The live owner's marker: this process, its real start time.
    let me = std::process::id();
    let live = format!("{me}-{}-0123456789abcdef", start_time(me));
    let victim = Reaped(marked_sleeper(&live));
    // A journal by that name in another state dir, with a dead owner's record.
    let journal = state.join(format!("{live}.journal"));
    std::fs::write(&journal, dead_owner()).unwrap();
    std::fs::set_permissions(&journal, std::fs::Permissions::from_mode(0o600)).unwrap();
    let report = sweep(&state);
    assert!(
        pid_running(victim.0.id()),
        "a live owner's child was stopped through a look-alike journal: {report}"
    );
    assert!(
        report.dead_owners.is_empty() && !report.is_clean(),
        "{report}"
    );
    assert!(journal.exists(), "kept for a person");
    drop(victim);
    std::fs::remove_dir_all(&scratch).unwrap();
}

#[test]
fn a_child_record_naming_another_group_is_refused() {
    let _s = serial();
    let scratch = scratch_dir("lifecycle-forged-group");
    let state = private_dir(&scratch.join("state"));
    let victim = sleeper();
    let victim_pid = victim.0.id();
    // A record of a process that does not exist, claiming the victim's group.
    let mut p = vec![3];
    p.extend(4_000_000u32.to_le_bytes());
    p.extend(0u64.to_le_bytes());
    p.extend(victim_pid.to_le_bytes());
    let journal = write_journal(&state, &[dead_owner(), frame(&p)].concat());
    let report = sweep(&state);
    assert!(
        pid_running(victim_pid),
        "a forged record's group was signalled: {report}"
    );
    assert!(report.stopped.is_empty() && !report.is_clean(), "{report}");
    assert!(journal.exists());
    drop(victim);
    std::fs::remove_dir_all(&scratch).unwrap();
}

#[test]
fn a_journal_of_another_pid_namespace_signals_nothing() {
    let _s = serial();
    let scratch = scratch_dir("lifecycle-pidns");
    let state = private_dir(&scratch.join("state"));
    let proc_ = sleeper();
    let pid = proc_.0.id();
    // An owner record with a pid namespace (tag 6) that is not this one.
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    let mut o = vec![6];
    o.extend(std::process::id().to_le_bytes());
    o.extend(1u64.to_le_bytes());
    o.extend(1u64.to_le_bytes());
    o.extend(1u64.to_le_bytes());
    o.extend(boot.trim().as_bytes());
    write_journal(
        &state,
        &[frame(&o), child_record(pid, start_time(pid))].concat(),
    );
    let report = sweep(&state);
    assert!(pid_running(pid), "{report}");
    assert!(
        report
            .skipped
            .iter()
            .any(|s| s.reason == tokio_custodian::SkipReason::OtherPidNamespace),
        "{report}"
    );
    assert!(!report.is_clean());
    drop(proc_);
    std::fs::remove_dir_all(&scratch).unwrap();
}

/// The inode of `pid`'s pidfd on `pidfs` (Linux 6.9+), or `None` before it.
fn pidfd_inode(pid: u32) -> Option<u64> {
    let fd = rustix::process::pidfd_open(
        rustix::process::Pid::from_raw(pid as i32)?,
        rustix::process::PidfdFlags::empty(),
    )
    .ok()?;
    let fs = rustix::fs::fstatfs(&fd).ok()?;
    (i128::from(fs.f_type) == 0x5049_4446).then(|| rustix::fs::fstat(&fd).unwrap().st_ino)
}

/// A child record as this version writes it with `pidfs`: grace and pidfd inode (tag 10).
fn child_with_inode(pid: u32, start: u64, ino: u64) -> Vec<u8> {
    let mut p = vec![10];
    p.extend(pid.to_le_bytes());
    p.extend(start.to_le_bytes());
    p.extend(pid.to_le_bytes());
    p.extend(2000u64.to_le_bytes());
    p.extend(ino.to_le_bytes());
    frame(&p)
}

#[test]
fn a_recorded_pidfd_inode_tells_a_process_from_one_with_its_pid_and_start_time() {
    let _s = serial();
    let proc_ = sleeper();
    let pid = proc_.0.id();
    let Some(ino) = pidfd_inode(pid) else {
        eprintln!("skipped: no pidfs (Linux 6.9+)");
        return;
    };
    let scratch = scratch_dir("lifecycle-pidfd-inode");
    let state = private_dir(&scratch.join("state"));
    // Same pid, same start time, another process's inode: not the recorded child.
    write_journal(
        &state,
        &[
            dead_owner(),
            child_with_inode(pid, start_time(pid), ino + 1),
        ]
        .concat(),
    );
    let report = sweep(&state);
    assert!(pid_running(pid), "{report}");
    assert!(
        report
            .skipped
            .iter()
            .any(|s| s.reason == tokio_custodian::SkipReason::PidReused),
        "{report}"
    );
    // Control: its own inode.
    write_journal(
        &state,
        &[dead_owner(), child_with_inode(pid, start_time(pid), ino)].concat(),
    );
    let report = sweep(&state);
    assert_eq!(report.stopped.len(), 1, "{report}");
    assert!(poll_until(Duration::from_secs(5), || !pid_running(pid)));
    drop(proc_);
    std::fs::remove_dir_all(&scratch).unwrap();
}

#[test]
fn a_journal_damaged_mid_file_is_acted_on_up_to_the_damage_then_set_aside() {
    let _s = serial();
    let scratch = scratch_dir("lifecycle-damaged");
    let state = private_dir(&scratch.join("state"));
    let before = sleeper();
    let after = sleeper();
    let (b, a) = (before.0.id(), after.0.id());
    let mut damaged = child_record(a, start_time(a));
    damaged[10] ^= 0xff; // a flipped byte in the payload: the checksum fails
    let tail = child_record(b, start_time(b)); // a whole record after the damage
    let journal = write_journal(
        &state,
        &[dead_owner(), child_record(b, start_time(b)), damaged, tail].concat(),
    );
    let report = sweep(&state);
    assert!(
        !pid_running(b),
        "the record before the damage is acted on: {report}"
    );
    assert!(pid_running(a), "nothing past the damage is: {report}");
    assert!(!report.is_clean(), "{report}");
    let aside = state.join(format!("{}.journal.corrupt", marker()));
    assert!(
        !journal.exists() && aside.exists(),
        "kept for a person: {report}"
    );
    assert_eq!(report.set_aside, vec![aside.clone()]);
    // Never swept again, never deleted.
    let report = sweep(&state);
    assert_eq!(report.found, 0, "{report}");
    assert!(aside.exists() && pid_running(a));
    drop((before, after));
    std::fs::remove_dir_all(&scratch).unwrap();
}

#[test]
fn a_crashed_compactions_leftover_is_not_a_journal() {
    let _s = serial();
    let scratch = scratch_dir("lifecycle-compact-leftover");
    let state = private_dir(&scratch.join("state"));
    // An older version's name for it, half-written.
    let old = state.join(format!(".compact-{}.journal", marker()));
    std::fs::write(&old, b"cjr1\x05").unwrap();
    std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o600)).unwrap();
    let report = sweep(&state);
    assert!(report.is_clean() && report.found == 0, "{report}");
    // With its dead owner's journal, the sweep removes it.
    let journal = write_journal(&state, &dead_owner());
    let current = state.join(format!("{}.compacting", marker()));
    std::fs::write(&current, b"").unwrap();
    let report = sweep(&state);
    assert!(report.is_clean(), "{report}");
    assert!(!journal.exists() && !old.exists() && !current.exists());
    std::fs::remove_dir_all(&scratch).unwrap();
}

/// Not a check: how long a sweep of 1,000 dead child records takes (their processes
/// exited and were reaped, as after a crash most are), printed. Run with
/// `cargo test -p custodian-suite --test crash_journal_records -- --ignored --nocapture measure`.
#[test]
#[ignore = "a measurement"]
fn measure_a_sweep_of_1000_dead_child_records() {
    let _s = serial();
    let scratch = scratch_dir("lifecycle-measure");
    let state = private_dir(&scratch.join("state"));
    let mut records = dead_owner();
    for _ in 0..1000 {
        let mut c = Command::new("true").process_group(0).spawn().unwrap();
        let pid = c.id();
        let start = start_time(pid);
        c.wait().unwrap();
        records.extend(child_record(pid, start));
    }
    write_journal(&state, &records);
    let procs = std::fs::read_dir("/proc")
        .unwrap()
        .filter(|e| {
            e.as_ref().is_ok_and(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| n.parse::<u32>().is_ok())
            })
        })
        .count();
    let t = std::time::Instant::now();
    let report = sweep(&state);
    println!(
        "sweep of 1,000 dead child records: {:?} ({} processes in /proc, {} dropped)",
        t.elapsed(),
        procs,
        report.dropped.len()
    );
    std::fs::remove_dir_all(&scratch).unwrap();
}
