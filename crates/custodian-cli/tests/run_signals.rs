//! `custodian run` forwards every signal that would kill it to CMD's group and lives on
//! (tini's forwarding), as a child subreaper and as a pid namespace's PID 1.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{BIN, FreshTmp, poll};
use rustix::process::{Pid, Signal};

/// CMD: prints `ready`, then the name of each signal it traps, until SIGTERM.
const TRAPS: &str = "for s in USR1 USR2 ALRM PIPE WINCH VTALRM PROF 35; do \
                     trap \"echo got $s\" $s; done; echo ready; \
                     while :; do sleep 0.05; done";

/// The lines `child` prints, as they come.
fn lines(child: &mut Child) -> mpsc::Receiver<String> {
    let out = BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in out.lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    rx
}

fn expect(rx: &mpsc::Receiver<String>, want: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(l) if l == want => return,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    panic!("CMD never printed {want:?}");
}

/// SIGKILLs what is left of the run when a test fails (an old runner killed by a
/// signal leaves CMD looping for ever).
struct KillLeft<'a>(&'a FreshTmp);

impl Drop for KillLeft<'_> {
    fn drop(&mut self) {
        for (pid, _) in self.0.processes() {
            if let Some(p) = Pid::from_raw(pid as i32) {
                let _ = rustix::process::kill_process(p, Signal::KILL);
            }
        }
    }
}

/// Sends each trapped signal to `runner`, checks CMD got it and the runner lives on,
/// then SIGTERM: CMD dies of it, and the runner exits 128 + 15 as tini does.
fn forwards_all(t: &FreshTmp, mut cmd: Command, runner: impl Fn(&Child) -> Pid) {
    let _left = KillLeft(t);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = lines(&mut child);
    expect(&rx, "ready");
    let pid = runner(&child);
    let sigs = [
        (Signal::USR1, "USR1"),
        (Signal::USR2, "USR2"),
        (Signal::ALARM, "ALRM"),
        (Signal::PIPE, "PIPE"),
        (Signal::WINCH, "WINCH"),
        (Signal::VTALARM, "VTALRM"),
        (Signal::PROF, "PROF"),
    ];
    for (sig, name) in sigs {
        rustix::process::kill_process(pid, sig).unwrap();
        expect(&rx, &format!("got {name}"));
        assert!(
            child.try_wait().unwrap().is_none(),
            "{name} killed the runner"
        );
    }
    // A realtime signal (SIGRTMIN + 1 with glibc): its default action kills too.
    let pid_arg = pid.as_raw_nonzero().to_string();
    let sent = Command::new("kill").args(["-35", &pid_arg]).status();
    assert!(sent.unwrap().success());
    expect(&rx, "got 35");
    assert!(
        child.try_wait().unwrap().is_none(),
        "signal 35 killed the runner"
    );
    rustix::process::kill_process(pid, Signal::TERM).unwrap();
    let st = child.wait().unwrap();
    assert_eq!(
        st.code(),
        Some(128 + 15),
        "CMD died of the forwarded SIGTERM"
    );
    assert!(
        poll(Duration::from_secs(3), || t.processes().is_empty()),
        "{:?}",
        t.processes()
    );
}

#[test]
fn every_deadly_signal_is_forwarded_and_the_runner_lives_on() {
    let t = FreshTmp::new("sig-forward");
    let mut cmd = t.cmd(&["run", "--", "sh", "-c", TRAPS]);
    cmd.stdin(Stdio::null());
    forwards_all(&t, cmd, Pid::from_child);
}

#[test]
fn as_pid_1_signals_the_kernel_would_drop_are_forwarded() {
    // In a new pid namespace the runner is PID 1: the kernel drops a signal sent to it
    // (even from outside) unless it has a handler for it.
    let t = FreshTmp::new("sig-pid1");
    let mut cmd = Command::new("unshare");
    cmd.args([
        "-p",
        "-f",
        "--mount-proc",
        BIN,
        "run",
        "--",
        "sh",
        "-c",
        TRAPS,
    ])
    .env("TMPDIR", &t.0);
    forwards_all(&t, cmd, |unshare| {
        // The runner is unshare's only child.
        let me = Pid::from_child(unshare).as_raw_nonzero().get();
        let kids = std::fs::read_to_string(format!("/proc/{me}/task/{me}/children")).unwrap();
        let pid: i32 = kids.split_whitespace().next().unwrap().parse().unwrap();
        Pid::from_raw(pid).unwrap()
    });
}
