//! With `kill_on_parent_death`, a child outlives the thread that spawned it but not its
//! owner process killed with SIGKILL (no destructor, no shutdown runs). The owner is the
//! `process-owner` helper binary.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use custodian_suite::{pid_running, wait_groups_gone};

/// Starts the owner, returns it and its child's pid once the owner's blocking-pool
/// thread that forked the child has retired.
fn start_owner(args: &[&str]) -> (Owner, u32) {
    let mut owner = Command::new(env!("CARGO_BIN_EXE_process-owner"))
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(owner.stdout.take().unwrap()).lines();
    let pid: u32 = lines.next().unwrap().unwrap().parse().unwrap();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    (Owner(owner), pid)
}

/// The owner process, SIGKILLed and reaped when dropped, so that a failed assertion
/// does not leave it running.
struct Owner(std::process::Child);

impl Drop for Owner {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sigkill(owner: &mut Owner) {
    owner.0.kill().unwrap(); // SIGKILL
    owner.0.wait().unwrap();
}

#[test]
fn owner_killed_with_sigkill_leaves_no_child() {
    let (mut owner, pid) = start_owner(&[]);
    // Not killed early when the spawning pool thread exited.
    assert!(
        pid_running(pid),
        "child died with the thread that spawned it"
    );
    sigkill(&mut owner);
    let left = wait_groups_gone(&[pid], Duration::from_secs(5));
    assert!(left.is_empty(), "child outlived its owner: {left:?}");
}

#[test]
fn without_it_the_child_outlives_a_sigkilled_owner() {
    // The control case: shows the test above can fail.
    let (mut owner, pid) = start_owner(&["--no-pdeathsig"]);
    sigkill(&mut owner);
    std::thread::sleep(Duration::from_millis(200));
    let alive = pid_running(pid);
    // Clean up the orphan (its pgid is its pid, and it is still running).
    if alive {
        let pgid = rustix::process::Pid::from_raw(pid as i32).unwrap();
        rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL).unwrap();
    }
    assert!(
        alive,
        "the orphan should have survived without the parent-death signal"
    );
    assert!(wait_groups_gone(&[pid], Duration::from_secs(5)).is_empty());
}
