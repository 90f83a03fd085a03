//! Review: `Journal::make_durable` (the owner record's `fsync`s, on the blocking pool)
//! `fsync`ed a `dup` of the journal's fd, and `dup` does not set `FD_CLOEXEC`. A child
//! spawned while those `fsync`s ran (a service spawns right after `start`) inherited the
//! journal's open file description across its `exec`, and with it the journal's
//! `flock`, for its whole life: once the owner died, every sweep (the watcher's too)
//! found the journal locked, "its owner alive", and left the tree running.
//!
//! The `fsync`s are slowed to a second each with `strace`'s fault injection, so that
//! the spawn right after `start` falls inside them.

use std::process::{Command, Stdio};
use std::time::Duration;

use custodian_suite::{LineChild, scratch_dir};

const OWNER: &str = env!("CARGO_BIN_EXE_journal-owner");

fn journal_fds(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .map(|t| t.to_string_lossy().into_owned())
                .filter(|t| t.contains(".journal"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_child_spawned_during_the_owner_record_fsync_does_not_hold_the_journal() {
    if Command::new("strace")
        .arg("-V")
        .stdout(Stdio::null())
        .status()
        .is_err()
    {
        eprintln!("skipped: strace absent");
        return;
    }
    let scratch = scratch_dir("review-journal-dup");
    let (state, base) = (scratch.join("state"), scratch.join("tmp"));
    std::fs::create_dir(&base).unwrap();
    let mut owner = LineChild::spawn(
        Command::new("strace")
            .args(["-f", "-qq", "-o", "/dev/null", "-e", "trace=fsync"])
            .args(["-e", "inject=fsync:delay_enter=1000000"])
            .arg(OWNER)
            .args([
                state.as_os_str(),
                base.as_os_str(),
                "1000".as_ref(),
                "1".as_ref(),
            ]),
    );
    let child: u32 = owner
        .wait_line("child ", Duration::from_secs(30))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let held = journal_fds(child);
    owner.wait_line("ready", Duration::from_secs(30)).unwrap();
    // The owner's pid is its journal's name's first field.
    let name = std::fs::read_dir(&state)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .find(|n| n.ends_with(".journal"))
        .unwrap();
    let owner_pid: i32 = name.split('-').next().unwrap().parse().unwrap();
    let kill = |pid: i32| {
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_raw(pid).unwrap(),
            rustix::process::Signal::KILL,
        );
    };
    kill(owner_pid);
    owner.kill();
    let _ = owner.wait_exit(Duration::from_secs(10));
    // The dead owner's tree is recovered: its journal is not held by its own child.
    let report = tokio_custodian::Recovery::new()
        .state_dir(&state)
        .grace(Duration::from_millis(200))
        .run();
    let _ = rustix::process::kill_process_group(
        rustix::process::Pid::from_raw(child as i32).unwrap(),
        rustix::process::Signal::KILL,
    );
    let _ = std::fs::remove_dir_all(&scratch);
    assert!(held.is_empty(), "the child holds the journal: {held:?}");
    let report = report.unwrap();
    assert!(report.is_clean(), "{report}");
}
