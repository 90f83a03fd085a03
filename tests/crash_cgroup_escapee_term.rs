//! The cgroup tier after a SIGKILL: what left its group *and* cleared its environment
//! (`setsid env -i`: no group and no marker finds it) gets the sweep's SIGTERM and grace
//! through the dead owner's proven cgroup, not only `cgroup.kill`'s SIGKILL; and the
//! tier's children carry no owner marker (their cgroup proves descent, and the marker
//! made std copy the whole environment at every spawn). Then nothing is left: no
//! process, no cgroup, no journal.
//!
//! Before this, the escapee was found only by `cgroup.kill` (no SIGTERM, no `termed`
//! file) and every child carried `CUSTODIAN_OWNER`. Skipped, saying so, without a
//! writable cgroup2.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use custodian_suite::containment::{cgroup_owner_args, owner_cgroup};
use custodian_suite::{LineChild, entries, mentioning, poll_until, scratch_dir};
use tokio_custodian::Recovery;

const OWNER: &str = env!("CARGO_BIN_EXE_journal-owner");

fn with_prefix(dir: &Path, prefix: &str) -> Vec<String> {
    let mut v = entries(dir);
    v.retain(|e| e.starts_with(prefix));
    v
}

fn environ_has_marker(pid: u32) -> bool {
    let env = std::fs::read(format!("/proc/{pid}/environ")).expect("environ");
    env.split(|&b| b == 0)
        .any(|kv| kv.starts_with(b"CUSTODIAN_OWNER=") || kv.starts_with(b"CUSTODIAN_JOURNAL="))
}

#[test]
fn a_dead_owner_s_cleared_env_escapee_gets_sigterm_through_its_cgroup() {
    let Some(parent) = custodian_suite::containment::owners_cgroup_dir() else {
        return;
    };
    let scratch = scratch_dir("cgroup-escapee-term");
    let (state, base, trap) = (
        scratch.join("state"),
        scratch.join("tmp"),
        scratch.join("trap"),
    );
    std::fs::create_dir(&base).unwrap();
    std::fs::create_dir(&trap).unwrap();
    let secs = format!("{}", 600_000 + std::process::id());
    let mut owner = LineChild::spawn(
        cgroup_owner_args(&mut Command::new(OWNER), &state, &base, &secs)
            .env("CUSTODIAN_TEST_TRAP", &trap),
    );
    let owner_pid = owner.pid();
    let child: u32 = owner
        .wait_line("child ", Duration::from_secs(10))
        .expect("child line")
        .trim()
        .parse()
        .expect("child pid");
    owner
        .wait_line("ready", Duration::from_secs(10))
        .expect("ready");
    assert!(
        poll_until(Duration::from_secs(10), || !with_prefix(&trap, "ready-")
            .is_empty()),
        "the escapee never set its trap"
    );
    let marked = environ_has_marker(child);
    let ready = with_prefix(&trap, "ready-");
    let escapee: u32 = ready[0]["ready-".len()..].parse().unwrap();
    owner.kill();
    owner
        .wait_exit(Duration::from_secs(10))
        .expect("the owner dies");
    owner_cgroup(&parent, owner_pid);

    let report = Recovery::new()
        .state_dir(&state)
        .grace(Duration::from_secs(5))
        .run()
        .unwrap();
    eprintln!("{report}");
    let journals = report.journals.as_ref().unwrap();
    let termed = with_prefix(&trap, "termed-");
    let gone = poll_until(Duration::from_secs(5), || {
        mentioning(&secs).is_empty() && !custodian_suite::pid_running(escapee)
    });
    let left = mentioning(&secs);
    for pid in &left {
        let pid = rustix::process::Pid::from_raw(*pid as i32).unwrap();
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
    assert_eq!(
        termed,
        vec![format!("termed-{escapee}")],
        "the escapee got no SIGTERM (only cgroup.kill's SIGKILL?)\n{report}"
    );
    assert!(gone && left.is_empty(), "still running: {left:?}\n{report}");
    assert!(!marked, "the cgroup tier's child carries the owner marker");
    assert!(
        journals
            .stopped
            .iter()
            .any(|g| g.pgid.is_none() && g.processes >= 1),
        "no stop counted for the cgroup's members\n{report}"
    );
    assert_eq!(journals.cgroups.len(), 1, "{report}");
    assert!(
        with_prefix(&parent, &format!("custodian-{owner_pid}-")).is_empty(),
        "the owner's cgroup is left"
    );
    assert!(report.is_clean(), "{report}");
    assert!(
        entries(&state).is_empty(),
        "journals left: {:?}",
        entries(&state)
    );
    let again = Recovery::new().state_dir(&state).run().unwrap();
    assert!(
        again.journals.as_ref().unwrap().dead_owners.is_empty(),
        "{again}"
    );
    let _ = std::fs::remove_dir_all(&scratch);
}
