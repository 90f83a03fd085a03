//! Review of 1058ba6: a dead owner's cgroup with a *threaded* cgroup below it (a child
//! that splits its threads across cgroups; root or a delegated child may make one). A
//! threaded cgroup's `cgroup.procs` cannot be read (`EOPNOTSUPP`: its threaded domain,
//! above it, lists those processes). The sweep reads `cgroup.procs` at every level, to
//! find the sweeper there before `cgroup.kill` (and, since 1058ba6, to find the members
//! it SIGTERMs first): the error made it give up on the whole cgroup, every sweep, for
//! as long as the threaded cgroup was there. No SIGTERM, no kill: the escapee (a
//! cleared environment, a session of its own) ran on, and the journal was kept.
//! A threaded cgroup lists nothing of its own; the domain above it lists its processes.
//!
//! Skipped, saying so, without a writable cgroup2 where a threaded cgroup can be made.

use std::process::Command;
use std::time::Duration;

use custodian_suite::containment::{cgroup_owner_args, owner_cgroup};
use custodian_suite::{LineChild, entries, mentioning, poll_until, scratch_dir};
use tokio_custodian::Recovery;

const OWNER: &str = env!("CARGO_BIN_EXE_journal-owner");

#[test]
fn a_threaded_cgroup_below_a_dead_owner_s_cgroup_does_not_stop_its_sweep() {
    let Some(parent) = custodian_suite::containment::owners_cgroup_dir() else {
        return;
    };
    let scratch = scratch_dir("cg4-threaded");
    let (state, base, trap) = (
        scratch.join("state"),
        scratch.join("tmp"),
        scratch.join("trap"),
    );
    std::fs::create_dir(&base).unwrap();
    std::fs::create_dir(&trap).unwrap();
    let secs = format!("{}", 900_000 + std::process::id());
    let mut owner = LineChild::spawn(
        cgroup_owner_args(&mut Command::new(OWNER), &state, &base, &secs)
            .env("CUSTODIAN_TEST_TRAP", &trap),
    );
    let owner_pid = owner.pid();
    owner
        .wait_line("ready", Duration::from_secs(10))
        .expect("ready");
    assert!(
        poll_until(Duration::from_secs(10), || !entries(&trap).is_empty()),
        "the escapee never set its trap"
    );
    let sup_cg = owner_cgroup(&parent, owner_pid);
    let mut kids = entries(&sup_cg);
    kids.retain(|e| e.starts_with("child-"));
    let threaded = sup_cg.join(&kids[0]).join("threads");
    std::fs::create_dir(&threaded).unwrap();
    if std::fs::write(threaded.join("cgroup.type"), "threaded").is_err() {
        eprintln!("skipped: no threaded cgroup here");
        let _ = std::fs::remove_dir(&threaded);
        owner.kill();
        let _ = owner.wait_exit(Duration::from_secs(10));
        let _ = Recovery::new().state_dir(&state).run();
        let _ = std::fs::remove_dir_all(&scratch);
        return;
    }
    owner.kill();
    owner
        .wait_exit(Duration::from_secs(10))
        .expect("the owner dies");

    let report = Recovery::new()
        .state_dir(&state)
        .grace(Duration::from_secs(5))
        .run()
        .unwrap();
    eprintln!("{report}");
    let mut termed = entries(&trap);
    termed.retain(|e| e.starts_with("termed-"));
    let gone = poll_until(Duration::from_secs(5), || mentioning(&secs).is_empty());
    // Clean up before asserting: the processes, then the cgroups, deepest first.
    let left = mentioning(&secs);
    for pid in &left {
        let pid = rustix::process::Pid::from_raw(*pid as i32).unwrap();
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
    let cgroup_left = sup_cg.exists();
    if cgroup_left {
        let _ = std::fs::write(sup_cg.join("cgroup.kill"), "1");
        let _ = poll_until(Duration::from_secs(5), || mentioning(&secs).is_empty());
        let _ = std::fs::remove_dir(&threaded);
        for k in &kids {
            let _ = std::fs::remove_dir(sup_cg.join(k));
        }
        let _ = std::fs::remove_dir(&sup_cg);
    }
    let _ = std::fs::remove_dir_all(&scratch);
    assert!(!cgroup_left, "the dead owner's cgroup is left\n{report}");
    assert!(gone && left.is_empty(), "still running: {left:?}\n{report}");
    assert_eq!(termed.len(), 1, "the escapee got no SIGTERM\n{report}");
    assert!(report.is_clean(), "{report}");
}
