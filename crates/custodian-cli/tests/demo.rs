//! `custodian demo` as a user runs it: exit 0 under a fresh TMPDIR that is empty
//! afterwards, a JSON report whose leftovers read zero, and no process of it left.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use common::{FreshTmp, poll};
use serde_json::Value;

fn leftovers_zero(r: &Value) {
    let l = r["leftovers"].as_object().unwrap();
    assert!(!l.is_empty());
    for (k, v) in l {
        assert_eq!(v.as_u64(), Some(0), "leftover {k}: {v}");
    }
    assert_eq!(r["clean"], true);
}

#[test]
fn demo_with_every_fault_leaves_nothing() {
    let t = FreshTmp::new("demo");
    let out = t.cmd(&["demo", "--jobs", "9", "--json"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{stderr}");
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    leftovers_zero(&r);
    assert_eq!(r["interrupted"], false);
    let jobs = r["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 9);
    let job = |fault: &str| jobs.iter().find(|j| j["fault"] == fault).unwrap().clone();
    // Each fault did go wrong, the way it was meant to.
    assert!(
        job("panic")["detail"]
            .as_str()
            .unwrap()
            .contains("panicked")
    );
    assert!(
        job("malformed")["detail"]
            .as_str()
            .unwrap()
            .contains("upload-"),
        "names the path"
    );
    assert!(
        job("disk-full")["detail"]
            .as_str()
            .unwrap()
            .contains("No space left")
    );
    let quota = job("temp-quota")["detail"].as_str().unwrap().to_owned();
    assert!(quota.contains("quota"), "{quota}");
    assert!(
        job("deadline")["detail"]
            .as_str()
            .unwrap()
            .contains("deadline")
    );
    assert!(
        job("stubborn-child")["detail"]
            .as_str()
            .unwrap()
            .contains("SIGKILL")
    );
    assert_eq!(
        jobs.iter().filter(|j| j["ok"] == true).count(),
        3,
        "clean, stubborn, forget"
    );
    // The forgotten guards were caught at scope end, with their creation sites.
    let leaks = r["leaks"].as_array().unwrap();
    assert_eq!(leaks.len(), 2, "{leaks:?}");
    for l in leaks {
        assert_eq!(l["released_by"], "scope_end");
        assert!(l["site"]["file"].as_str().unwrap().ends_with("job.rs"));
    }
    // Per kind: everything created was released.
    for (kind, k) in r["kinds"].as_object().unwrap() {
        assert_eq!(k["created"], k["released"], "{kind}");
        assert_eq!(k["live"], 0, "{kind}");
    }
    assert_eq!(r["kinds"]["audio_decoder"]["created"], 9);
    assert!(t.entries().is_empty(), "left in TMPDIR: {:?}", t.entries());
    assert!(t.processes().is_empty(), "{:?}", t.processes());
}

#[test]
fn demo_text_report_reads_at_a_glance() {
    let t = FreshTmp::new("demo-text");
    let out = t.cmd(&[
        "demo",
        "--jobs",
        "3",
        "--faults",
        "forget,malformed",
        "--seed",
        "7",
    ]);
    let out = {
        let mut c = out;
        c.output().unwrap()
    };
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("nothing left behind"), "{text}");
    assert!(text.contains("forgotten child"), "{text}");
    assert!(
        text.contains("leftovers: live resources 0, fds 0, children 0"),
        "{text}"
    );
    assert_eq!(
        t.cmd(&["demo", "--faults", "nosuch"])
            .status()
            .unwrap()
            .code(),
        Some(2),
        "an unknown fault is a usage error"
    );
    assert!(t.entries().is_empty(), "left in TMPDIR: {:?}", t.entries());
}

#[test]
fn ctrl_c_shuts_down_gracefully_with_the_same_report() {
    let t = FreshTmp::new("demo-int");
    // The deadline job holds a child for 1 s: SIGINT arrives while it runs.
    let mut child = t
        .cmd(&["demo", "--jobs", "2", "--faults", "deadline", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    assert!(line.contains("temp root"), "{line}");
    let sleeping = || t.processes().iter().any(|(_, c)| c == "sleep");
    assert!(
        poll(Duration::from_secs(10), sleeping),
        "the slow tool started"
    );
    let pid = rustix::process::Pid::from_child(&child);
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    let out = child.wait_with_output().unwrap();
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{:#} {}",
        r["leftovers"],
        r["extra_fds"]
    );
    assert_eq!(r["interrupted"], true);
    leftovers_zero(&r);
    assert_eq!(
        r["leaks"].as_array().unwrap().len(),
        0,
        "cut-off work is not a leak"
    );
    assert!(t.entries().is_empty(), "left in TMPDIR: {:?}", t.entries());
    assert!(t.processes().is_empty(), "{:?}", t.processes());
}

#[test]
fn demo_takes_its_uploads_from_a_dir() {
    let t = FreshTmp::new("demo-inputs");
    let dir = std::env::temp_dir().join(format!("cli-test-inputs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // One second of a 200 Hz tone at 8 kHz, and a file that is not a .wav (ignored).
    let data: Vec<u8> = (0..8_000u32)
        .flat_map(|i| (((i as f64 * 0.157).sin() * 8000.0) as i16).to_le_bytes())
        .collect();
    let mut wav = b"RIFF".to_vec();
    wav.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    wav.extend_from_slice(
        b"WAVEfmt \x10\0\0\0\x01\0\x01\0\x40\x1f\0\0\x80\x3e\0\0\x02\0\x10\0data",
    );
    wav.extend_from_slice(&(data.len() as u32).to_le_bytes());
    wav.extend_from_slice(&data);
    std::fs::write(dir.join("tone.wav"), wav).unwrap();
    std::fs::write(dir.join("notes.txt"), "not audio").unwrap();
    let out = t
        .cmd(&[
            "demo", "--jobs", "3", "--faults", "none", "--json", "--inputs",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    leftovers_zero(&r);
    let jobs = r["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 3, "the one upload repeats");
    assert!(jobs.iter().all(|j| j["ok"] == true), "{jobs:?}");
    assert_eq!(r["leaks"].as_array().unwrap().len(), 0);
    let missing = t
        .cmd(&["demo", "--inputs", "/no/such/dir"])
        .output()
        .unwrap();
    assert_eq!(
        missing.status.code(),
        Some(2),
        "an input error, not a leftover"
    );
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/no/such/dir"));
    assert!(t.entries().is_empty(), "left in TMPDIR: {:?}", t.entries());
}

#[test]
fn a_second_ctrl_c_forces_and_still_leaves_nothing() {
    let t = FreshTmp::new("demo-int2");
    let mut child = t
        .cmd(&["demo", "--jobs", "2", "--faults", "deadline", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let sleeping = || t.processes().iter().any(|(_, c)| c == "sleep");
    assert!(
        poll(Duration::from_secs(10), sleeping),
        "the slow tool started"
    );
    let pid = rustix::process::Pid::from_child(&child);
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    // Press again once the demo says it is shutting down (two signals, not one merged).
    let err = BufReader::new(child.stderr.take().unwrap());
    let mut lines = err.lines();
    assert!(lines.any(|l| l.unwrap().contains("Ctrl-C again")));
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    std::thread::spawn(move || lines.for_each(drop));
    let out = child.wait_with_output().unwrap();
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{:#} {}",
        r["leftovers"],
        r["extra_fds"]
    );
    assert_eq!(r["shutdown"]["forced"], true, "{}", r["shutdown"]);
    leftovers_zero(&r);
    assert!(t.entries().is_empty(), "left in TMPDIR: {:?}", t.entries());
    assert!(t.processes().is_empty(), "{:?}", t.processes());
}
