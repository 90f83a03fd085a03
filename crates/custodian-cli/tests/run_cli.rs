//! `custodian run`'s command line as coreutils `timeout` has it (`--timeout 0`, compound
//! durations, CMD without `--`), and its reports: where they go, checked before CMD
//! starts, in words for people.

mod common;

use std::process::Stdio;

use common::FreshTmp;

fn code(t: &FreshTmp, args: &[&str]) -> i32 {
    let st = t.cmd(args).stdin(Stdio::null()).status().unwrap();
    st.code().expect("custodian exits, it is not killed")
}

#[test]
fn durations_and_arguments_as_coreutils_timeout() {
    let t = FreshTmp::new("cli-args");
    assert_eq!(
        code(&t, &["run", "--timeout", "0", "--", "sleep", "0.3"]),
        0,
        "--timeout 0 disables the timeout"
    );
    assert_eq!(code(&t, &["run", "--grace", "1m30s", "--", "true"]), 0);
    assert_eq!(
        code(&t, &["run", "--timeout", "1m30s", "sh", "-c", "exit 3"]),
        3,
        "CMD without --, its own options are its"
    );
    assert_eq!(code(&t, &["run", "sleep", "0.1"]), 0);
    assert_eq!(code(&t, &["run", "--timeout", "200ms", "sleep", "5"]), 124);
    assert_eq!(code(&t, &["run", "--bogus", "true"]), 125, "usage error");
    assert!(t.entries().is_empty(), "left in TMPDIR: {:?}", t.entries());
}

#[test]
fn a_bad_report_file_is_refused_before_cmd_starts() {
    let t = FreshTmp::new("cli-report-file");
    let mark = t.0.join("cmd-ran");
    let out = t
        .cmd(&[
            "run",
            "--json",
            "--report-file",
            "/no/such/dir/r.json",
            "--",
        ])
        .args(["sh", "-c", "touch \"$1\"", "sh"])
        .arg(&mark)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/no/such/dir/r.json"),
        "the path is named: {err}"
    );
    assert!(!mark.exists(), "CMD did not run");
}

#[test]
fn the_report_goes_to_stdout_with_a_dash_after_cmds_output() {
    let t = FreshTmp::new("cli-report-stdout");
    let out = t
        .cmd(&["run", "--json", "--report-file", "-", "--"])
        .args(["sh", "-c", "echo from-cmd; echo to-stderr >&2"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let json = stdout
        .strip_prefix("from-cmd\n")
        .expect("CMD's output first");
    let r: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(r["reason"], "completed");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "to-stderr\n");
    // Only the report file: a text report.
    let file = t.0.join("report.txt");
    let st = t
        .cmd(&["run", "--report-file"])
        .arg(&file)
        .args(["--", "true"])
        .status()
        .unwrap();
    assert!(st.success());
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.starts_with("custodian run: true completed"), "{text}");
    std::fs::remove_file(&file).unwrap();
}

#[test]
fn text_reports_use_words_and_plurals() {
    let t = FreshTmp::new("cli-report-text");
    let text = |args: &[&str]| {
        let out = t.cmd(args).stdin(Stdio::null()).output().unwrap();
        String::from_utf8(out.stderr).unwrap()
    };
    let failed = text(&["run", "--report", "text", "--", "sh", "-c", "exit 3"]);
    assert!(failed.contains("sh failed with exit code 3"), "{failed}");
    assert!(failed.contains("0 processes adopted"), "{failed}");
    assert!(!failed.contains("(error)"), "{failed}");
    let timed = text(&[
        "run",
        "--report",
        "text",
        "--timeout",
        "200ms",
        "--",
        "sleep",
        "5",
    ]);
    assert!(timed.contains("sleep timed out"), "{timed}");
    assert!(!timed.contains("timed_out"), "{timed}");
    // One escapee (a double fork leaves CMD's tree behind to the runner).
    let one = text(&[
        "run",
        "--report",
        "text",
        "--grace",
        "300ms",
        "--",
        "sh",
        "-c",
        "(setsid sleep 30 </dev/null >/dev/null 2>&1 &); exit 0",
    ]);
    assert!(one.contains("1 process adopted"), "{one}");
}

#[test]
fn term_honoured_only_when_cmd_ended_within_the_grace() {
    let t = FreshTmp::new("cli-honoured");
    let report = |grace: &str, script: &str| {
        let child = t
            .cmd(&["run", "--json", "--grace", grace, "--", "sh", "-c", script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let started = || t.processes().iter().any(|(_, c)| c == "sleep");
        assert!(common::poll(std::time::Duration::from_secs(10), started));
        let pid = rustix::process::Pid::from_child(&child);
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        let out = child.wait_with_output().unwrap();
        serde_json::from_slice::<serde_json::Value>(&out.stderr).unwrap()
    };
    // Ignores TERM and would end by itself after the grace: SIGKILL, not honoured.
    let r = report("300ms", "trap '' TERM; sleep 2");
    assert_eq!(r["stop"]["term_honoured"], false, "{r}");
    assert_eq!(r["stop"]["kill_needed"], true, "{r}");
    assert!(
        r["stop"]["ended_after_ms"].as_f64().unwrap() >= 300.0,
        "{r}"
    );
    // Ends on TERM at once.
    let r = report("5s", "sleep 30");
    assert_eq!(r["stop"]["term_honoured"], true, "{r}");
    assert!(
        r["stop"]["ended_after_ms"].as_f64().unwrap() < 5000.0,
        "{r}"
    );
}
