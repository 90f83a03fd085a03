//! A `sleep 1000` child released by each path: close, drop, scope end, panic in the
//! scope, aborted task, parent-scope cancellation, shutdown, emergency. After each:
//! nothing of its group runs, no zombie children, fd count back to its baseline (see
//! `serial_process_test`).

use std::time::{Duration, Instant};

use custodian_suite::{group_alive, pid_exists, serial_process_test};
use tokio::sync::oneshot;
use tokio_custodian::{ReleasePath, ResourceKind, Supervisor};

fn released(sup: &Supervisor, path: ReleasePath) -> u64 {
    let s = sup.stats();
    s.kind(ResourceKind::Child)
        .released
        .get(&path)
        .copied()
        .unwrap_or(0)
}

#[test]
fn close_stops_with_sigterm_and_reports_status() {
    serial_process_test(async || {
        use std::os::unix::process::ExitStatusExt;
        let sup = Supervisor::builder().start().unwrap();
        let pid = sup
            .scope("s", async |s| {
                let child = s.command("sleep").arg("1000").spawn().unwrap();
                let pid = child.id().unwrap();
                assert!(group_alive(pid));
                let st = child.close().await.unwrap();
                assert_eq!(st.signal(), Some(15));
                assert!(!pid_exists(pid), "reaped before close returned");
                pid
            })
            .await
            .unwrap();
        assert_eq!(released(&sup, ReleasePath::Close), 1);
        assert!(sup.shutdown().await.is_clean());
        vec![pid]
    });
}

#[test]
fn drop_hands_the_stop_to_a_task_the_scope_waits_for() {
    serial_process_test(async || {
        let sup = Supervisor::builder().start().unwrap();
        let pid = sup
            .scope("s", async |s| {
                let child = s.command("sleep").arg("1000").spawn().unwrap();
                let pid = child.id().unwrap();
                let t = Instant::now();
                drop(child);
                assert!(
                    t.elapsed() < Duration::from_millis(100),
                    "drop must not wait"
                );
                pid
            })
            .await
            .unwrap();
        assert!(
            !pid_exists(pid),
            "the scope returned before its child was reaped"
        );
        assert_eq!(released(&sup, ReleasePath::Drop), 1);
        assert!(sup.shutdown().await.is_clean());
        vec![pid]
    });
}

#[test]
fn scope_end_reclaims_an_escaped_guard() {
    serial_process_test(async || {
        let sup = Supervisor::builder().start().unwrap();
        let child = sup
            .scope("s", async |s| s.command("sleep").arg("1000").spawn())
            .await
            .unwrap()
            .unwrap();
        let pid = child.process_group();
        assert!(
            !pid_exists(pid),
            "the scope returned before its child was reaped"
        );
        assert_eq!(child.id(), None);
        assert_eq!(released(&sup, ReleasePath::ScopeEnd), 1);
        assert_eq!(sup.leaked().len(), 1);
        drop(child); // already released: nothing happens
        let total: u64 = sup
            .stats()
            .kind(ResourceKind::Child)
            .released
            .values()
            .sum();
        assert_eq!(total, 1);
        sup.shutdown().await;
        vec![pid]
    });
}

#[test]
fn panic_in_scope_releases_the_child() {
    serial_process_test(async || {
        let sup = Supervisor::builder().start().unwrap();
        let (tx, rx) = oneshot::channel();
        let s2 = sup.clone();
        let joined = tokio::spawn(async move {
            s2.scope("s", async |s| {
                let child = s.command("sleep").arg("1000").spawn().unwrap();
                tx.send(child.id().unwrap()).unwrap();
                panic!("boom");
            })
            .await
        })
        .await;
        assert!(joined.unwrap_err().is_panic());
        let pid = rx.await.unwrap();
        assert!(!pid_exists(pid));
        assert_eq!(released(&sup, ReleasePath::Panic), 1);
        assert!(sup.shutdown().await.is_clean());
        vec![pid]
    });
}

#[test]
fn aborted_task_releases_the_child() {
    serial_process_test(async || {
        let sup = Supervisor::builder().start().unwrap();
        let (tx, rx) = oneshot::channel();
        let s2 = sup.clone();
        let task = tokio::spawn(async move {
            s2.scope("s", async |s| {
                let child = s.command("sleep").arg("1000").spawn().unwrap();
                tx.send(child.id().unwrap()).unwrap();
                std::future::pending::<()>().await;
                drop(child);
            })
            .await
        });
        let pid = rx.await.unwrap();
        task.abort();
        assert!(task.await.unwrap_err().is_cancelled());
        // Nobody awaits the scope any more: its clean-up task finishes in the
        // background, and shutdown waits for it.
        assert!(sup.shutdown().await.cleanups_finished);
        assert!(!pid_exists(pid));
        assert_eq!(released(&sup, ReleasePath::Cancelled), 1);
        vec![pid]
    });
}

#[test]
fn parent_scope_cancellation_releases_the_child() {
    serial_process_test(async || {
        let sup = Supervisor::builder().start().unwrap();
        let pid = sup
            .scope("outer", async |outer| {
                let (tx, rx) = oneshot::channel();
                let grace = Duration::from_millis(50);
                let inner = outer.scope_with_grace("inner", grace, async |s| {
                    let child = s.command("sleep").arg("1000").spawn().unwrap();
                    tx.send(child.id().unwrap()).unwrap();
                    std::future::pending::<()>().await; // ignores cancellation
                    drop(child);
                });
                let cancel = async {
                    let pid = rx.await.unwrap();
                    outer.cancel();
                    pid
                };
                let (r, pid) = tokio::join!(inner, cancel);
                assert!(
                    matches!(r, Err(tokio_custodian::Error::Cancelled { .. })),
                    "{r:?}"
                );
                assert!(
                    !pid_exists(pid),
                    "inner scope returned before its child was reaped"
                );
                pid
            })
            .await
            .unwrap();
        assert_eq!(released(&sup, ReleasePath::Cancelled), 1);
        assert!(sup.shutdown().await.is_clean());
        vec![pid]
    });
}

#[test]
fn shutdown_releases_a_child_alive_in_the_root() {
    serial_process_test(async || {
        let sup = Supervisor::builder().start().unwrap();
        let child = sup
            .command("sleep")
            .arg("1000")
            .label("worker")
            .spawn()
            .unwrap();
        let pid = child.id().unwrap();
        let report = sup.shutdown().await;
        assert_eq!(report.alive_at_shutdown.len(), 1);
        assert_eq!(report.alive_at_shutdown[0].label(), "worker");
        assert!(report.cleanups_finished);
        assert!(!pid_exists(pid));
        assert_eq!(released(&sup, ReleasePath::Shutdown), 1);
        drop(child);
        vec![pid]
    });
}

#[test]
fn dropping_the_last_handle_kills_and_reaps() {
    serial_process_test(async || {
        let sup = Supervisor::builder().start().unwrap();
        let child = sup.command("sleep").arg("1000").spawn().unwrap();
        let pid = child.id().unwrap();
        std::mem::forget(child);
        let t = Instant::now();
        // Emergency clean-up: `reclaim_now` (SIGKILL and reap) on the blocking pool.
        drop(sup);
        while pid_exists(pid) {
            assert!(t.elapsed() < Duration::from_secs(5), "{pid} still alive");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        vec![pid]
    });
}
