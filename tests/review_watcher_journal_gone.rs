//! Review (fixed): `kill_on_parent_death` served by the watcher (issue 22) depended on
//! the journal file outliving the owner.
//!
//! A child spawned while the watcher watches gets no `PR_SET_PDEATHSIG`: only its record
//! in the journal makes it die with the owner. The watcher finds that record by the
//! journal's *path* once the owner is dead; a journal removed meanwhile (an operator's
//! `rm`, `systemd-tmpfiles` ageing a state dir under /tmp, a state dir on a file system
//! unmounted under the service) leaves the watcher nothing to act on, and the child,
//! which the kernel's signal would have killed, outlived its SIGKILLed owner. The fix: the
//! owner tells the watcher each served child over the link (pid, start time, pidfd
//! inode), so its kill does not depend on the file; the watcher also stops the
//! processes carrying the owner's marker (here: a second, unserved child and the
//! `setsid` escapee it started), which no later sweep could find without the journal.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use custodian_suite::{pid_running, poll_until, running_mentioning};
use tokio_custodian::Supervisor;

const OWNER: &str = "CUSTODIAN_REVIEW_WATCHER_JOURNAL_GONE_OWNER";

/// The owner: a supervisor with a watcher and a `kill_on_parent_death` child; then its
/// journal is removed from the state dir.
#[test]
#[ignore = "run by a_death_signal_child_dies_with_its_owner_even_if_the_journal_was_removed"]
fn owner() {
    let Some(state) = std::env::var_os(OWNER) else {
        return;
    };
    let state = PathBuf::from(state);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let sup = Supervisor::builder()
            .state_dir(&state)
            .watcher(true)
            .start()
            .unwrap();
        let child = sup
            .command("sleep")
            .arg("300.00091")
            .kill_on_parent_death(true)
            .spawn()
            .unwrap();
        // Not served (no death signal), with an escapee that left its group.
        let other = sup
            .command("sh")
            .args(["-c", "setsid sleep 300.00092 & exec sleep 300.00093"])
            .spawn()
            .unwrap();
        for e in std::fs::read_dir(&state).unwrap() {
            std::fs::remove_file(e.unwrap().path()).unwrap();
        }
        println!("CHILD {} {}", child.id().unwrap(), other.id().unwrap());
        std::future::pending::<()>().await;
    });
}

#[test]
fn a_death_signal_child_dies_with_its_owner_even_if_the_journal_was_removed() {
    let state = std::env::temp_dir().join(format!(
        "review-watcher-journal-gone-{}",
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
    let (child, other): (u32, u32) = loop {
        let l = lines.next().expect("the owner's lines").unwrap();
        if let Some(i) = l.find("CHILD ") {
            let mut pids = l[i + 6..].split_whitespace().map(|p| p.parse().unwrap());
            break (pids.next().unwrap(), pids.next().unwrap());
        }
    };
    let execed = poll_until(Duration::from_secs(5), || {
        std::fs::read_to_string(format!("/proc/{child}/comm")).is_ok_and(|c| c == "sleep\n")
            && running_mentioning("300.00092").len() == 1
            && running_mentioning("300.00093") == [other]
    });
    owner.kill().unwrap();
    owner.wait().unwrap();
    let gone = poll_until(Duration::from_secs(5), || !pid_running(child));
    let rest_gone = poll_until(Duration::from_secs(5), || {
        running_mentioning("300.0009").is_empty()
    });
    let left = running_mentioning("300.0009");
    for pid in left.iter().copied().chain([child]) {
        let p = rustix::process::Pid::from_raw(pid as i32).unwrap();
        let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
    }
    let _ = std::fs::remove_dir_all(&state);
    assert!(execed, "the child {child} never ran sleep");
    assert!(
        gone,
        "the kill_on_parent_death child {child} outlived its SIGKILLed owner"
    );
    assert!(
        rest_gone,
        "the owner's marked processes outlived it: {left:?}"
    );
}
