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

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !f() {
        assert!(
            std::time::Instant::now() < until,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn kill_all(pids: &[u32]) {
    for pid in pids {
        let pid = rustix::process::Pid::from_raw(*pid as i32).unwrap();
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
}

#[test]
fn after_the_runner_is_sigkilled_the_sweep_kills_its_cgroup_escapees_included() {
    if !cgroup2_writable() {
        eprintln!("skipped: no writable cgroup2");
        return;
    }
    let t = FreshTmp::new("containment-sigkill");
    let state = t.state_dir();
    // Left the group (setsid), cleared its environment (no marker, no TMPDIR), and its
    // parent exits: only the cgroup still knows it is CMD's.
    let (escapee, sibling) = (["sleep", "876.5432"], ["sleep", "301.2345"]);
    let script = "setsid env -i sh -c 'trap \"\" TERM; sleep 876.5432 & exit 0' \
                  </dev/null >/dev/null 2>&1; exec sleep 301.2345";
    let mut runner = t.journaled_runner(&state, &["sh", "-c", script]);
    wait_for("CMD's tree", || {
        running(&escapee).len() == 1 && running(&sibling).len() == 1
    });
    common::sigkill(&mut runner);
    assert_eq!(
        running(&escapee).len(),
        1,
        "the escapee outlives its runner"
    );

    let out = t.sweep(&state);
    let left: Vec<u32> = [running(&escapee), running(&sibling)].concat();
    kill_all(&left);
    let r = common::stdout_json(&out);
    assert!(left.is_empty(), "left running: {left:?}; {r}");
    assert_eq!(out.status.code(), Some(0), "{r}");
    let cgroups = r["journals"]["cgroups"].as_array().unwrap();
    assert_eq!(cgroups.len(), 1, "{r}");
    let cg = cgroups[0].as_str().unwrap();
    assert!(!std::path::Path::new(cg).exists(), "cgroup {cg} left");
    assert!(custodian_entries(&state).is_empty(), "journal left: {r}");
}

#[test]
fn a_sweep_run_from_inside_the_dead_cgroup_spares_itself_and_a_sweep_from_outside_ends_it() {
    if !cgroup2_writable() {
        eprintln!("skipped: no writable cgroup2");
        return;
    }
    let t = FreshTmp::new("containment-inside");
    let state = t.state_dir();
    let (go, out_json, rc) = (t.0.join("go"), t.0.join("inside.json"), t.0.join("rc"));
    let tail = ["sleep", "302.3456"];
    // CMD is the operator's shell: after the runner dies, it runs the sweep itself.
    let script = format!(
        "while [ ! -e {go} ]; do sleep 0.02; done; \
         {bin} sweep --state-dir {state} --grace 300ms --json > {out}; echo $? > {rc}; \
         exec sleep 302.3456",
        go = go.display(),
        bin = common::BIN,
        state = state.display(),
        out = out_json.display(),
        rc = rc.display()
    );
    let mut runner = t.journaled_runner(&state, &["sh", "-c", &script]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    common::sigkill(&mut runner);
    std::fs::write(&go, b"").unwrap();
    wait_for("the inside sweep", || {
        std::fs::read_to_string(&rc).is_ok_and(|s| s.ends_with('\n'))
    });
    wait_for("the shell's tail", || running(&tail).len() == 1);
    let inside: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&out_json).unwrap()).unwrap();
    assert_eq!(
        std::fs::read_to_string(&rc).unwrap().trim(),
        "1",
        "{inside}"
    );
    let skipped = inside["journals"]["skipped"].to_string();
    assert!(skipped.contains("sweeper_inside_cgroup"), "{inside}");
    assert!(
        inside["journals"]["cgroups"].as_array().unwrap().is_empty(),
        "{inside}"
    );

    let out = t.sweep(&state);
    let left = running(&tail);
    kill_all(&left);
    let r = common::stdout_json(&out);
    assert!(left.is_empty(), "left running: {left:?}; {r}");
    assert_eq!(out.status.code(), Some(0), "{r}");
    assert_eq!(r["journals"]["cgroups"].as_array().unwrap().len(), 1, "{r}");
    assert!(custodian_entries(&state).is_empty(), "journal left: {r}");
}

/// The state dir's entries.
fn custodian_entries(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}
