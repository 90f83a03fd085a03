//! `custodian run --state-dir D` journals the run, so that after the runner is SIGKILLed
//! `custodian sweep --state-dir D` stops CMD's whole tree (its group and a `setsid`
//! escapee, found by the journal's environment marker) and removes the private TMPDIR.
//!
//! This file holds one test, because it makes the test process a child subreaper: the
//! dead runner's orphans are re-parented to it, so "nothing left" can include zombies
//! (each is reaped here, by pid, once it has exited).

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::{FreshTmp, poll};
use serde_json::Value;

fn env_of(pid: u32, name: &str) -> Option<String> {
    let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    env.split(|b| *b == 0).find_map(|v| {
        let v = String::from_utf8_lossy(v);
        v.strip_prefix(&format!("{name}=")).map(str::to_owned)
    })
}

/// Whether `pid` is gone; a zombie child of ours is reaped (by pid) and counts as gone.
fn gone(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return true;
    };
    let zombie = stat
        .rsplit_once(')')
        .is_some_and(|(_, r)| r.trim_start().starts_with('Z'));
    if zombie {
        let p = rustix::process::Pid::from_raw(pid as i32).unwrap();
        let _ = rustix::process::waitpid(Some(p), rustix::process::WaitOptions::NOHANG);
    }
    !Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn sweep_after_a_sigkilled_runner_stops_the_tree_and_removes_the_tmpdir() {
    // Orphans of the killed runner come here, so their zombies can be reaped and counted.
    rustix::process::set_child_subreaper(Some(rustix::process::getpid())).unwrap();
    let t = FreshTmp::new("run-state-dir");
    let state = t.0.join("state");
    let mut runner = t
        .cmd(&["run", "--no-watcher", "--state-dir"])
        .arg(&state)
        .args(["--", "sh", "-c", "sleep 1000 & setsid sleep 1000 & wait"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let sleeps = || t.processes().iter().filter(|(_, c)| c == "sleep").count();
    assert!(
        poll(Duration::from_secs(10), || sleeps() == 2),
        "{:?}",
        t.processes()
    );
    let tree: Vec<u32> = t
        .processes()
        .into_iter()
        .map(|(p, _)| p)
        .filter(|&p| p != runner.id())
        .collect();
    assert_eq!(tree.len(), 3, "sh and two sleeps: {:?}", t.processes());
    let tmpdir = PathBuf::from(env_of(tree[0], "TMPDIR").unwrap());
    assert!(
        tmpdir.starts_with(&t.0) && tmpdir.exists(),
        "{}",
        tmpdir.display()
    );
    let root = tmpdir.parent().unwrap().to_path_buf();

    runner.kill().unwrap(); // SIGKILL: nothing of the runner's clean-up runs
    runner.wait().unwrap();
    assert!(
        tree.iter().all(|&p| !gone(p)),
        "the tree outlives its runner"
    );
    assert!(tmpdir.exists());

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
    let j = &v["journals"];
    assert_eq!(j["dead_owners"].as_array().unwrap().len(), 1, "{text}");
    let stopped: u64 = j["stopped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["processes"].as_u64().unwrap())
        .sum();
    assert_eq!(stopped, 3, "sh, its sleep and the setsid escapee: {text}");
    let removed = j["removed"].as_array().unwrap();
    assert_eq!(removed.len(), 1, "{text}");
    assert_eq!(Path::new(removed[0].as_str().unwrap()), root, "{text}");
    assert_eq!(j["dropped"].as_array().unwrap().len(), 1, "{text}");

    let left = || {
        tree.iter()
            .copied()
            .filter(|&p| !gone(p))
            .collect::<Vec<_>>()
    };
    assert!(
        poll(Duration::from_secs(10), || left().is_empty()),
        "left: {:?}",
        left()
    );
    assert!(
        !tmpdir.exists() && !root.exists(),
        "the TMPDIR and root are gone"
    );
    assert!(t.processes().is_empty(), "{:?}", t.processes());
    assert!(
        std::fs::read_dir(&state).unwrap().next().is_none(),
        "no journal left"
    );
}
