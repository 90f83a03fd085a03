//! `custodian run` on a real pseudo-terminal (util-linux `script` makes one and runs the
//! shell line in a new session on it): CMD reads the terminal without being stopped
//! (SIGTTIN), and the terminal is the shell's again once CMD has exited.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{BIN, FreshTmp, poll};

/// Runs `line` under `sh` on a fresh pseudo-terminal fed `input` (then end of file);
/// `None` if it had not finished after 20 s (a hang: it is killed).
fn on_a_pty(t: &FreshTmp, line: &str, input: &[u8]) -> Option<Output> {
    let mut child = Command::new("script")
        .args(["-qec", line, "/dev/null"])
        .env("TMPDIR", &t.0)
        .env("CUSTODIAN", BIN)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("util-linux script");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input).unwrap();
    drop(stdin);
    let finished = poll(Duration::from_secs(20), || {
        child.try_wait().unwrap().is_some()
    });
    if !finished {
        let _ = child.kill();
        let _ = child.wait();
        return None;
    }
    Some(child.wait_with_output().unwrap())
}

#[test]
fn cmd_reads_the_terminal_and_the_shell_gets_it_back() {
    let t = FreshTmp::new("tty-read");
    let line = r#""$CUSTODIAN" run -- sh -c 'read x; echo got $x'; echo "runner $?"; read y; echo "shell got $y""#;
    let out = on_a_pty(&t, line, b"hello\nagain\n")
        .expect("CMD was stopped reading the terminal, or the shell was after it");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("got hello"), "{text}");
    assert!(text.contains("runner 0"), "{text}");
    assert!(
        text.contains("shell got again"),
        "the terminal was handed back: {text}"
    );
    assert!(t.processes().is_empty(), "{:?}", t.processes());
}

#[test]
fn cat_ends_at_the_terminals_end_of_file() {
    let t = FreshTmp::new("tty-cat");
    let out = on_a_pty(&t, r#""$CUSTODIAN" run -- cat; echo "runner $?""#, b"abc\n")
        .expect("cat was stopped reading the terminal");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("abc"), "{text}");
    assert!(text.contains("runner 0"), "{text}");
    assert!(t.processes().is_empty(), "{:?}", t.processes());
}

#[test]
fn without_the_terminal_in_front_nothing_changes_hands() {
    // Standard input is not the terminal: CMD reads it as usual, and the runner does not
    // touch the terminal (the shell reads it afterwards).
    let t = FreshTmp::new("tty-none");
    let line = r#"echo piped | "$CUSTODIAN" run -- sh -c 'read x; echo got $x'; read y; echo "shell got $y""#;
    let out = on_a_pty(&t, line, b"typed\n").expect("no hang");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("got piped"), "{text}");
    assert!(text.contains("shell got typed"), "{text}");
}

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

#[test]
fn ctrl_z_stops_the_whole_job_and_fg_resumes_it() {
    // An interactive shell with job control on the terminal: Ctrl-Z goes to CMD's group
    // (it has the terminal); the runner stops with it so that the shell sees the job
    // stopped, and `fg` gives CMD the terminal again, where it reads.
    let t = FreshTmp::new("tty-stop");
    let mut child = Command::new("script")
        .args(["-qec", "bash --norc --noprofile -i", "/dev/null"])
        .env("TMPDIR", &t.0)
        .env("CUSTODIAN", BIN)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("util-linux script");
    let mut stdin = child.stdin.take().unwrap();
    let text = collect(child.stdout.take().unwrap());
    let seen = |what: &str| {
        poll(Duration::from_secs(15), || {
            text.lock().unwrap().contains(what)
        })
    };
    // Each step waits for what the previous one printed (the line echo included).
    let steps: [(&[u8], &str); 4] = [
        (
            b"\"$CUSTODIAN\" run -- sh -c 'echo ready; read x; echo got $x'\n",
            "ready\r\n",
        ),
        (b"\x1a", "Stopped"),
        (b"fg\n", "fg\r\n"),
        (b"typed\n", "got typed"),
    ];
    for (bytes, then) in steps {
        stdin.write_all(bytes).unwrap();
        assert!(seen(then), "never saw {then:?}: {}", text.lock().unwrap());
    }
    stdin.write_all(b"echo status $?; exit\n").unwrap();
    drop(stdin);
    let finished = poll(Duration::from_secs(20), || {
        child.try_wait().unwrap().is_some()
    });
    if !finished {
        let _ = child.kill();
    }
    let _ = child.wait();
    let text = text.lock().unwrap().clone();
    assert!(finished, "hung: {text}");
    assert!(text.contains("status 0"), "{text}");
    assert!(t.processes().is_empty(), "{:?}", t.processes());
}
