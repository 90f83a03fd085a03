//! The cgroup containment tier (issue 19) on real processes, on this machine's cgroup2
//! mount: a managed child that starts a `setsid env -i` double-fork daemon and a
//! TERM-ignoring grandchild is released by every path — close, scope end, shutdown, the
//! emergency clean-up, the last handle dropped (with and without a runtime), its own exit
//! — and afterwards every process is gone, its cgroup was `populated 0` and removed, no
//! zombie is left, and no cgroup is left under the supervisor's or under this process's
//! own cgroup.
//!
//! Without the tier (the control test), the daemon outlives the release: it left the
//! group and cleared its environment, so nothing else finds it. Where children are put,
//! and what the tier costs, is in `containment_cgroups.rs`; the scaffolding in
//! `tests/support/containment.rs`.
//!
//! Skipped, saying "skipped: no writable cgroup2", where the tier is not available.

use std::time::Duration;

use custodian_suite::containment::{
    assert_gone, escape_artist, mount_dir, our_cgroups, own_cgroup_dir, rt, secs, start,
    sub_cgroups, sup_cgroup, wait_started, with_tier,
};
use custodian_suite::{poll_until, serial, sleeps};
use tokio_custodian::Supervisor;

#[test]
fn close_kills_the_whole_tree_and_removes_its_cgroup() {
    with_tier("close", async |sup, mount| {
        let root = sup_cgroup(&sup);
        let child = escape_artist(&sup.root(), 10);
        let cg = child.cgroup().expect("a cgroup");
        assert_eq!(cg.parent(), Some(root.as_path()));
        wait_started(10, &cg, &mount);
        child.close().await.unwrap();
        assert_gone(10, &cg, "close");
        assert_eq!(sub_cgroups(&root), 0, "child cgroups left");
        let events = std::fs::read_to_string(root.join("cgroup.events")).unwrap();
        assert!(events.contains("populated 0"), "{events}");
        let report = sup.shutdown().await;
        assert!(report.is_clean(), "{report}");
        assert!(report.stats.containment.is_cgroup());
        assert!(!root.exists(), "the supervisor's cgroup is left");
    });
}

#[test]
fn scope_end_kills_a_forgotten_childs_tree() {
    with_tier("scope end", async |sup, mount| {
        let root = sup_cgroup(&sup);
        // Warm up (tokio's SIGCHLD driver opens its fds at the first spawn; start's reap
        // of abandoned roots holds fds on the blocking pool), then count.
        sup.reaped_at_start().await;
        sup.command("true").status().await.unwrap();
        let fds = custodian_suite::open_fds();
        let cg = sup
            .scope("job", async |s| {
                let child = escape_artist(&s, 20);
                let cg = child.cgroup().unwrap();
                wait_started(20, &cg, &mount);
                std::mem::forget(child);
                cg
            })
            .await
            .unwrap();
        assert_gone(20, &cg, "scope end");
        assert_eq!(sub_cgroups(&root), 0);
        // The forgotten guard keeps no fd: the pidfd went with the reap, the cgroup's
        // fd with its removal.
        // (Settling: a group scan's pass on the blocking pool may still hold a /proc fd.)
        custodian_suite::assert_fds_settle(fds, "fds kept by a forgotten guard");
        let report = sup.shutdown().await;
        assert!(report.failures.is_empty(), "{report}");
        assert!(!root.exists());
    });
}

#[test]
fn shutdown_kills_every_tree_and_removes_the_supervisors_cgroup() {
    with_tier("shutdown", async |sup, mount| {
        let root = sup_cgroup(&sup);
        let a = escape_artist(&sup.root(), 30);
        let b = escape_artist(&sup.root(), 40);
        let (ca, cb) = (a.cgroup().unwrap(), b.cgroup().unwrap());
        wait_started(30, &ca, &mount);
        wait_started(40, &cb, &mount);
        std::mem::forget((a, b));
        let report = sup.shutdown().await;
        assert!(report.failures.is_empty(), "{report}");
        assert_eq!(report.cgroup_error, None);
        assert_gone(30, &ca, "shutdown");
        assert_gone(40, &cb, "shutdown");
        assert!(!root.exists(), "the supervisor's cgroup is left");
    });
}

