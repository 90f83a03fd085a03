//! `start` runs on a runtime thread: the owner record's two `fsync`s (the only ones a
//! journal makes at start) run on the blocking pool, never on the thread that called
//! `start`. Seen with `strace -f` on a current-thread owner, whose runtime thread is
//! its main thread (the process's pid).

use std::process::{Command, Stdio};
use std::time::Duration;

use custodian_suite::{LineChild, scratch_dir};

const OWNER: &str = env!("CARGO_BIN_EXE_journal-owner");

#[test]
fn the_owner_records_fsyncs_are_off_the_starting_thread() {
    if Command::new("strace")
        .arg("-V")
        .stdout(Stdio::null())
        .status()
        .is_err()
    {
        eprintln!("skipped: strace absent");
        return;
    }
    let scratch = scratch_dir("journal-durable");
    let (state, base, log) = (
        scratch.join("state"),
        scratch.join("tmp"),
        scratch.join("log"),
    );
    std::fs::create_dir(&base).unwrap();
    let mut owner = LineChild::spawn(
        Command::new("strace")
            .args(["-f", "-qq", "-e", "trace=execve,fsync,fdatasync", "-o"])
            .arg(&log)
            .arg(OWNER)
            .args([
                state.as_os_str(),
                base.as_os_str(),
                "1".as_ref(),
                "0".as_ref(),
            ]),
    );
    owner.wait_line("ready", Duration::from_secs(30)).unwrap();
    // The blocking pool's `fsync` may come a moment after `ready`.
    std::thread::sleep(Duration::from_millis(500));
    // The traced owner first: a SIGKILLed strace detaches its tracee, which ran on (one
    // `journal-owner` left by every run of this test).
    let traced = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .find_map(|l| l.split_once(' ')?.0.parse::<i32>().ok());
    if let Some(pid) = traced.and_then(rustix::process::Pid::from_raw) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        let gone = custodian_suite::poll_until(Duration::from_secs(10), || {
            !custodian_suite::pid_running(pid.as_raw_nonzero().get().unsigned_abs())
        });
        assert!(gone, "the traced owner {pid:?} outlived its SIGKILL");
    }
    owner.kill();
    let _ = owner.wait_exit(Duration::from_secs(10));
    let text = std::fs::read_to_string(&log).unwrap();
    // The traced owner's pid (its main thread) is the first line's: its `execve`.
    let tids: Vec<u32> = text
        .lines()
        .filter_map(|l| l.split_once(' ')?.0.parse().ok())
        .collect();
    let main = text
        .lines()
        .find_map(|l| l.split_once(' ')?.0.parse::<u32>().ok());
    let fsyncs: Vec<&str> = text.lines().filter(|l| l.contains("fsync(")).collect();
    let _ = custodian_suite::zombie_children();
    std::fs::remove_dir_all(&scratch).unwrap();
    assert!(
        fsyncs.len() >= 2,
        "the owner record was never made durable: {text}"
    );
    let main = main.unwrap();
    assert!(
        fsyncs.iter().all(|l| !l.starts_with(&format!("{main} "))),
        "an fsync on the thread that called start ({main}): {fsyncs:?} (tids {tids:?})"
    );
}
