//! `custodian run` on a real pseudo-terminal (util-linux `script` makes one and runs the
//! shell line in a new session on it): CMD reads the terminal without being stopped
//! (SIGTTIN), and the terminal is the shell's again once CMD has exited.

mod common;

use std::time::Duration;

use common::{FreshTmp, Pty};

/// Runs `line` under `sh` on a fresh pseudo-terminal fed `input` (then end of file);
/// what the terminal showed, or `None` if it had not finished after 20 s (a hang: it is
/// killed).
fn on_a_pty(t: &FreshTmp, line: &str, input: &[u8]) -> Option<String> {
    let mut pty = Pty::start(t, line);
    pty.send(input);
    pty.finish(t, Duration::from_secs(20)).then(|| pty.text())
}

#[test]
fn cmd_reads_the_terminal_and_the_shell_gets_it_back() {
    let t = FreshTmp::new("tty-read");
    let line = r#""$CUSTODIAN" run -- sh -c 'read x; echo got $x'; echo "runner $?"; read y; echo "shell got $y""#;
    let text = on_a_pty(&t, line, b"hello\nagain\n")
        .expect("CMD was stopped reading the terminal, or the shell was after it");
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
    let text = on_a_pty(&t, r#""$CUSTODIAN" run -- cat; echo "runner $?""#, b"abc\n")
        .expect("cat was stopped reading the terminal");
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
    let text = on_a_pty(&t, line, b"typed\n").expect("no hang");
    assert!(text.contains("got piped"), "{text}");
    assert!(text.contains("shell got typed"), "{text}");
}

#[test]
fn ctrl_z_stops_the_whole_job_and_fg_resumes_it() {
    // An interactive shell with job control on the terminal: Ctrl-Z goes to CMD's group
    // (it has the terminal); the runner stops with it so that the shell sees the job
    // stopped, and `fg` gives CMD the terminal again, where it reads.
    let t = FreshTmp::new("tty-stop");
    let mut pty = Pty::start(&t, "bash --norc --noprofile -i");
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
        pty.send(bytes);
        assert!(
            pty.saw(then, Duration::from_secs(15)),
            "never saw {then:?}: {}",
            pty.text()
        );
    }
    pty.send(b"echo status $?; exit\n");
    let finished = pty.finish(&t, Duration::from_secs(20));
    let text = pty.text();
    assert!(finished, "hung: {text}");
    assert!(text.contains("status 0"), "{text}");
    assert!(t.processes().is_empty(), "{:?}", t.processes());
}
