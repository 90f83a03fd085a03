//! Review of the recovery's identities in a pid namespace whose `/proc` is not its own
//! (`unshare -p -f` without `--mount-proc`, a common mistake): `/proc` then names
//! processes by the parent namespace's pids, while `pidfd_open` and every pid the
//! process holds are its own namespace's. A sweep run there read a marked process's
//! stat and start time at its pid in `/proc` (H), then opened `pidfd_open(H)`: another
//! process, the one with pid H in the sweeper's namespace, proven by the first one's
//! start time, and SIGTERMed through that pidfd. Forced here with `ns_last_pid` (which
//! acts on the writer's own namespace) so that an unrelated `sleep` has that pid.
//!
//! Fixed: a sweep first checks that `/proc/self/stat` names this process by its own pid
//! (`procfs::self_and_ancestors`), and fails with an error otherwise, signalling
//! nothing. Skipped, saying so, where `unshare -p` is not allowed (not root).

use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use custodian_suite::journal::{dead_owner, marker, private_dir, role_cmd, write_journal};
use custodian_suite::{scratch_dir, serial};

const ROLE: &str = "CUSTODIAN_FINAL4_FOREIGN_PROC";
const STATE: &str = "CUSTODIAN_FINAL4_FOREIGN_PROC_STATE";

/// The pid in `/proc` (the parent namespace's) of the process carrying `var`.
fn proc_pid_of(var: &[u8]) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.find_map(|e| {
        let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
        env.split(|&b| b == 0).any(|v| v == var).then_some(pid)
    })
}

fn runs(child: &mut std::process::Child) -> bool {
    child.try_wait().unwrap().is_none()
}

/// Inside the namespace (pid 1 there), with the parent's `/proc`.
#[test]
#[ignore = "a role of foreign_proc_pids_never_lead_to_a_signal"]
fn foreign_proc_role() {
    let Ok(state) = std::env::var(STATE) else {
        return;
    };
    let var = format!("CUSTODIAN_OWNER={}-1", marker());
    let mut marked = Command::new("sleep")
        .arg("1000")
        .env("CUSTODIAN_OWNER", format!("{}-1", marker()))
        .process_group(0)
        .spawn()
        .unwrap();
    let mut h = None;
    for _ in 0..500 {
        h = proc_pid_of(var.as_bytes());
        if h.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let h = h.expect("the marked sleep in /proc");
    // The next pid of *this* namespace is H: an unrelated process takes it.
    std::fs::write("/proc/sys/kernel/ns_last_pid", (h - 1).to_string()).unwrap();
    let mut victim = Command::new("sleep").arg("1000").spawn().unwrap();
    if victim.id() != h {
        println!("RESULT skip: the victim got pid {} not {h}", victim.id());
        let _ = (marked.kill(), victim.kill());
        let _ = (marked.wait(), victim.wait());
        return;
    }
    let mut bytes = dead_owner();
    bytes.extend(custodian_suite::journal::child_record(u32::MAX - 1, 1));
    write_journal(std::path::Path::new(&state), &bytes);
    let swept = tokio_custodian::Recovery::new()
        .state_dir(&state)
        .grace(Duration::from_secs(1))
        .run();
    std::thread::sleep(Duration::from_millis(200));
    let (victim_runs, marked_runs) = (runs(&mut victim), runs(&mut marked));
    let _ = (marked.kill(), victim.kill());
    let _ = (marked.wait(), victim.wait());
    println!(
        "RESULT victim_runs={victim_runs} marked_runs={marked_runs} swept_ok={} {:?}",
        swept.is_ok(),
        swept.map(|r| r.journals).map_err(|e| e.to_string())
    );
}

#[test]
fn foreign_proc_pids_never_lead_to_a_signal() {
    let _s = serial();
    let probe = Command::new("unshare").args(["-p", "-f", "true"]).status();
    if !probe.is_ok_and(|s| s.success()) {
        eprintln!("skipped: unshare -p is not allowed here");
        return;
    }
    let scratch = scratch_dir("final4-foreign-proc");
    let state = private_dir(&scratch.join("state"));
    let role = role_cmd("foreign_proc_role", ROLE, "1");
    let mut cmd = Command::new("unshare");
    cmd.args(["-p", "-f", "--"])
        .arg(role.get_program())
        .args(role.get_args())
        .env(STATE, &state);
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    std::fs::remove_dir_all(&scratch).unwrap();
    let result = stdout
        .lines()
        .find_map(|l| l.split_once("RESULT ").map(|(_, r)| r.to_owned()))
        .unwrap_or_else(|| {
            panic!(
                "no result:\n{stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    eprintln!("{result}");
    if result.starts_with("skip") {
        eprintln!("skipped: {result}");
        return;
    }
    assert!(
        result.starts_with("victim_runs=true"),
        "an unproven process (another one with the pid that /proc gave) was signalled: {result}"
    );
}