#[test]
fn the_emergency_path_kills_and_removes_synchronously() {
    with_tier("emergency", async |sup, mount| {
        let root = sup_cgroup(&sup);
        let child = escape_artist(&sup.root(), 50);
        let cg = child.cgroup().unwrap();
        wait_started(50, &cg, &mount);
        std::mem::forget(child);
        // On this thread, no await: what a panic hook or an abort path runs.
        let done = sup.emergency_cleanup();
        assert_eq!((done.released, done.failed), (1, 0), "{done:?}");
        // Synchronous: already gone when the call returns.
        assert!(!cg.exists(), "the child's cgroup is left");
        assert!(!root.exists(), "the supervisor's cgroup is left");
        assert_gone(50, &cg, "emergency");
    });
}

#[test]
fn the_last_handle_dropped_without_shutdown_kills_and_removes() {
    with_tier("last drop", async |sup, mount| {
        let root = sup_cgroup(&sup);
        let child = escape_artist(&sup.root(), 60);
        let cg = child.cgroup().unwrap();
        wait_started(60, &cg, &mount);
        std::mem::forget(child);
        drop(sup);
        assert!(
            poll_until(Duration::from_secs(5), || !root.exists()),
            "the supervisor's cgroup is left"
        );
        assert_gone(60, &cg, "last drop");
    });
}

#[test]
fn without_a_runtime_the_last_drop_kills_and_removes_inline() {
    let _serial = serial();
    let Some(parent) = own_cgroup_dir() else {
        eprintln!("skipped: no writable cgroup2");
        return;
    };
    let runtime = rt();
    let started = runtime.block_on(async {
        let sup = start()?;
        let child = escape_artist(&sup.root(), 130);
        let cg = child.cgroup().unwrap();
        wait_started(130, &cg, &mount_dir());
        std::mem::forget(child);
        Some((sup, cg))
    });
    let Some((sup, cg)) = started else { return };
    let root = sup_cgroup(&sup);
    // The runtime is gone: its blocking pool drops the clean-up unrun, and the drop
    // runs it on this thread.
    drop(runtime);
    drop(sup);
    assert!(!root.exists(), "the supervisor's cgroup is left");
    assert_gone(130, &cg, "no runtime");
    assert_eq!(our_cgroups(&parent), Vec::<String>::new());
}

#[test]
fn a_child_that_exits_by_itself_has_its_daemon_killed_at_wait() {
    with_tier("wait", async |sup, mount| {
        let daemon = secs(70);
        let mut child = sup
            .command("sh")
            .args([
                "-c",
                &format!("setsid env -i sh -c 'sleep {daemon} >/dev/null 2>&1 &'"),
            ])
            .spawn()
            .unwrap();
        let cg = child.cgroup().unwrap();
        assert!(child.wait().await.unwrap().success());
        // The reap wrote cgroup.kill: whatever the child left is dying or gone.
        assert!(
            poll_until(Duration::from_secs(2), || sleeps(&daemon).is_empty()),
            "the daemon outlived its parent's reap"
        );
        let _ = mount;
        child.close().await.unwrap();
        assert!(!cg.exists());
        assert!(sup.shutdown().await.is_clean());
    });
}

/// The control: without the tier, the same daemon outlives the release (it left the
/// group and cleared its environment). This is what the tests above would see on the
/// code before the tier.
#[test]
fn without_the_tier_the_daemon_outlives_the_release() {
    let _serial = serial();
    rt().block_on(async {
        let sup = Supervisor::builder().start().unwrap();
        assert!(!sup.stats().containment.is_cgroup());
        let child = escape_artist(&sup.root(), 80);
        assert_eq!(child.cgroup(), None);
        let daemon = secs(80);
        assert!(poll_until(Duration::from_secs(10), || sleeps(&daemon)
            .len()
            == 1));
        child.close().await.unwrap();
        let survivors = sleeps(&daemon);
        assert_eq!(
            survivors.len(),
            1,
            "the escapee was caught without a cgroup"
        );
        // Test cleanup by pid, checked to be the escapee just seen.
        for pid in survivors {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        sup.shutdown().await;
    });
}
