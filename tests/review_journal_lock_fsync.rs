//! Review: `Journal::make_durable` took the journal's writer lock to duplicate its fd,
//! in a guard that was a temporary of the whole statement and so lived across both
//! `fsync`s. Every record written meanwhile waited for them: a spawn right after `start`
//! (its child record) blocked its runtime thread for the two `fsync`s that
//! `make_durable` had just moved off it.
//!
//! The `fsync`s are slowed to a second each with `strace`'s fault injection; the
//! owner's first spawn must not wait for them.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use custodian_suite::{LineChild, scratch_dir};

const OWNER: &str = env!("CARGO_BIN_EXE_journal-owner");

#[test]
fn a_spawn_right_after_start_does_not_wait_for_the_owner_record_fsyncs() {
    if Command::new("strace")
        .arg("-V")
        .stdout(Stdio::null())
        .status()
        .is_err()
    {
        eprintln!("skipped: strace absent");
        return;
    }
    let scratch = scratch_dir("review-journal-lock");
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
    owner.wait_line("root ", Duration::from_secs(30)).unwrap();
    let started = Instant::now();
    let child = owner.wait_line("child ", Duration::from_secs(30));
    let waited = started.elapsed();
    let name = std::fs::read_dir(&state)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .find(|n| n.ends_with(".journal"));
    if let Some(pid) = name.and_then(|n| n.split('-').next()?.parse::<i32>().ok()) {
        let pid = rustix::process::Pid::from_raw(pid).unwrap();
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
    owner.kill();
    let _ = owner.wait_exit(Duration::from_secs(10));
    let _ = tokio_custodian::Recovery::new()
        .state_dir(&state)
        .grace(Duration::from_millis(200))
        .run();
    let _ = std::fs::remove_dir_all(&scratch);
    child.unwrap();
    // Two slowed `fsync`s take 2 s; a spawn (a temp file, a temp dir and a fork) well under.
    assert!(
        waited < Duration::from_millis(900),
        "the first spawn waited {waited:?} for the owner record's fsyncs"
    );
}
