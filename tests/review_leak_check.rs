//! Review of `tokio_custodian::testing::LeakCheck` (issue 20): it must only observe.
//!
//! Defect (not fixed): to see escapees, a check makes the process a child subreaper
//! while it runs. A `setsid` grandchild that ends by itself after its parent exited is
//! then re-parented to the test process instead of init, and nothing reaps it: the
//! check reports a zombie that exists only because of the check, and the zombie stays
//! in the process after it. Reaping it needs proof that it was adopted (not a raw child
//! the test may still `wait` for): a process seen at depth >= 2 that is now a direct
//! child was re-parented, but a short-lived one is never seen before it ends.

use std::process::Stdio;
use std::time::Duration;

use tokio_custodian::testing::LeakCheck;

/// `sh` starts a `setsid` grandchild that ends by itself 100 ms later, and exits:
/// without a check the grandchild goes to init, which reaps it. Nothing is left.
#[test]
#[ignore = "defect: the check's child-subreaper setting makes a finished daemon a zombie of the test process, reported as a leak"]
fn a_daemon_that_ended_by_itself_is_not_a_leak_and_leaves_no_zombie() {
    let rt = tokio::runtime::Builder::new_current_thread();
    let (pid, report) = LeakCheck::builder().no_temp_dir().run(rt, async || {
        let out = std::process::Command::new("sh")
            .args([
                "-c",
                "setsid sleep 0.1 >/dev/null 2>&1 </dev/null & echo $!",
            ])
            .stderr(Stdio::null())
            .output()
            .unwrap();
        let pid: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        pid
    });
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    assert!(report.is_clean(), "{report}");
    assert!(
        stat.is_empty(),
        "the grandchild is left as a zombie of this process: {stat}"
    );
}
