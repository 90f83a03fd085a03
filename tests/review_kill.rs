//! Review of the cgroup containment tier's kills and removals, on real processes and
//! this machine's cgroup2 mount. Skipped, saying so, where the tier is not available.

use std::path::PathBuf;
use std::time::Duration;

use custodian_suite::{poll_until, serial, sleeps, zombie_children};
use tokio_custodian::{Containment, ContainmentTier, Supervisor};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A sleep length unique to this run and `n`.
fn secs(n: u32) -> String {
    format!("{}", 300_000 + std::process::id() * 10 + n)
}

/// A supervisor in the cgroup tier and its cgroup, or `None` (printing the skip).
fn start() -> Option<(Supervisor, PathBuf)> {
    let sup = Supervisor::builder()
        .containment(Containment::Auto)
        .start()
        .unwrap();
    match sup.stats().containment {
        ContainmentTier::Cgroup { path } => Some((sup, path)),
        other => {
            eprintln!("skipped: no writable cgroup2 ({other})");
            None
        }
    }
}

/// A child moves itself from its own cgroup up into the supervisor's (anything that can
/// write the supervisor's `cgroup.procs` can: root, or the same user under delegation),
/// then starts a daemon in a new session there and exits. The child's cgroup is empty,
/// so its release kills nothing; the supervisor's cgroup is the supervisor's own (its
/// inode recorded at creation) and only a descendant of its children (or root) can be in
/// it. Shutdown used to try one `rmdir`, fail with `EBUSY`, report it and leave the
/// daemon running; now it writes the supervisor's `cgroup.kill`, waits for
/// `populated 0` and removes it.
#[test]
fn what_escaped_into_the_supervisors_cgroup_dies_at_shutdown() {
    let _serial = serial();
    let daemon = secs(1);
    rt().block_on(async {
        let Some((sup, root)) = start() else { return };
        let script = format!(
            "echo $$ > \"$SUP/cgroup.procs\" || exit 1; setsid sleep {daemon} </dev/null >/dev/null 2>&1 & sleep 0.5; exit 0"
        );
        let mut child = sup
            .command("sh")
            .args(["-c", &script])
            .env("SUP", &root)
            .spawn()
            .unwrap();
        let status = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
        assert!(status.unwrap().unwrap().success());
        assert!(
            poll_until(Duration::from_secs(10), || sleeps(&daemon).len() == 1),
            "the daemon never started"
        );
        drop(child);
        let report = sup.shutdown().await;
        let left = sleeps(&daemon);
        // Whatever happened, the daemon does not outlive the test.
        for &pid in &left {
            let pid = rustix::process::Pid::from_raw(pid as i32).unwrap();
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
        if root.exists() {
            let _ = poll_until(Duration::from_secs(2), || sleeps(&daemon).is_empty());
            let _ = std::fs::remove_dir(&root);
        }
        assert_eq!(left, Vec::<u32>::new(), "the escaped daemon outlived shutdown");
        assert_eq!(report.cgroup_error, None, "{report}");
        assert!(report.is_clean(), "{report}");
    });
    assert_eq!(zombie_children(), Vec::<u32>::new(), "zombies");
}
