//! Review (fixed): the watcher's list of the children it serves kept a child after its
//! owner had reaped it, and the journal-less sweep took a process with its pid and start
//! time for it.
//!
//! The journal writes a `Gone` record at a reap ("its pid may be reused from now on"),
//! so a journal sweep never looks at a reaped child again. The watcher's list, told each
//! served child at its spawn, was never told of its reap: once the journal file was
//! removed and the owner died, `sweep_without_journal` looked for the escapees of every
//! child it had ever been told of. A reaped child's pid taken again within the same clock
//! tick (forced here with `ns_last_pid` in a new pid namespace) passes the pid and start
//! time check, and the escapee walk (which, unlike the group's, has no pidfd inode
//! check) SIGKILLed the children of an unrelated process that had left its group: here a
//! `setsid` child of a plain `std::process::Command` the owner started.
//!
//! The fix: the owner tells the watcher `GONE` at each served child's reap (as the
//! journal's `Gone` record), and the journal-less sweep drops a served child whose pidfd
//! inode is not the one the owner sent.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use custodian_suite::{poll_until, running_mentioning};
use tokio_custodian::Supervisor;

const OWNER: &str = "CUSTODIAN_REVIEW_WATCH2_SERVED_REAPED_OWNER";

fn stat_field(pid: u32, n: usize) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    rest.split_whitespace().nth(n - 3).map(str::to_owned)
}

fn kill(pid: u32) {
    let p = rustix::process::Pid::from_raw(pid as i32).unwrap();
    let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
}

/// The owner, not pid 1 of its own pid namespace: a served child is spawned and
/// reaped, and a plain process (with a `setsid` child) takes its pid in the same clock
/// tick; then the journal is removed and the owner SIGKILLs itself.
#[test]
#[ignore = "run by a_reaped_served_childs_pid_reused_in_the_same_tick_is_not_swept"]
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
        let sup = Supervisor::builder()
            .state_dir(&state)
            .watcher(true)
            .start()
            .unwrap();
        let mut victim = None;
        for tries in 1..=200 {
            let child = sup
                .command("sleep")
                .arg("300.00231")
                .kill_on_parent_death(true)
                .stdout(Stdio::null())
                .spawn()
                .unwrap();
            let pid = child.id().unwrap();
            let start = stat_field(pid, 22).unwrap();
            // SIGTERM, wait, reap: the pid is free again.
            let _ = child.close().await;
            std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string()).unwrap();
            let mut v = Command::new("sh")
                .args(["-c", "setsid sleep 300.00232 & exec sleep 300.00233"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()
                .unwrap();
            if v.id() == pid && stat_field(pid, 22).as_ref() == Some(&start) {
                victim = Some((v, tries));
                break;
            }
            // Another tick: try again.
            let _ = v.kill();
            let _ = v.wait();
            // Its `setsid` child, if it got that far (none forks once `sh` is reaped).
            for p in running_mentioning("300.00232") {
                kill(p);
            }
        }
        // Not waited for: this process SIGKILLs itself below, and the namespace's init
        // reaps what it leaves.
        #[allow(clippy::zombie_processes)]
        let (victim, tries) =
            victim.expect("no pid taken again within its start tick in 200 tries");
        assert!(poll_until(Duration::from_secs(5), || running_mentioning(
            "300.00232"
        )
        .len()
            == 1));
        for e in std::fs::read_dir(&state).unwrap() {
            std::fs::remove_file(e.unwrap().path()).unwrap();
        }
        println!("READY {} after {tries} tries", victim.id());
        let me = rustix::process::getpid();
        let _ = rustix::process::kill_process(me, rustix::process::Signal::KILL);
        std::future::pending::<()>().await;
    });
}

#[test]
fn a_reaped_served_childs_pid_reused_in_the_same_tick_is_not_swept() {
    let state = std::env::temp_dir().join(format!(
        "review-watch2-served-reaped-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&state);
    // `sh` is the namespace's init and outlives the owner by 3 s: its exit ends every
    // process left in the namespace.
    let mut ns = Command::new("unshare")
        .args(["-p", "-f", "--mount-proc", "sh", "-c"])
        .arg("\"$0\" --exact owner --ignored --nocapture --test-threads=1; sleep 3")
        .arg(std::env::current_exe().unwrap())
        .env(OWNER, &state)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let ready = BufReader::new(ns.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .find(|l| l.contains("READY "));
    eprintln!("{ready:?}");
    // The watcher's sweep takes milliseconds; a wrong one has SIGKILLed the escapee.
    std::thread::sleep(Duration::from_secs(1));
    let escapee = running_mentioning("300.00232");
    let served = running_mentioning("300.00231");
    let _ = ns.wait();
    let _ = std::fs::remove_dir_all(&state);
    assert!(
        ready.is_some(),
        "the owner did not get a pid reused within its start tick"
    );
    assert!(served.is_empty(), "served children left: {served:?}");
    assert_eq!(
        escapee.len(),
        1,
        "the watcher SIGKILLed the setsid child of a process that took a reaped served \
         child's pid"
    );
}
