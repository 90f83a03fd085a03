//! `custodian inspect` (issue 20) against a real `custodian run`: by pid, by state dir,
//! `--json`, `--watch`; a client of another uid is refused (by the socket's mode, and
//! by `SO_PEERCRED` when the mode is opened up); an unknown pid is an error naming it.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{BIN, FreshTmp, poll};
use serde_json::Value;

fn inspect(args: &[&str]) -> (i32, Value, String) {
    let out = Command::new(BIN)
        .arg("inspect")
        .args(args)
        .output()
        .unwrap();
    let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (
        out.status.code().unwrap_or(-1),
        json,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `custodian run [EXTRA] -- sleep 30`, once its child is up and it answers.
fn runner(tmp: &FreshTmp, extra: &[&str]) -> Child {
    let mut args = vec!["run"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--", "sleep", "30"]);
    let run = tmp.cmd(&args).stdout(Stdio::null()).spawn().unwrap();
    let pid = run.id().to_string();
    assert!(
        poll(Duration::from_secs(20), || {
            let (code, json, _) = inspect(&[&pid, "--json"]);
            code == 0
                && json["owners"][0]["live"]
                    .as_array()
                    .is_some_and(|l| l.len() == 2)
        }),
        "custodian run never answered"
    );
    run
}

fn stop(mut run: Child) {
    let pid = rustix::process::Pid::from_raw(run.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    run.wait().unwrap();
}

#[test]
fn a_run_is_inspected_by_pid_as_json_and_as_a_table() {
    let tmp = FreshTmp::new("inspect-pid");
    let run = runner(&tmp, &[]);
    let pid = run.id();
    let (code, json, err) = inspect(&[&pid.to_string(), "--json"]);
    assert_eq!(code, 0, "{err}");
    let o = &json["owners"][0];
    assert_eq!(o["pid"], pid);
    assert_eq!(o["state"], "running");
    let live = o["live"].as_array().unwrap();
    let kinds: Vec<(&str, &str)> = live
        .iter()
        .map(|r| (r["kind"].as_str().unwrap(), r["label"].as_str().unwrap()))
        .collect();
    assert_eq!(kinds, [("temp_dir", "TMPDIR"), ("child", "CMD")]);
    assert_eq!(live[1]["scope"], "root/run");
    assert!(
        live[0]["path"]
            .as_str()
            .unwrap()
            .starts_with(o["temp_root"].as_str().unwrap())
    );
    let sleep = o["children"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["cmdline"] == "sleep 30")
        .expect("the child among the run's children");
    // The child's entry names its process, and the process its entry.
    assert_eq!(live[1]["pid"], sleep["pid"]);
    assert_eq!(live[1]["pgid"], sleep["pid"]);
    assert_eq!(sleep["resource"], live[1]["id"]);
    let socket = o["socket"].as_str().unwrap();
    let mode = std::fs::metadata(socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    let out = Command::new(BIN)
        .args(["inspect", &pid.to_string()])
        .output()
        .unwrap();
    let table = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "KIND",
        "temp_dir",
        "TMPDIR",
        "child",
        "CMD",
        "root/run",
        "sleep 30",
        "running",
        &format!("pid {0} group {0}", sleep["pid"]),
    ] {
        assert!(table.contains(needle), "{needle} not in {table}");
    }
    stop(run);
    // The socket went with the run.
    assert!(!std::path::Path::new(socket).exists());
}

#[test]
fn every_owner_of_a_state_dir_and_watch() {
    let tmp = FreshTmp::new("inspect-state");
    let state = tmp.0.join("state");
    let state_s = state.to_str().unwrap();
    let a = runner(&tmp, &["--state-dir", state_s]);
    let b = runner(&tmp, &["--state-dir", state_s]);
    let (code, json, err) = inspect(&["--state-dir", state_s, "--json"]);
    assert_eq!(code, 0, "{err}");
    let mut pids: Vec<u64> = json["owners"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["pid"].as_u64().unwrap())
        .collect();
    pids.sort();
    let mut want = vec![a.id() as u64, b.id() as u64];
    want.sort();
    assert_eq!(pids, want);

    // --watch: one JSON document per refresh, until interrupted.
    let watch = Command::new(BIN)
        .args([
            "inspect",
            "--state-dir",
            state_s,
            "--json",
            "--watch",
            "100ms",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    let p = rustix::process::Pid::from_raw(watch.id() as i32).unwrap();
    rustix::process::kill_process(p, rustix::process::Signal::INT).unwrap();
    let out = watch.wait_with_output().unwrap();
    let docs: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(docs.len() >= 3, "{} refreshes", docs.len());
    assert!(
        docs.iter()
            .all(|d| d["owners"].as_array().unwrap().len() == 2)
    );
    stop(a);
    stop(b);
}

/// A Ctrl-C that lands while `--watch` is reading or printing a round (not in its pause)
/// still stops it: with a 1 ms pause, nearly every interrupt lands there.
#[test]
fn watch_stops_on_an_interrupt_between_pauses() {
    let tmp = FreshTmp::new("inspect-watch-int");
    let run = runner(&tmp, &[]);
    let pid = run.id().to_string();
    for _ in 0..3 {
        let mut watch = Command::new(BIN)
            .args(["inspect", &pid, "--json", "--watch", "1ms"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        // Well into its rounds (its handler installed).
        std::thread::sleep(Duration::from_millis(500));
        let p = rustix::process::Pid::from_raw(watch.id() as i32).unwrap();
        rustix::process::kill_process(p, rustix::process::Signal::INT).unwrap();
        let ended = poll(Duration::from_secs(10), || {
            watch.try_wait().unwrap().is_some()
        });
        if !ended {
            let _ = watch.kill();
            let _ = watch.wait();
        }
        assert!(ended, "--watch ignored a Ctrl-C");
    }
    stop(run);
}

#[test]
fn another_uid_is_refused() {
    let tmp = FreshTmp::new("inspect-uid");
    let state = tmp.0.join("state");
    let run = runner(&tmp, &["--state-dir", state.to_str().unwrap()]);
    let (_, json, _) = inspect(&[&run.id().to_string(), "--json"]);
    let socket = PathBuf::from(json["owners"][0]["socket"].as_str().unwrap());
    let as_nobody = || {
        Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                BIN,
                "inspect",
                "--socket",
            ])
            .arg(&socket)
            .output()
            .unwrap()
    };
    // Let nobody reach the socket's directory; the socket itself is still 0600.
    let root = socket.parent().unwrap();
    for d in [&tmp.0, root] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let out = as_nobody();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("Permission denied"), "{err}");
    // With the mode opened up, the server itself refuses the peer's uid.
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = as_nobody();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("refused: uid 65534 is neither the owner"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
    // Root (the owner here) is still answered.
    let (code, _, err) = inspect(&["--socket", socket.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "{err}");
    stop(run);
}

#[test]
fn a_pid_without_a_socket_is_an_error_naming_it() {
    let (code, _, err) = inspect(&["999999999"]);
    assert_eq!(code, 1);
    assert!(err.contains("/proc/999999999/fd"), "{err}");
    let (code, _, err) = inspect(&[&std::process::id().to_string()]);
    assert_eq!(code, 1);
    assert!(err.contains("has no inspect socket"), "{err}");
}
