//! The cgroup tier gives what a child left in its cgroup the child's own stop (issue 19):
//! SIGTERM, the child's grace, then `cgroup.kill`, never a bare SIGKILL. The escapee
//! here left the process group (`setsid`) and honours SIGTERM by writing a file: it must
//! get to write it, whether the child exited on its own (`wait`, or `try_wait` and then
//! the release) or was stopped while running (`close`). Afterwards the cgroup is empty
//! and removed, and nothing of the child runs.
//!
//! Skipped, saying "skipped: no writable cgroup2", where the tier is not available.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use custodian_suite::{poll_until, scratch_dir, serial, sleeps};
use tokio_custodian::{Containment, ContainmentTier, ManagedChild, Supervisor};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Starts a supervisor with the cgroup tier, or `None` (printing the skip) without one.
fn start() -> Option<Supervisor> {
    let sup = Supervisor::builder()
        .containment(Containment::Auto)
        .start()
        .unwrap();
    match sup.stats().containment {
        ContainmentTier::Cgroup { .. } => Some(sup),
        other => {
            eprintln!("skipped: no writable cgroup2 ({other})");
            None
        }
    }
}

/// A sleep length unique to this run and `n`.
fn secs(n: u32) -> String {
    format!("{}", 300_000 + std::process::id() * 10 + n)
}

/// A child that starts a `setsid` escapee (it traps SIGTERM: writes `termed` to `out`
/// and exits), waits until the trap is set, then exits on its own (`exit_now`) or
/// sleeps. The escapee waits for its own `sleep secs(n)`, exec'd before it says it is
/// ready: a forked shell before its `exec` still runs the trap's handler, which would
/// take the SIGTERM meant for the sleep (which would then get the kill after the grace,
/// and the timing checks below would wait it out).
fn spawn(sup: &Supervisor, dir: &Path, n: u32, exit_now: bool) -> ManagedChild {
    let (out, ready) = (dir.join(format!("out-{n}")), dir.join(format!("ready-{n}")));
    let escapee = format!(
        "trap 'echo termed > \"$OUT\"; exit 0' TERM; sleep {s} & p=$!; \
         c=; while [ \"$c\" != sleep ]; do read -r c < /proc/$p/comm; done; \
         : > \"$READY\"; while :; do wait $p; done",
        s = secs(n)
    );
    let tail = if exit_now {
        "exit 0"
    } else {
        "exec sleep 1000"
    };
    let script = format!(
        "setsid sh -c '{}' </dev/null >/dev/null 2>&1 & \
         while [ ! -e \"$READY\" ]; do sleep 0.01; done; {tail}",
        escapee.replace('\'', "'\\''")
    );
    sup.command("sh")
        .args(["-c", &script])
        .env("OUT", &out)
        .env("READY", &ready)
        .grace(Duration::from_secs(5))
        .spawn()
        .unwrap()
}

fn termed(dir: &Path, n: u32) -> bool {
    std::fs::read_to_string(dir.join(format!("out-{n}"))).is_ok_and(|s| s == "termed\n")
}

/// Nothing of escapee `n` runs, and the child's cgroup is gone.
fn assert_gone(n: u32, cgroup: &Path, when: &str) {
    assert!(
        poll_until(Duration::from_secs(5), || sleeps(&secs(n)).is_empty()),
        "{when}: the escapee's sleep still runs"
    );
    assert!(
        poll_until(Duration::from_secs(5), || !cgroup.exists()),
        "{when}: {} left",
        cgroup.display()
    );
}

#[test]
fn an_escapee_in_the_cgroup_gets_sigterm_and_the_grace_on_every_path() {
    let _s = serial();
    let rt = rt();
    rt.block_on(async {
        let Some(sup) = start() else { return };
        let dir: PathBuf = scratch_dir("escapee-term");
        // 1. The child exits on its own; `wait` reaps it.
        let mut c = spawn(&sup, &dir, 0, true);
        let cg = c.cgroup().unwrap();
        let t = Instant::now();
        let status = c.wait().await.unwrap();
        assert!(status.success(), "{status:?}");
        // Before: the reap wrote `cgroup.kill` at once: SIGKILL, no file.
        assert!(termed(&dir, 0), "wait: the escapee never got SIGTERM");
        assert!(
            t.elapsed() < Duration::from_secs(4),
            "the grace was waited out"
        );
        c.close().await.unwrap();
        assert_gone(0, &cg, "wait");
        // 2. The child exits on its own, `try_wait` reaps it, the release stops the rest.
        let mut c = spawn(&sup, &dir, 10, true);
        let cg = c.cgroup().unwrap();
        assert!(
            poll_until(Duration::from_secs(10), || c.try_wait().unwrap().is_some()),
            "the child never exited"
        );
        let t = Instant::now();
        c.close().await.unwrap();
        assert!(
            t.elapsed() < Duration::from_secs(4),
            "try_wait + close: no grace"
        );
        assert!(termed(&dir, 10), "try_wait + close: no SIGTERM");
        assert_gone(10, &cg, "try_wait + close");
        // 3. The child still runs when it is closed: the escapee, outside its group,
        // gets the same SIGTERM.
        let c = spawn(&sup, &dir, 20, false);
        let cg = c.cgroup().unwrap();
        assert!(
            poll_until(Duration::from_secs(10), || dir.join("ready-20").exists()),
            "the escapee never started"
        );
        let t = Instant::now();
        c.close().await.unwrap();
        assert!(t.elapsed() < Duration::from_secs(4), "close: no grace");
        assert!(termed(&dir, 20), "close: the escapee never got SIGTERM");
        assert_gone(20, &cg, "close");
        assert!(sup.shutdown().await.is_clean());
        std::fs::remove_dir_all(&dir).unwrap();
    });
}

#[test]
fn an_escapee_that_ignores_sigterm_is_killed_after_the_grace() {
    let _s = serial();
    let rt = rt();
    rt.block_on(async {
        let Some(sup) = start() else { return };
        let s = secs(30);
        let script =
            format!("setsid sh -c \"trap '' TERM; sleep {s}\" </dev/null >/dev/null 2>&1 & exit 0");
        let mut c = sup
            .command("sh")
            .args(["-c", &script])
            .grace(Duration::from_millis(300))
            .spawn()
            .unwrap();
        let cg = c.cgroup().unwrap();
        assert!(
            poll_until(Duration::from_secs(10), || !sleeps(&s).is_empty()),
            "the escapee never started"
        );
        let t = Instant::now();
        c.wait().await.unwrap();
        let took = t.elapsed();
        assert!(
            sleeps(&s).is_empty() || poll_until(Duration::from_secs(2), || sleeps(&s).is_empty())
        );
        assert!(took >= Duration::from_millis(250), "no grace: {took:?}");
        assert!(took < Duration::from_secs(3), "{took:?}");
        c.close().await.unwrap();
        assert_gone(30, &cg, "TERM ignored");
        assert!(sup.shutdown().await.is_clean());
    });
}
