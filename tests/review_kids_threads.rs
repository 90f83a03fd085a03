//! Review of the child stop's group scan: a group member whose main thread has exited
//! while its other threads run shows state `Z` in `/proc/PID/stat`, like a zombie; its
//! `num_threads` (field 20) says it still runs. Counted as gone, the scan ended the
//! stop's grace at once and the reap's SIGKILL to the group killed it mid-way.

use std::time::{Duration, Instant};

use custodian_suite::{group_members, pid_exists, scratch_dir, serial_process_test};
use tokio_custodian::Supervisor;

/// A process whose main thread exits at once (the raw `exit` syscall ends one thread)
/// while another thread waits for SIGTERM, takes 300 ms, then writes `ok` to `argv[1]`
/// and exits the whole process.
const MAIN_THREAD_EXITS: &str = r#"
import ctypes, signal, sys, threading, time
libc = ctypes.CDLL(None)
exit_thread, exit_group = {"x86_64": (60, 231), "aarch64": (93, 94)}[__import__("platform").machine()]
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
def worker():
    signal.sigwait({signal.SIGTERM})
    time.sleep(0.3)
    with open(sys.argv[1], "w") as f:
        f.write("ok\n")
    libc.syscall(exit_group, 0)
threading.Thread(target=worker).start()
libc.syscall(exit_thread, 0)
"#;

/// Field `n` (1-based) of `/proc/PID/stat`, if it can be read.
fn stat_field(pid: u32, n: usize) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(n - 3).map(str::to_owned)
}

#[test]
fn a_member_whose_main_thread_exited_still_gets_its_grace() {
    if std::process::Command::new("python3")
        .arg("-c")
        .arg("import ctypes")
        .status()
        .map_or(true, |s| !s.success())
    {
        eprintln!("skipped: no python3 with ctypes");
        return;
    }
    serial_process_test(async || {
        let scratch = scratch_dir("review-kids-threads");
        let (script, done, pidfile) = (
            scratch.join("main_thread_exits.py"),
            scratch.join("done"),
            scratch.join("pid"),
        );
        std::fs::write(&script, MAIN_THREAD_EXITS).unwrap();
        let sup = Supervisor::builder().start().unwrap();
        let t = Instant::now();
        let (pgid, member) = sup
            .scope("threads", async |s| {
                let child = s
                    .command("sh")
                    .arg("-c")
                    .arg(format!(
                        "python3 {} {} & echo $! > {}; exec sleep 1000",
                        script.display(),
                        done.display(),
                        pidfile.display()
                    ))
                    .grace(Duration::from_secs(10))
                    .spawn()
                    .unwrap();
                let pgid = child.process_group();
                // Until the member's main thread has exited: `Z`, yet two threads.
                let until = Instant::now() + Duration::from_secs(10);
                let member = loop {
                    let member = std::fs::read_to_string(&pidfile)
                        .ok()
                        .and_then(|p| p.trim().parse::<u32>().ok());
                    if let Some(m) = member
                        && stat_field(m, 3).as_deref() == Some("Z")
                        && stat_field(m, 20).as_deref() == Some("2")
                    {
                        break m;
                    }
                    assert!(Instant::now() < until, "the member never got ready");
                    tokio::time::sleep(Duration::from_millis(5)).await;
                };
                drop(child); // released by the scope's end: SIGTERM, the grace
                (pgid, member)
            })
            .await
            .unwrap();
        let took = t.elapsed();
        let said = std::fs::read_to_string(&done).unwrap_or_default();
        std::fs::remove_dir_all(&scratch).unwrap();
        // Before: the scan counted the member gone, and the group's SIGKILL cut it short.
        assert_eq!(said, "ok\n", "the member was SIGKILLed during its grace");
        assert!(
            took < Duration::from_secs(9),
            "waited out the grace: {took:?}"
        );
        assert!(
            group_members(&[pgid]).is_empty(),
            "the group outlived its stop"
        );
        assert!(!pid_exists(member) || stat_field(member, 3).as_deref() == Some("Z"));
        sup.shutdown().await;
        vec![pgid]
    });
}
