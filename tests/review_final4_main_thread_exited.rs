//! Review of the recovery's identity checks: a process whose main thread exited while
//! its other threads run shows state `Z` in `/proc/PID/stat`, like a zombie, yet it runs
//! (`num_threads`, field 20, says so; `ProcStat::zombie` counts it). The recovery's
//! `orphans::open_proven` and `orphans::alive`, and `examine`'s death proof, looked at the
//! state letter alone:
//! - a dead owner's recorded child in that state was found by the scan, then refused as
//!   "a zombie" by the proof before its signal: never signalled, not a survivor either,
//!   and the journal was marked swept, so nothing ever stopped it;
//! - a journal's owner in that state was "exited": its (live) children were stopped.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use custodian_suite::journal::{
    Reaped, boot_id, child_record, dead_owner, owner_record, sleeper, start_time, sweep,
    write_journal, write_journal_named,
};
use custodian_suite::{scratch_dir, serial};

/// A process whose main thread exits at once (the raw `exit` syscall ends one thread)
/// while another thread waits for SIGTERM, then writes `ok` to `argv[1]` and exits the
/// whole process.
const MAIN_THREAD_EXITS: &str = r#"
import ctypes, signal, sys, threading, time
libc = ctypes.CDLL(None)
exit_thread, exit_group = {"x86_64": (60, 231), "aarch64": (93, 94)}[__import__("platform").machine()]
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
def worker():
    signal.sigwait({signal.SIGTERM})
    with open(sys.argv[1], "w") as f:
        f.write("ok\n")
    libc.syscall(exit_group, 0)
threading.Thread(target=worker).start()
libc.syscall(exit_thread, 0)
"#;

/// Field `n` (1-based) of `/proc/PID/stat`, if it can be read.
fn field(pid: u32, n: usize) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(n - 3).map(str::to_owned)
}

fn python() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import ctypes"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("skipped: no python3 with ctypes");
    }
    ok
}

/// The script started in a group of its own, once its main thread has exited (`Z`, two
/// threads); it writes `ok` to `done` when it gets SIGTERM.
fn main_thread_exited(scratch: &Path, done: &Path) -> Reaped {
    use std::os::unix::process::CommandExt;
    let script = scratch.join("main_thread_exits.py");
    std::fs::write(&script, MAIN_THREAD_EXITS).unwrap();
    let child = Command::new("python3")
        .arg(&script)
        .arg(done)
        .process_group(0)
        .spawn()
        .unwrap();
    let pid = child.id();
    let until = Instant::now() + Duration::from_secs(10);
    while !(field(pid, 3).as_deref() == Some("Z") && field(pid, 20).as_deref() == Some("2")) {
        assert!(Instant::now() < until, "the script never got ready");
        std::thread::sleep(Duration::from_millis(5));
    }
    Reaped(child)
}

/// Running: its stat is there and says `Z` only with other threads still running.
fn runs(pid: u32) -> bool {
    match (field(pid, 3), field(pid, 20)) {
        (Some(state), Some(threads)) => state != "Z" || threads != "1",
        _ => false,
    }
}

#[test]
fn a_dead_owner_s_child_whose_main_thread_exited_gets_its_sigterm() {
    if !python() {
        return;
    }
    let _s = serial();
    let scratch = scratch_dir("final4-main-thread-child");
    let state = custodian_suite::journal::private_dir(&scratch.join("state"));
    let done = scratch.join("done");
    let mut kid = main_thread_exited(&scratch, &done);
    let pid = kid.0.id();
    let mut bytes = dead_owner();
    bytes.extend(child_record(pid, start_time(pid)));
    write_journal(&state, &bytes);
    let report = sweep(&state);
    // The sweep's SIGTERM reached it: it wrote its file and exited.
    let exited = kid.0.wait_timeout_or_kill(Duration::from_secs(5));
    let said = std::fs::read_to_string(&done).unwrap_or_default();
    std::fs::remove_dir_all(&scratch).unwrap();
    assert!(
        exited,
        "the dead owner's child is still running after the sweep: {report:?}"
    );
    assert_eq!(said, "ok\n", "not stopped by SIGTERM: {report:?}");
}

#[test]
fn an_owner_whose_main_thread_exited_is_not_dead() {
    if !python() {
        return;
    }
    let _s = serial();
    let scratch = scratch_dir("final4-main-thread-owner");
    let state = custodian_suite::journal::private_dir(&scratch.join("state"));
    let done = scratch.join("done");
    // The journal's owner runs (a process whose main thread exited), with a child.
    let owner = main_thread_exited(&scratch, &done);
    let (opid, ostart) = (owner.0.id(), start_time(owner.0.id()));
    let kid = sleeper();
    let pid = kid.0.id();
    let mut bytes = owner_record(opid, ostart, &boot_id());
    bytes.extend(child_record(pid, start_time(pid)));
    write_journal_named(&state, &format!("{opid}-{ostart}-0123456789abcdef"), &bytes);
    let report = sweep(&state);
    let (owner_runs, kid_runs) = (runs(opid), runs(pid));
    drop((owner, kid));
    std::fs::remove_dir_all(&scratch).unwrap();
    assert!(owner_runs, "the owner was signalled: {report:?}");
    assert!(
        kid_runs,
        "a live owner's child was stopped (its owner taken for exited): {report:?}"
    );
    assert!(report.dead_owners.is_empty(), "{report:?}");
}

/// `wait` with a bound: `true` if it exited by itself within `bound`.
trait WaitBound {
    fn wait_timeout_or_kill(&mut self, bound: Duration) -> bool;
}

impl WaitBound for std::process::Child {
    fn wait_timeout_or_kill(&mut self, bound: Duration) -> bool {
        let until = Instant::now() + bound;
        loop {
            if self.try_wait().unwrap().is_some() {
                return true;
            }
            if Instant::now() >= until {
                let _ = self.kill();
                let _ = self.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
