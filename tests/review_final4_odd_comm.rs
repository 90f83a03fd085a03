//! Review of the byte-wise `/proc/PID/stat` parser (`sys/procfs.rs` `parse_stat`): it
//! decides every identity (start time) the recovery signals by. A process names itself
//! (`prctl(PR_SET_NAME)`, 15 bytes) with what looks like the stat's own fields: a `)`, a
//! state, numbers, a `(` and a newline. A dead owner's recorded child with such a name
//! is still proven by its real start time and stopped by SIGTERM; a process with such a
//! name and *another* start time than the record's (the pid taken by another) is not
//! signalled. Held at 309e8d8: kept as a regression test.

use std::process::Command;
use std::time::{Duration, Instant};

use custodian_suite::journal::{
    Reaped, child_record, dead_owner, private_dir, start_time, sweep, write_journal,
};
use custodian_suite::{scratch_dir, serial};

/// Names itself `argv[2]` (bytes, `\n` unescaped), says `named` on stdout, waits for
/// SIGTERM, then writes `ok` to `argv[1]` and exits.
const NAMED: &str = r#"
import ctypes, signal, sys
name = sys.argv[2].encode().replace(b"\\n", b"\n")
assert ctypes.CDLL(None).prctl(15, ctypes.c_char_p(name), 0, 0, 0) == 0
def term(*_):
    open(sys.argv[1], "w").write("ok\n")
    sys.exit(0)
signal.signal(signal.SIGTERM, term)
print("named", flush=True)
while True:
    signal.pause()
"#;

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

/// Names that mimic the fields after the command name.
const NAMES: [&str; 4] = [
    r"a) Z 1 1 1 (",
    r") R 0 0\n(",
    r"x)\n) S 9 9 9",
    r"(((((((((((((((",
];

fn named(scratch: &std::path::Path, i: usize, name: &str) -> (Reaped, std::path::PathBuf) {
    use std::io::BufRead;
    use std::os::unix::process::CommandExt;
    let script = scratch.join("named.py");
    std::fs::write(&script, NAMED).unwrap();
    let done = scratch.join(format!("done-{i}"));
    let mut child = Command::new("python3")
        .arg(&script)
        .arg(&done)
        .arg(name)
        .process_group(0)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "named\n");
    (Reaped(child), done)
}

fn exits_within(child: &mut std::process::Child, bound: Duration) -> bool {
    let until = Instant::now() + bound;
    while Instant::now() < until {
        if child.try_wait().unwrap().is_some() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

#[test]
fn a_recorded_child_named_like_stat_fields_is_proven_and_stopped() {
    if !python() {
        return;
    }
    let _s = serial();
    let scratch = scratch_dir("final4-odd-comm");
    let state = private_dir(&scratch.join("state"));
    let mut kids: Vec<_> = (NAMES.iter().enumerate())
        .map(|(i, n)| named(&scratch, i, n))
        .collect();
    let mut bytes = dead_owner();
    for (k, _) in &kids {
        let pid = k.0.id();
        let comm = std::fs::read(format!("/proc/{pid}/comm")).unwrap();
        assert!(comm.iter().any(|b| b"()".contains(b)), "{comm:?}");
        bytes.extend(child_record(pid, start_time(pid)));
    }
    write_journal(&state, &bytes);
    let report = sweep(&state);
    for (k, done) in &mut kids {
        let exited = exits_within(&mut k.0, Duration::from_secs(5));
        let said = std::fs::read_to_string(&*done).unwrap_or_default();
        assert!(
            exited && said == "ok\n",
            "not stopped by SIGTERM: {report:?}"
        );
    }
    std::fs::remove_dir_all(&scratch).unwrap();
    assert_eq!(report.stopped.len(), NAMES.len(), "{report:?}");
}

#[test]
fn a_process_named_like_stat_fields_with_another_start_is_left_alone() {
    if !python() {
        return;
    }
    let _s = serial();
    let scratch = scratch_dir("final4-odd-comm-other");
    let state = private_dir(&scratch.join("state"));
    let mut kids: Vec<_> = (NAMES.iter().enumerate())
        .map(|(i, n)| named(&scratch, i, n))
        .collect();
    let mut bytes = dead_owner();
    for (k, _) in &kids {
        // The record's start time is not this process's: its pid was reused.
        let pid = k.0.id();
        bytes.extend(child_record(pid, start_time(pid) - 1));
    }
    write_journal(&state, &bytes);
    let report = sweep(&state);
    for (k, done) in &mut kids {
        assert!(k.0.try_wait().unwrap().is_none(), "signalled: {report:?}");
        assert!(!done.exists(), "signalled: {report:?}");
    }
    drop(kids);
    std::fs::remove_dir_all(&scratch).unwrap();
    assert!(report.stopped.is_empty(), "{report:?}");
}
