//! The crash journal is acted on at most once (issue 18): a kept journal never signals
//! again (the rekill scenario, with a pid forced into reuse by `ns_last_pid` in a new pid
//! namespace); a process the sweep cannot kill is a survivor, not "stopped", and its
//! record stays without re-arming; the sweeper and its ancestors are never signalled;
//! each child is given its recorded grace, once.
//!
//! Parts that must run as another user or in another namespace run this test binary
//! again (its `role` test) under `setpriv` or `unshare`, with the part named in
//! `CUSTODIAN_LIFECYCLE_ROLE`. What the sweep makes of each record is in
//! `crash_journal_records.rs`; roots and the state dir in `crash_journal_roots.rs`.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use custodian_suite::journal::{
    Reaped, as_nobody, child_record, chown, dead_owner, fake_root, line_of, marker, private_dir,
    role_cmd, root_record, sleeper, start_time, stat_field, sweep, sweep_role, write_journal,
};
use custodian_suite::journal_frame as frame;
use custodian_suite::{pid_running, poll_until, scratch_dir, serial};
use tokio_custodian::{SpareReason, SurvivorReason, SweepReport};

const ROLE: &str = "CUSTODIAN_LIFECYCLE_ROLE";
const STATE: &str = "CUSTODIAN_LIFECYCLE_STATE";

/// The parts run in another process (see the module docs); does nothing otherwise.
#[test]
#[ignore = "run by the other tests, in another process"]
fn role() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    match role.as_str() {
        "sweep" => sweep_role(STATE),
        "rekill" => rekill_in_a_new_pid_namespace(),
        other => panic!("unknown role {other}"),
    }
}

/// Item 1, inside a new pid namespace (this process is its pid 1): a kept journal's
/// child is stopped once; its pid is then forced into reuse by a shell that leads its
/// own group and exits, leaving a member in that group. The second sweep must not touch
/// it (before: it matched "a member of the recorded group, younger than the record").
fn rekill_in_a_new_pid_namespace() {
    let scratch = PathBuf::from(std::env::var(STATE).unwrap());
    let state = private_dir(&scratch.join("state"));
    // A root recorded through a symlinked parent: refused, so the journal is kept.
    let real = private_dir(&scratch.join("real"));
    let dir = fake_root(&real, 'c');
    std::os::unix::fs::symlink(&real, scratch.join("link")).unwrap();
    let recorded = scratch.join("link").join(dir.file_name().unwrap());
    let mut first = Command::new("sleep")
        .arg("1000")
        .process_group(0)
        .spawn()
        .unwrap();
    let pid = first.id();
    let journal = write_journal(
        &state,
        &[
            dead_owner(),
            root_record(&recorded),
            child_record(pid, start_time(pid)),
        ]
        .concat(),
    );
    let report = sweep(&state);
    assert_eq!(report.stopped.len(), 1, "{report}");
    assert!(
        first.wait().unwrap().code().is_none(),
        "stopped by a signal"
    );
    assert!(
        journal.exists(),
        "kept: its root could not be removed\n{report}"
    );
    // The pid again, for an unrelated group whose leader exits at once.
    std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string()).unwrap();
    let mut leader = Command::new("sh")
        .args(["-c", "sleep 1000 & exit 0"])
        .process_group(0)
        .spawn()
        .unwrap();
    assert_eq!(leader.id(), pid, "ns_last_pid did not give the pid again");
    leader.wait().unwrap();
    let mut member = 0;
    assert!(poll_until(Duration::from_secs(5), || {
        member = std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .find(|&p| p != pid && pid_running(p) && stat_field(p, 5) == u64::from(pid))
            .unwrap_or(0);
        member != 0
    }));
    let report = sweep(&state);
    assert!(
        pid_running(member),
        "an unrelated process in a reused group was signalled by a kept journal: {report}"
    );
    assert!(report.stopped.is_empty(), "{report}");
    assert!(journal.exists(), "still kept: the root is still there");
    let _ = rustix::process::kill_process(
        rustix::process::Pid::from_raw(member as i32).unwrap(),
        rustix::process::Signal::KILL,
    );
}

#[test]
fn a_kept_journal_never_signals_again_even_when_its_pid_is_reused() {
    let _s = serial();
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: a pid namespace and ns_last_pid need root");
        return;
    }
    let scratch = scratch_dir("lifecycle-rekill");
    let mut inner = role_cmd("role", ROLE, "rekill");
    inner.env(STATE, &scratch);
    let mut cmd = Command::new("unshare");
    cmd.args(["--pid", "--fork", "--mount-proc", "--"])
        .arg(inner.get_program())
        .args(inner.get_args())
        .envs(inner.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .stdin(Stdio::null());
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_dir_all(&scratch).unwrap();
}

