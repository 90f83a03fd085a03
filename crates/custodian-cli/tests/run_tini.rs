//! tini's own scenarios (its `run_inner_tests.py`: exit codes, zombie reaping, signal
//! forwarding, the process group) against `custodian run` as PID 1 of a new pid
//! namespace (`unshare -p -f --mount-proc`), as a container runtime starts an init.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{BIN, FreshTmp, poll};
use rustix::process::{Pid, Signal};

/// `custodian run ARGS` as PID 1 of a new pid namespace with its own `/proc`.
fn as_pid_1(t: &FreshTmp, args: &[&str]) -> Command {
    let mut c = Command::new("unshare");
    c.args(["-p", "-f", "--mount-proc", BIN, "run"])
        .args(args)
        .env("TMPDIR", &t.0)
        .stdin(Stdio::null());
    c
}

#[test]
fn exit_codes_are_cmds_own_0_to_255() {
    let t = FreshTmp::new("tini-codes");
    // unshare -f exits with its child's code: the runner's.
    let script = "for n in $(seq 0 255); do \"$@\" sh -c \"exit $n\"; c=$?; \
                  [ $c = $n ] || echo \"exit $n gave $c\"; done";
    let out = Command::new("sh")
        .args([
            "-c",
            script,
            "sh",
            "unshare",
            "-p",
            "-f",
            "--mount-proc",
            BIN,
            "run",
        ])
        .arg("--")
        .env("TMPDIR", &t.0)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "",
        "codes that differ"
    );
}

#[test]
fn a_hundred_orphans_are_all_reaped_as_they_exit() {
    // tini's reaping test: CMD's child starts 100 sleeps of 1 to 3 s and exits, and CMD
    // waits until it is the only process left besides PID 1 (zombies count: they are
    // in `/proc`). Reaped only at the end, CMD would wait for ever (the timeout: 124).
    let t = FreshTmp::new("tini-reap");
    let script = "( for i in $(seq 100); do sleep $((1 + i % 2)).$((i % 10)) & done ); \
                  while set -- /proc/[0-9]*; [ $# -gt 2 ]; do sleep 0.05; done";
    let started = Instant::now();
    let st = as_pid_1(&t, &["--timeout", "20s", "--", "sh", "-c", script])
        .status()
        .unwrap();
    let took = started.elapsed();
    assert_eq!(st.code(), Some(0), "all reaped before the timeout");
    eprintln!("the last of 100 orphans (longest sleep 2.9 s) was reaped by {took:?}");
    assert!(took < Duration::from_secs(8), "{took:?}");
}

#[test]
fn term_usr1_usr2_reach_cmd_and_the_runner_exits_128_plus_n() {
    let t = FreshTmp::new("tini-signals");
    for (sig, n) in [(Signal::TERM, 15), (Signal::USR1, 10), (Signal::USR2, 12)] {
        let mut child = as_pid_1(&t, &["--", "sleep", "1000"]).spawn().unwrap();
        let me = child.id();
        let mut runner = None;
        assert!(poll(Duration::from_secs(10), || {
            // The runner (unshare's child) has started CMD.
            runner = std::fs::read_to_string(format!("/proc/{me}/task/{me}/children"))
                .ok()
                .and_then(|k| k.split_whitespace().next()?.parse::<i32>().ok());
            runner.is_some_and(|r| {
                std::fs::read_to_string(format!("/proc/{r}/task/{r}/children"))
                    .is_ok_and(|k| !k.trim().is_empty())
            })
        }));
        let runner = Pid::from_raw(runner.unwrap()).unwrap();
        rustix::process::kill_process(runner, sig).unwrap();
        let st = child.wait().unwrap();
        assert_eq!(st.code(), Some(128 + n), "after signal {n}");
    }
    assert!(t.processes().is_empty(), "{:?}", t.processes());
}

#[test]
fn the_whole_group_gets_the_signal() {
    // tini -g: CMD survives SIGUSR1 (a handler) and waits for its child, which does
    // not: the signal to the runner ends the grandchild, then CMD, then the runner.
    let t = FreshTmp::new("tini-group");
    let script = "trap 'echo usr1' USR1; sleep 1000; wait; exit 0";
    let mut child = as_pid_1(&t, &["--", "sh", "-c", script])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let sleeping = || t.processes().iter().any(|(_, c)| c == "sleep");
    assert!(poll(Duration::from_secs(10), sleeping));
    let me = child.id();
    let kids = std::fs::read_to_string(format!("/proc/{me}/task/{me}/children")).unwrap();
    let runner: i32 = kids.split_whitespace().next().unwrap().parse().unwrap();
    rustix::process::kill_process(Pid::from_raw(runner).unwrap(), Signal::USR1).unwrap();
    let finished = poll(Duration::from_secs(10), || {
        child.try_wait().unwrap().is_some()
    });
    if !finished {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    assert!(finished, "the grandchild did not get SIGUSR1");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "usr1\n");
}
