//! Review: the sweep spares its own process group (`SpareReason::SweeperGroup`, meant for
//! a pipeline's partners: `custodian sweep | tee log`). When the sweep runs *inside a
//! dead owner's recorded group* (a script without job control, itself a recorded child
//! or in its group, runs `custodian sweep` after its owner was SIGKILLed), that rule
//! spares the whole recorded group: every other member (a background worker of the
//! script) is left running, and the journal is then marked swept and dropped, so no
//! later sweep from outside ever stops it. Before the rule only the sweeper and its
//! ancestors were spared. Fixed: the sweeper's own group is spared only when it is not a
//! recorded group (there a pipeline partner and a worker cannot be told apart, and the
//! group is the dead owner's to stop).

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use custodian_suite::journal_frame as frame;
use custodian_suite::{poll_until, scratch_dir, serial};

const SWEEP: &str = "CUSTODIAN_REVIEW_SWEEPER_IN_GROUP";
const WORKER: [&str; 2] = ["sleep", "300.00091"];

fn start_time(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    s[s.rfind(')').unwrap() + 2..]
        .split(' ')
        .nth(19)
        .unwrap()
        .parse()
        .unwrap()
}

fn workers() -> Vec<u32> {
    let want: Vec<u8> = WORKER
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == want))
        .collect()
}

/// The sweep, run as the recorded child itself (it `exec`s this test binary).
#[test]
#[ignore = "run by review_sweeper_in_group's main test"]
fn sweeper() {
    let Some(state) = std::env::var_os(SWEEP) else {
        return;
    };
    let report = tokio_custodian::Recovery::new()
        .state_dir(state)
        .grace(Duration::from_millis(200))
        .run()
        .unwrap();
    println!("{report}");
}

#[test]
fn a_sweep_inside_a_recorded_group_does_not_spare_the_rest_of_it_for_good() {
    let _s = serial();
    let scratch = scratch_dir("review-sweeper-in-group");
    let state = scratch.join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    let me = std::env::current_exe().unwrap();
    let script = format!(
        "{} {} >/dev/null </dev/null & read go; exec \"$0\" --exact sweeper --ignored --nocapture --test-threads=1",
        WORKER[0], WORKER[1]
    );
    // The dead owner's recorded child: its group's leader, with a worker in the group.
    let mut child = Command::new("sh")
        .args(["-c", &script])
        .arg(&me)
        .env(SWEEP, &state)
        .process_group(0)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    assert!(poll_until(Duration::from_secs(5), || workers().len() == 1));
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    let mut owner = vec![1];
    owner.extend(std::process::id().to_le_bytes());
    owner.extend(1u64.to_le_bytes());
    owner.extend(boot.trim().as_bytes());
    let mut rec = vec![9];
    rec.extend(pid.to_le_bytes());
    rec.extend(start_time(pid).to_le_bytes());
    rec.extend(pid.to_le_bytes());
    rec.extend(0u64.to_le_bytes());
    let mut bytes = frame(&owner);
    bytes.extend(frame(&rec));
    let journal = state.join(format!("{}-1-0123456789abcdef.journal", std::process::id()));
    std::fs::write(&journal, bytes).unwrap();
    std::fs::set_permissions(&journal, std::fs::Permissions::from_mode(0o600)).unwrap();
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    let left = workers();
    let journal_kept = std::fs::read_dir(&state).unwrap().count() > 0;
    for p in &left {
        let p = rustix::process::Pid::from_raw(*p as i32).unwrap();
        let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
    }
    std::fs::remove_dir_all(&scratch).unwrap();
    assert!(
        left.is_empty() || journal_kept,
        "the recorded group's worker {left:?} was spared and its journal dropped: {report}"
    );
}
