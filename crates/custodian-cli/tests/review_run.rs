//! Review of `custodian run` (signals, the terminal, reaping): the defects found, each
//! with the scenario that showed it, on real processes and a real pseudo-terminal.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{BIN, FreshTmp, poll};

/// What `out` has printed so far, read by a thread as it comes.
fn collect(mut out: impl std::io::Read + Send + 'static) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let t = text.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = out.read(&mut buf) {
            t.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    text
}

/// The runner is its terminal's session leader (`ssh -t host custodian run vim`,
/// `docker exec -it`, `xterm -e`, `script -c`): no job-control shell exists that could
/// `fg` it, and the kernel ignores Ctrl-Z for such an orphaned group. CMD's group (the
/// runner's child, so not orphaned) is stopped by Ctrl-Z all the same; the runner used
/// to SIGSTOP itself then (which the kernel never ignores): CMD and the runner stayed
/// stopped for good and the terminal hung. Now the runner stops with SIGTSTP (stopped
/// only where a shell can continue it) and, not stopped, continues CMD in front.
#[test]
fn ctrl_z_with_no_shell_to_fg_does_not_hang_the_terminal() {
    let t = FreshTmp::new("review-ctrl-z-orphan");
    let line =
        r#"exec "$CUSTODIAN" run --containment never -- sh -c 'echo ready; read x; echo got $x'"#;
    let mut child = Command::new("script")
        .args(["-qec", line, "/dev/null"])
        .env("TMPDIR", &t.0)
        .env("CUSTODIAN", BIN)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("util-linux script");
    let mut stdin = child.stdin.take().unwrap();
    let text = collect(child.stdout.take().unwrap());
    let seen = |what: &str, limit| poll(limit, || text.lock().unwrap().contains(what));
    assert!(
        seen("ready\r\n", Duration::from_secs(15)),
        "CMD never started"
    );
    stdin.write_all(b"\x1a").unwrap();
    // Let the stop (and the runner's reaction to it) happen before the input comes.
    std::thread::sleep(Duration::from_millis(500));
    stdin.write_all(b"typed\n").unwrap();
    let got = seen("got typed", Duration::from_secs(10));
    drop(stdin);
    let finished = poll(Duration::from_secs(10), || {
        child.try_wait().unwrap().is_some()
    });
    if !finished {
        let _ = child.kill();
        for (pid, _) in t.processes() {
            let pid = rustix::process::Pid::from_raw(pid as i32).unwrap();
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
    let _ = child.wait();
    let text = text.lock().unwrap().clone();
    assert!(
        got,
        "CMD stayed stopped (the runner stopped itself): {text:?}"
    );
    assert!(finished, "the runner hung: {text:?}");
    assert!(t.processes().is_empty(), "{:?}", t.processes());
}
