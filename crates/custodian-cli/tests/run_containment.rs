//! `custodian run --containment`: CMD's tree in a cgroup v2 of its own by default where one
//! is delegated (released with `cgroup.kill`), the tier said in the JSON report.

mod common;

use common::FreshTmp;

/// Processes whose command line is exactly `argv` (NUL-separated in `/proc/PID/cmdline`).
fn running(argv: &[&str]) -> Vec<u32> {
    let want: Vec<u8> = argv
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == want))
        .collect()
}

fn json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stderr)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)))
}

fn cgroup2_writable() -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    info.lines()
        .any(|l| l.contains(" - cgroup2 ") && l.contains(" rw"))
        && rustix::process::geteuid().is_root()
}

#[test]
fn the_default_contains_cmd_in_a_cgroup_and_a_cleared_environment_escapee_dies_with_it() {
    let t = FreshTmp::new("containment-auto");
    // A double-forked, setsid, `env -i` (no TMPDIR, no marker), TERM-ignoring escapee that
    // keeps running after CMD exits. Its argv is unique to this test.
    let escapee = ["sleep", "987.6543"];
    let script = "setsid env -i sh -c 'trap \"\" TERM; sleep 987.6543 & exit 0' \
                  </dev/null >/dev/null 2>&1 & sleep 0.3; exit 0";
    let out = t
        .cmd(&[
            "run", "--grace", "300ms", "--json", "--", "sh", "-c", script,
        ])
        .output()
        .unwrap();
    let r = json(&out);
    let left = running(&escapee);
    for pid in &left {
        let pid = rustix::process::Pid::from_raw(*pid as i32).unwrap();
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
    assert_eq!(out.status.code(), Some(0), "{r}");
    assert!(left.is_empty(), "escapees left: {left:?}; {r}");
    if cgroup2_writable() {
        assert_eq!(r["containment"]["tier"], "cgroup", "{r}");
        let path = r["containment"]["path"].as_str().unwrap();
        assert!(
            !std::path::Path::new(path).exists(),
            "cgroup {path} left; {r}"
        );
    } else {
        eprintln!("skipped the cgroup assertions: no writable cgroup2");
        assert_eq!(r["containment"]["tier"], "process_group", "{r}");
    }
}

#[test]
fn never_uses_the_process_group_and_says_why() {
    let t = FreshTmp::new("containment-never");
    let out = t
        .cmd(&["run", "--containment", "never", "--json", "--", "true"])
        .output()
        .unwrap();
    let r = json(&out);
    assert_eq!(out.status.code(), Some(0), "{r}");
    assert_eq!(r["containment"]["tier"], "process_group", "{r}");
}

#[test]
fn required_without_a_cgroup_fails_before_cmd_runs() {
    if !cgroup2_writable() {
        eprintln!("skipped: no writable cgroup2 to hide");
        return;
    }
    // Hide cgroup2 from a private mount namespace: the runner must refuse, not fall back.
    let t = FreshTmp::new("containment-required");
    let marker = t.0.join("ran");
    let mount = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .find(|l| l.contains(" - cgroup2 "))
        .map(|l| l.split(' ').nth(4).unwrap().to_owned())
        .unwrap();
    let script = format!(
        "mount -o remount,bind,ro {mount} 2>/dev/null || mount -t tmpfs none {mount}; \
         exec \"$0\" run --containment required -- touch {}",
        marker.display()
    );
    let out = std::process::Command::new("unshare")
        .args([
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
            &script,
            common::BIN,
        ])
        .env("TMPDIR", &t.0)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(125),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!marker.exists(), "CMD ran without the required containment");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("containment"), "{err}");
}
