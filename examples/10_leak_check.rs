//! A leak check for tests: what a piece of code left behind, as one set.
//!
//! `tokio_custodian::testing::LeakCheck` (the `testing` feature, for dev-dependencies)
//! snapshots the process at `start()`: its fds with their targets, its descendants
//! (a `setsid` escapee included: the check holds the child-subreaper setting), the
//! entries of the temp dir and of every live supervisor's temp root, and every
//! supervisor's live resources, locks, failing clean-ups and running tasks. `finish()`
//! waits a bounded time for clean-ups in flight (a dropped temp dir's removal) and
//! reports what is new, each leftover named: the fd's target, the pid and command line,
//! the path, the resource's creation site.
//!
//! Tests that run in parallel use `LeakCheckBuilder::run` (the exact mode: the check's
//! lock covers the runtime's creation and the body); this program runs alone.
//!
//! Here a "buggy" job forgets a temp file guard, keeps a raw fd and leaves a raw child;
//! its report names all three. The fixed job releases everything and is clean, although
//! its temp dir's removal is still running when it returns.
//!
//! Run it with `cargo run --example 10_leak_check`.

use tokio_custodian::testing::{LeakCheck, LeakReport};
use tokio_custodian::{ResourceKind, Supervisor};

async fn buggy_job(sup: &Supervisor) -> (std::fs::File, std::process::Child) {
    std::mem::forget(sup.temp().label("scratch").file().await.unwrap());
    let fd = std::fs::File::open("/etc/hostname").unwrap();
    let child = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    (fd, child)
}

async fn fixed_job(sup: &Supervisor) {
    let dir = sup.temp().label("work").dir().await.unwrap();
    for n in 0..500 {
        std::fs::write(dir.path().join(n.to_string()), b"frame").unwrap();
    }
    let out = sup
        .command("sh")
        .args(["-c", "echo ok"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.stdout, b"ok\n");
    drop(dir); // removed in the background: `finish` waits for it
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let sup = Supervisor::builder().start().unwrap();

        let check = LeakCheck::builder().no_temp_dir().start();
        let (fd, mut child) = buggy_job(&sup).await;
        let report: LeakReport = check.finish().await;
        println!("buggy job:\n{report}\n");
        assert_eq!(report.len(), 3, "{report}");
        let r = &report.resources[0].resource;
        assert_eq!((r.kind(), r.label()), (ResourceKind::TempFile, "scratch"));
        assert_eq!(report.fds[0].target, "/etc/hostname");
        assert_eq!(
            (report.processes[0].pid, &*report.processes[0].cmdline),
            (child.id(), "sleep 60")
        );
        println!(
            "as JSON: {}\n",
            serde_json::to_string(&report.processes).unwrap()
        );
        drop(fd);
        child.kill().unwrap();
        child.wait().unwrap();

        let check = LeakCheck::builder().no_temp_dir().start();
        fixed_job(&sup).await;
        let report = check.finish().await;
        println!(
            "fixed job: {report} (waited {:.1?} for clean-ups in flight)",
            report.waited
        );
        assert!(report.is_clean(), "{report}");
        sup.shutdown().await; // reclaims the forgotten file, as a leak
    });
}
