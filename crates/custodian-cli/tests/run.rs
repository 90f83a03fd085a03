//! `custodian run` on real processes: exit codes as coreutils `timeout`, signal
//! forwarding with the grace then SIGKILL, and the private TMPDIR removed.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{FreshTmp, poll};

fn code(t: &FreshTmp, args: &[&str]) -> i32 {
    let st = t.cmd(args).stdin(Stdio::null()).status().unwrap();
    st.code().expect("custodian exits, it is not killed")
}

#[test]
fn exit_codes_follow_coreutils_timeout() {
    let t = FreshTmp::new("codes");
    assert_eq!(code(&t, &["run", "--", "true"]), 0);
    assert_eq!(code(&t, &["run", "--", "sh", "-c", "exit 7"]), 7);
    assert_eq!(
        code(&t, &["run", "--timeout", "200ms", "--", "sleep", "30"]),
        124
    );
    let ignores = ["run", "--timeout", "200ms", "--kill-after", "200ms", "--"];
    let ignores = [&ignores[..], &["sh", "-c", "trap '' TERM; sleep 30"]].concat();
    assert_eq!(code(&t, &ignores), 137, "SIGKILL needed after the timeout");
    let preserve = [
        "run",
        "--timeout",
        "200ms",
        "--preserve-status",
        "--",
        "sleep",
        "30",
    ];
    assert_eq!(
        code(&t, &preserve),
        128 + 15,
        "killed by the timeout's SIGTERM"
    );
    assert_eq!(
        code(&t, &["run", "--", "/etc/passwd"]),
        126,
        "not executable"
    );
    assert_eq!(code(&t, &["run", "--", "/"]), 126, "a directory");
    assert_eq!(code(&t, &["run", "--", "/no/such/cmd"]), 127);
    assert_eq!(
        code(&t, &["run", "--", "sh", "-c", "kill -USR1 $$"]),
        128 + 10
    );
    assert_eq!(
        code(&t, &["run", "--timeout", "bogus", "--", "true"]),
        125,
        "usage error"
    );
    assert!(t.entries().is_empty(), "left in TMPDIR: {:?}", t.entries());
    assert!(t.processes().is_empty(), "{:?}", t.processes());
}

#[test]
fn sigterm_with_a_term_ignoring_group_leaves_no_process() {
    let t = FreshTmp::new("term");
    let script = "trap '' TERM; sleep 1000 & sleep 1000; wait";
    let report = t.0.join("report.json");
    let mut child = t
        .cmd(&["run", "--grace", "1s", "--json", "--report-file"])
        .arg(&report)
        .args(["--", "sh", "-c", script])
        .spawn()
        .unwrap();
    let sleeps = || t.processes().iter().filter(|(_, c)| c == "sleep").count();
    assert!(
        poll(Duration::from_secs(10), || sleeps() == 2),
        "both sleeps started"
    );
    let pid = rustix::process::Pid::from_child(&child);
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let sent = Instant::now();
    let st = child.wait().unwrap();
    // Only the runner's own process is allowed to still show the TMPDIR before reaped.
    assert!(
        poll(
            Duration::from_secs(3).saturating_sub(sent.elapsed()),
            || t.processes().is_empty()
        ),
        "survivors 3 s after SIGTERM: {:?}",
        t.processes()
    );
    assert_eq!(st.code(), Some(137), "the grace ran out: SIGKILL");
    let took = sent.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "the grace was given: {took:?}"
    );
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(r["stop"]["trigger"], "SIGTERM");
    assert_eq!(r["stop"]["kill_needed"], true);
    assert_eq!(r["signal"], 9);
    std::fs::remove_file(&report).unwrap();
    assert!(t.entries().is_empty(), "left in TMPDIR: {:?}", t.entries());
}

#[test]
fn sigint_is_forwarded_and_honoured() {
    let t = FreshTmp::new("int");
    let child = t
        .cmd(&["run", "--json", "--", "sleep", "1000"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let sleeping = || t.processes().iter().any(|(_, c)| c == "sleep");
    assert!(poll(Duration::from_secs(10), sleeping));
    let pid = rustix::process::Pid::from_child(&child);
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(128 + 2));
    let r: serde_json::Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(r["stop"]["trigger"], "SIGINT");
    assert_eq!(r["stop"]["term_honoured"], true);
    assert_eq!(r["reason"], "stopped");
    assert!(t.processes().is_empty());
}

#[test]
fn the_private_tmpdir_is_inside_the_root_and_removed() {
    let t = FreshTmp::new("tmpdir");
    let script = "echo $TMPDIR; head -c 5000 /dev/zero > $TMPDIR/a; mkdir $TMPDIR/d; \
                  head -c 3000 /dev/zero > $TMPDIR/d/b";
    let out = t
        .cmd(&["run", "--json", "--", "sh", "-c", script])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tmpdir = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(tmpdir.starts_with(&t.0.display().to_string()), "{tmpdir}");
    assert!(!std::path::Path::new(&tmpdir).exists(), "{tmpdir} is gone");
    let r: serde_json::Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(r["temp_bytes_removed"], 8000);
    assert_eq!(r["reason"], "completed");
    assert!(t.entries().is_empty(), "left in TMPDIR: {:?}", t.entries());
}

#[test]
fn a_setsid_escapee_is_adopted_stopped_and_reaped() {
    let t = FreshTmp::new("setsid");
    // The escapee leaves the group and the session; its parent exits at once.
    // Its stdio is not the runner's pipes, so a missed escapee fails the test, not hangs it.
    let script = "setsid sh -c 'trap \"\" TERM; sleep 1000' </dev/null >/dev/null 2>&1 & \
                  sleep 0.2; exit 3";
    let out = t
        .cmd(&[
            "run", "--grace", "500ms", "--json", "--", "sh", "-c", script,
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stderr).unwrap();
    let left = t.processes();
    for (pid, _) in &left {
        let pid = rustix::process::Pid::from_raw(*pid as i32).unwrap();
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
    assert!(left.is_empty(), "escapees left: {left:?}");
    assert!(r["processes_adopted"].as_u64().unwrap() >= 1, "{r}");
    assert!(t.entries().is_empty(), "left in TMPDIR: {:?}", t.entries());
}
