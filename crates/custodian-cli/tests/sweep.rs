//! `custodian sweep` after a SIGKILLed owner: its child is stopped, its temp root removed,
//! its journal dropped, and the exit code says clean. Also the age sweep, dry and real.

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::FreshTmp;
use serde_json::Value;

const OWNER: &str = "CUSTODIAN_CLI_SWEEP_OWNER";

/// The owner run by [`sweep_reaps_a_sigkilled_owner`]: a supervisor journalling into the
/// state dir named by `OWNER`, a temp file and a child, then it waits to be killed.
#[test]
#[ignore = "run by sweep_reaps_a_sigkilled_owner"]
fn owner() {
    let Some(state) = std::env::var_os(OWNER) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let sup = tokio_custodian::Supervisor::builder()
            .state_dir(PathBuf::from(state))
            .start()
            .unwrap();
        let _t = sup.temp_file().await.unwrap();
        let child = sup.command("sleep").arg("1000").spawn().unwrap();
        println!("ROOT {}", sup.temp_root().display());
        println!("CHILD {}", child.id().unwrap());
        std::future::pending::<()>().await;
    });
}

#[test]
fn sweep_reaps_a_sigkilled_owner() {
    let t = FreshTmp::new("sweep-kill");
    let state = t.0.join("state");
    let mut owner = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "owner",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(OWNER, &state)
        .env("TMPDIR", &t.0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(owner.stdout.take().unwrap()).lines();
    let (mut root, mut child) = (None, None);
    while root.is_none() || child.is_none() {
        let l = lines.next().expect("the owner's lines").unwrap();
        // libtest prints `test owner ... ` before the first line, without a newline.
        if let Some(i) = l.find("ROOT ") {
            root = Some(PathBuf::from(&l[i + 5..]));
        } else if let Some(i) = l.find("CHILD ") {
            child = Some(l[i + 6..].trim().parse::<u32>().unwrap());
        }
    }
    let (root, child) = (root.unwrap(), child.unwrap());
    owner.kill().unwrap(); // SIGKILL: nothing of the owner's runs
    owner.wait().unwrap();
    assert!(root.exists() && std::path::Path::new(&format!("/proc/{child}")).exists());

    let out = t
        .cmd(&["sweep", "--json", "--grace", "1s", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["clean"], true, "{text}");
    assert_eq!(
        v["journals"]["dead_owners"].as_array().unwrap().len(),
        1,
        "{text}"
    );
    assert!(!root.exists(), "the dead owner's temp root is gone");
    // The child was ours (sleep ignores nothing): gone within the grace, and reaped by
    // whoever adopted it.
    let start = Instant::now();
    while std::fs::read_to_string(format!("/proc/{child}/stat")).is_ok_and(|s| !s.contains(") Z "))
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "child {child} still running"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // A second sweep finds nothing left to do.
    let again = t
        .cmd(&["sweep", "--json", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(again.status.code(), Some(0));
    assert!(v["journals"]["dead_owners"].as_array().unwrap().is_empty());
}

#[test]
fn the_age_sweep_reports_in_a_dry_run_and_removes_for_real() {
    let t = FreshTmp::new("sweep-age");
    let base = t.0.join("base");
    std::fs::create_dir_all(base.join("old-dir/sub")).unwrap();
    std::fs::write(base.join("old-file"), b"x").unwrap();
    // An empty state dir (0700, as the journal requires): nothing to reap there.
    let state = t.0.join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let run = |dry: bool| {
        // `--all`: other programs' entries (the default removes only custodian's own).
        let mut c = t.cmd(&["sweep", "--json", "--all", "--older-than", "0s", "--base"]);
        c.arg(&base).arg("--state-dir").arg(&state);
        if dry {
            c.arg("--dry-run");
        }
        let out = c.output().unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        (out.status.code(), v)
    };
    let (code, v) = run(true);
    assert_eq!(code, Some(0), "{v}");
    // Each entry on its own: the file, the nested dir, then the dir holding it.
    assert_eq!(v["age"]["removed"].as_array().unwrap().len(), 3, "{v}");
    assert!(base.join("old-file").exists() && base.join("old-dir").exists());
    let (code, v) = run(false);
    assert_eq!(code, Some(0), "{v}");
    // Each entry on its own: the file, the nested dir, then the dir holding it.
    assert_eq!(v["age"]["removed"].as_array().unwrap().len(), 3, "{v}");
    assert!(
        std::fs::read_dir(&base).unwrap().next().is_none(),
        "base emptied"
    );
}
