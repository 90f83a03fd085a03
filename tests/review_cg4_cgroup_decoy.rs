//! Review of 1058ba6: the sweep found a dead owner's cgroup members by their
//! `/proc/PID/cgroup` path having the cgroup's *name* as a component. A name is not a
//! cgroup: another cgroup with the same name elsewhere in the hierarchy (made by anyone
//! who may make cgroups there, root or a delegated user, and who can read the name in
//! cgroupfs) holds processes that are not the dead owner's. They were SIGTERMed and
//! SIGKILLed; `cgroup.kill` of the proven cgroup never reaches them. A member is now
//! one the proven cgroup (its fd) lists in `cgroup.procs`, at any level below it.
//!
//! Skipped, saying so, without a writable cgroup2.

use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use custodian_suite::containment::{cgroup_owner_args, owner_cgroup};
use custodian_suite::{LineChild, mentioning, poll_until, scratch_dir};
use tokio_custodian::Recovery;

const OWNER: &str = env!("CARGO_BIN_EXE_journal-owner");

#[test]
fn a_cgroup_with_the_dead_owner_s_cgroup_name_elsewhere_is_not_its() {
    let Some(parent) = custodian_suite::containment::owners_cgroup_dir() else {
        return;
    };
    let scratch = scratch_dir("cg4-decoy");
    let (state, base) = (scratch.join("state"), scratch.join("tmp"));
    std::fs::create_dir(&base).unwrap();
    let secs = format!("{}", 700_000 + std::process::id());
    let mut owner = LineChild::spawn(cgroup_owner_args(
        &mut Command::new(OWNER),
        &state,
        &base,
        &secs,
    ));
    let owner_pid = owner.pid();
    owner
        .wait_line("ready", Duration::from_secs(10))
        .expect("ready");
    let sup_cg = owner_cgroup(&parent, owner_pid);
    let name = sup_cg.file_name().unwrap();
    // Elsewhere: a cgroup with the same name, and a process that is no one's child of
    // the owner, started after it.
    let decoy_parent = parent.join(format!("review-cg4-decoy-{}", std::process::id()));
    let decoy = decoy_parent.join(name);
    std::fs::create_dir_all(&decoy).unwrap();
    // In a group of its own: not a partner of the sweeper's pipeline (those are spared).
    let mut bystander = Command::new("sleep")
        .arg("1000")
        .process_group(0)
        .spawn()
        .unwrap();
    let by_pid = bystander.id();
    std::fs::write(decoy.join("cgroup.procs"), by_pid.to_string()).unwrap();
    owner.kill();
    owner
        .wait_exit(Duration::from_secs(10))
        .expect("the owner dies");

    let report = Recovery::new()
        .state_dir(&state)
        .grace(Duration::from_millis(500))
        .run();
    std::thread::sleep(Duration::from_millis(100));
    let bystander_alive =
        bystander.try_wait().unwrap().is_none() && custodian_suite::pid_running(by_pid);
    // Clean up before asserting.
    let _ = bystander.kill();
    let _ = bystander.wait();
    let _ = poll_until(Duration::from_secs(5), || mentioning(&secs).is_empty());
    for pid in mentioning(&secs) {
        let pid = rustix::process::Pid::from_raw(pid as i32).unwrap();
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
    let _ = std::fs::remove_dir(&decoy);
    let _ = std::fs::remove_dir(&decoy_parent);
    let report = report.unwrap();
    eprintln!("{report}");
    let _ = std::fs::remove_dir_all(&scratch);
    assert!(
        bystander_alive,
        "a process in another cgroup that only shares the dead owner's cgroup name was \
         stopped\n{report}"
    );
    let journals = report.journals.as_ref().unwrap();
    assert_eq!(journals.cgroups.len(), 1, "{report}");
    assert!(report.is_clean(), "{report}");
}