#[test]
fn a_member_the_sweep_cannot_kill_is_a_survivor_and_never_re_arms() {
    let _s = serial();
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: needs root (a root-owned member, a sweep as nobody)");
        return;
    }
    let scratch = scratch_dir("lifecycle-survivor");
    std::fs::set_permissions(&scratch, std::fs::Permissions::from_mode(0o755)).unwrap();
    let state = private_dir(&scratch.join("state"));
    // A recorded member that became root: the sweep, as nobody, cannot signal it.
    let mut member = sleeper();
    let pid = member.0.id();
    let journal = write_journal(
        &state,
        &[dead_owner(), child_record(pid, start_time(pid))].concat(),
    );
    chown(&state, 65534);
    chown(&journal, 65534);
    let mut cmd = role_cmd("role", ROLE, "sweep");
    cmd.env(STATE, &state);
    let report: SweepReport = serde_json::from_str(&line_of(as_nobody(&cmd), "REPORT ")).unwrap();
    assert!(pid_running(pid));
    assert!(!report.is_clean(), "a survivor is not clean: {report}");
    assert!(
        report.stopped.is_empty(),
        "a survivor is not stopped: {report}"
    );
    assert!(journal.exists(), "its record is kept: {report}");
    assert_eq!(report.survivors.len(), 1, "{report}");
    assert_eq!(report.survivors[0].pid, pid);
    assert_eq!(report.survivors[0].reason, SurvivorReason::SignalRefused);
    assert!(report.to_string().contains(&format!("survivor pid {pid}")));
    // A later sweep, even one that could signal it, only looks.
    chown(&state, 0);
    chown(&journal, 0);
    let report = sweep(&state);
    assert!(pid_running(pid), "a kept record re-armed: {report}");
    assert!(report.stopped.is_empty() && !report.is_clean(), "{report}");
    assert_eq!(
        report
            .survivors
            .iter()
            .map(|s| (s.pid, s.reason))
            .collect::<Vec<_>>(),
        vec![(pid, SurvivorReason::StillRunningSinceEarlierSweep)]
    );
    assert!(journal.exists());
    // Once it is gone, the journal goes too.
    member.0.kill().unwrap();
    member.0.wait().unwrap();
    let report = sweep(&state);
    assert!(report.is_clean() && !journal.exists(), "{report}");
    std::fs::remove_dir_all(&scratch).unwrap();
}

#[test]
fn a_sweep_from_inside_the_dead_tree_spares_itself_and_its_ancestors() {
    let _s = serial();
    let scratch = scratch_dir("lifecycle-self");
    let state = private_dir(&scratch.join("state"));
    let base = private_dir(&scratch.join("tmp"));
    let dir = fake_root(&base, 'c');
    let (go, out) = (scratch.join("go"), scratch.join("out"));
    // The operator's shell under a dead owner: in a recorded group, with its marker.
    let role = role_cmd("role", ROLE, "sweep");
    let mut shell = Command::new("sh")
        .args([
            "-c",
            "while [ ! -e \"$GO\" ]; do sleep 0.01; done; \"$@\" > \"$OUT\" 2>&1",
            "sh",
        ])
        .arg(role.get_program())
        .args(role.get_args())
        .env(ROLE, "sweep")
        .env(STATE, &state)
        .env("GO", &go)
        .env("OUT", &out)
        .env("CUSTODIAN_JOURNAL", marker())
        .process_group(0)
        .spawn()
        .unwrap();
    let sh = shell.id();
    let journal = write_journal(
        &state,
        &[
            dead_owner(),
            root_record(&dir),
            child_record(sh, start_time(sh)),
        ]
        .concat(),
    );
    std::fs::write(&go, b"").unwrap();
    let status = shell.wait().unwrap();
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    assert!(
        status.success(),
        "the sweep's shell was stopped ({status}):\n{text}"
    );
    let json = text
        .lines()
        .find_map(|l| l.split_once("REPORT ").map(|(_, rest)| rest))
        .unwrap_or_else(|| panic!("the sweep did not finish:\n{text}"));
    let report: SweepReport = serde_json::from_str(json).unwrap();
    assert!(!dir.exists() && !journal.exists(), "{report}");
    assert_eq!(report.removed, vec![dir.clone()], "{report}");
    assert!(
        report
            .spared
            .iter()
            .any(|s| s.reason == SpareReason::Sweeper),
        "{report}"
    );
    assert!(
        report
            .spared
            .iter()
            .any(|s| s.pid == sh && s.reason == SpareReason::SweeperAncestor),
        "{report}"
    );
    std::fs::remove_dir_all(&scratch).unwrap();
}

#[test]
fn each_child_is_given_its_recorded_grace() {
    let _s = serial();
    let scratch = scratch_dir("lifecycle-grace");
    let state = private_dir(&scratch.join("state"));
    // Ignores SIGTERM: only SIGKILL ends it, after its grace.
    let stubborn = Reaped(
        Command::new("sh")
            .args(["-c", "trap '' TERM; while :; do sleep 0.05; done"])
            .process_group(0)
            .spawn()
            .unwrap(),
    );
    let pid = stubborn.0.id();
    std::thread::sleep(Duration::from_millis(50)); // the trap is set
    let mut p = vec![9];
    p.extend(pid.to_le_bytes());
    p.extend(start_time(pid).to_le_bytes());
    p.extend(pid.to_le_bytes());
    p.extend(100u64.to_le_bytes()); // 100 ms
    write_journal(&state, &[dead_owner(), frame(&p)].concat());
    let t = std::time::Instant::now();
    // The sweep's own grace would be a minute: the record's 100 ms applies.
    let recovery = tokio_custodian::Recovery::new().state_dir(&state);
    let report = recovery.grace(Duration::from_secs(60)).run().unwrap();
    let report = report.journals.unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "{:?} {report}",
        t.elapsed()
    );
    assert_eq!(report.kill_needed(), 1, "{report}");
    assert!(!pid_running(pid));
    drop(stubborn);
    std::fs::remove_dir_all(&scratch).unwrap();
}
