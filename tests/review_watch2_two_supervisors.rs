//! Review (held): two supervisors in one process, each with its watcher, one of whose
//! journals was removed under the live owner. When the owner is SIGKILLed, each watcher
//! stops its own supervisor's served child and marked escapee (one without its journal,
//! one by it), neither stops the other watcher, and a process the owner started itself
//! (`std::process::Command`, no marker, its own session) is left running.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use custodian_suite::{pid_running, poll_until, running_mentioning};
use tokio_custodian::Supervisor;

const OWNER: &str = "CUSTODIAN_REVIEW_WATCH2_TWO_SUPERVISORS_OWNER";

fn kill(pid: u32) {
    let p = rustix::process::Pid::from_raw(pid as i32).unwrap();
    let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
}

/// The owner: supervisors `a` (its journal then removed) and `b`, each with a watcher,
/// a served child and a child with a `setsid` escapee; and a bystander of its own.
#[test]
#[ignore = "run by two_supervisors_watchers_each_stop_their_own_and_nothing_else"]
fn owner() {
    let Some(state) = std::env::var_os(OWNER) else {
        return;
    };
    let state = PathBuf::from(state);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut sups = Vec::new();
        let mut children = Vec::new();
        let mut watchers = Vec::new();
        for (name, tag) in [("a", 1), ("b", 2)] {
            let sup = Supervisor::builder()
                .state_dir(dir(&state, name))
                .watcher(true)
                .start()
                .unwrap();
            watchers.push(sup.stats().watcher.pid.unwrap());
            children.push(
                sup.command("sleep")
                    .arg(format!("300.0024{tag}1"))
                    .kill_on_parent_death(true)
                    .stdout(Stdio::null())
                    .spawn()
                    .unwrap(),
            );
            let script = format!("setsid sleep 300.0024{tag}2 & exec sleep 300.0024{tag}3");
            children.push(
                sup.command("sh")
                    .args(["-c", &script])
                    .stdout(Stdio::null())
                    .spawn()
                    .unwrap(),
            );
            sups.push(sup);
        }
        // Its own session: no signal to the owner's group reaches it either.
        let mut bystander = Command::new("setsid");
        bystander
            .args(["sleep", "300.00249"])
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        // Not waited for: the test SIGKILLs this process, and init reaps it.
        #[allow(clippy::zombie_processes)]
        let bystander = bystander.spawn().unwrap();
        assert!(poll_until(Duration::from_secs(5), || running_mentioning(
            "300.0024"
        )
        .len()
            == 7));
        for e in std::fs::read_dir(dir(&state, "a")).unwrap() {
            std::fs::remove_file(e.unwrap().path()).unwrap();
        }
        println!("READY {} {} {}", watchers[0], watchers[1], bystander.id());
        std::future::pending::<()>().await;
    });
}

#[test]
fn two_supervisors_watchers_each_stop_their_own_and_nothing_else() {
    let state = std::env::temp_dir().join(format!(
        "review-watch2-two-supervisors-{}",
        std::process::id()
    ));
    let mut owner = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "owner",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(OWNER, &state)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(owner.stdout.take().unwrap()).lines();
    let pids: Vec<u32> = loop {
        let l = lines.next().expect("the owner's lines").unwrap();
        if let Some(i) = l.find("READY ") {
            break l[i + 6..]
                .split_whitespace()
                .map(|p| p.parse().unwrap())
                .collect();
        }
    };
    let (watchers, bystander) = ([pids[0], pids[1]], pids[2]);
    owner.kill().unwrap();
    owner.wait().unwrap();
    let stopped = poll_until(Duration::from_secs(10), || {
        running_mentioning("300.0024") == [bystander] && watchers.iter().all(|&w| !pid_running(w))
    });
    let left = running_mentioning("300.0024");
    let watchers_left: Vec<u32> = watchers.into_iter().filter(|&w| pid_running(w)).collect();
    for pid in &left {
        kill(*pid);
    }
    // The journal `b` is swept; `a`'s root is left to the next start's reap.
    let journals_b = std::fs::read_dir(dir(&state, "b")).map_or(0, Iterator::count);
    for name in ["a", "b"] {
        let _ = std::fs::remove_dir_all(dir(&state, name));
    }
    assert!(
        stopped,
        "left: {left:?} (bystander {bystander}), watchers {watchers_left:?}"
    );
    assert_eq!(journals_b, 0, "b's journal was not swept");
}

/// Supervisor `name`'s state dir (the builder makes it, private).
fn dir(state: &std::path::Path, name: &str) -> PathBuf {
    PathBuf::from(format!("{}-{name}", state.display()))
}
