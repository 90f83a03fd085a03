//! Review: `kill_on_parent_death` served by the watcher (issue 22) must not be served by
//! a watcher that is already dead.
//!
//! `Command::spawn` dropped the kernel's death signal whenever the stats said
//! `WatcherState::Watching`. That state changes only when the monitor task runs: a
//! watcher killed a moment before (the OOM killer, an operator's `kill -9`) still read
//! as watching until the runtime polled the monitor, so a spawn in between got neither
//! the kernel's signal nor a watcher, and outlived its SIGKILLed owner. Here the owner
//! spawns from a current-thread runtime without yielding after its watcher died, which
//! makes the window certain.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use custodian_suite::{pid_running, poll_until};
use tokio_custodian::Supervisor;

const OWNER: &str = "CUSTODIAN_REVIEW_WATCHER_DEATH_SIGNAL_OWNER";

/// The owner: a supervisor with a watcher on a current-thread runtime; the watcher is
/// SIGKILLed, and once it has exited (the monitor task has not run: nothing yielded), a
/// TERM-ignoring `kill_on_parent_death` child is spawned.
#[test]
#[ignore = "run by a_death_signal_child_spawned_after_its_watcher_died_dies_with_its_owner"]
fn owner() {
    let Some(state) = std::env::var_os(OWNER) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let sup = Supervisor::builder()
            .state_dir(PathBuf::from(state))
            .watcher(true)
            .start()
            .unwrap();
        let watcher = sup.stats().watcher.pid.unwrap();
        // Our unreaped child: its pid is its own.
        let p = rustix::process::Pid::from_raw(watcher as i32).unwrap();
        rustix::process::kill_process(p, rustix::process::Signal::KILL).unwrap();
        assert!(poll_until(Duration::from_secs(5), || !pid_running(watcher)));
        let child = sup
            .command("sh")
            .args(["-c", "trap '' TERM; exec sleep 300.00081"])
            .kill_on_parent_death(true)
            .spawn()
            .unwrap();
        println!("CHILD {}", child.id().unwrap());
        std::future::pending::<()>().await;
    });
}

#[test]
fn a_death_signal_child_spawned_after_its_watcher_died_dies_with_its_owner() {
    let state = std::env::temp_dir().join(format!(
        "review-watcher-death-signal-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&state);
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
    let child: u32 = loop {
        let l = lines.next().expect("the owner's lines").unwrap();
        if let Some(i) = l.find("CHILD ") {
            break l[i + 6..].trim().parse().unwrap();
        }
    };
    let execed = poll_until(Duration::from_secs(5), || {
        std::fs::read_to_string(format!("/proc/{child}/comm")).is_ok_and(|c| c == "sleep\n")
    });
    owner.kill().unwrap();
    owner.wait().unwrap();
    let gone = poll_until(Duration::from_secs(5), || !pid_running(child));
    let p = rustix::process::Pid::from_raw(child as i32).unwrap();
    let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
    let _ = std::fs::remove_dir_all(&state);
    assert!(execed, "the child {child} never ran sleep");
    assert!(
        gone,
        "the kill_on_parent_death child {child} outlived its SIGKILLed owner"
    );
}
