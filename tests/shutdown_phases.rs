//! Shutdown phases in process: cancel reasons seen by scopes and hooks, a forced request
//! cutting a graceful shutdown short, scoped tasks, emergency clean-up.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tokio_custodian::{CancelReason, Error, HookOutcome, Operation, PanicCleanup, Supervisor};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scopes_and_hooks_observe_the_graceful_reason() {
    let sup = Supervisor::builder().start().unwrap();
    let (tx, rx) = oneshot::channel();
    sup.on_shutdown("observe", Duration::from_secs(5), |reason| async move {
        let _ = tx.send(reason);
    })
    .unwrap();
    let s = sup.clone();
    let (in_tx, entered) = oneshot::channel();
    let scope = tokio::spawn(async move {
        s.scope("body", async move |s| {
            let _ = in_tx.send(());
            s.cancelled().await;
            s.cancel_reason()
        })
        .await
    });
    entered.await.unwrap();
    let report = sup.shutdown().await;
    assert_eq!(scope.await.unwrap().unwrap(), Some(CancelReason::Shutdown));
    assert_eq!(rx.await.unwrap(), CancelReason::Shutdown);
    assert_eq!(report.reason, CancelReason::Shutdown);
    assert!(report.is_clean(), "{report}");
}

/// Dropped at the deadline: its drop reads the reason the scope was cut with.
struct ReadsReasonOnDrop(
    tokio_custodian::Scope,
    Arc<std::sync::Mutex<Option<CancelReason>>>,
);

impl Drop for ReadsReasonOnDrop {
    fn drop(&mut self) {
        *self.1.lock().unwrap() = self.0.cancel_reason();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scope_cut_at_the_deadline_sees_the_deadline_reason() {
    let sup = Supervisor::builder()
        .grace(Duration::from_millis(200))
        .start()
        .unwrap();
    let seen = Arc::new(std::sync::Mutex::new(None));
    let s = sup.clone();
    let seen2 = seen.clone();
    let (in_tx, entered) = oneshot::channel();
    let scope = tokio::spawn(async move {
        s.root()
            .scope_with_grace("stubborn", Duration::from_secs(60), async move |s| {
                let _guard = ReadsReasonOnDrop(s.clone(), seen2);
                let _t = s.temp_file().await;
                let _ = in_tx.send(());
                std::future::pending::<()>().await
            })
            .await
    });
    entered.await.unwrap();
    let report = sup.shutdown().await;
    assert!(matches!(
        scope.await.unwrap(),
        Err(Error::Cancelled {
            reason: CancelReason::Deadline,
            ..
        })
    ));
    assert_eq!(*seen.lock().unwrap(), Some(CancelReason::Deadline));
    assert_eq!(report.reason, CancelReason::Deadline);
    assert!(!report.scopes_finished);
    assert!(!sup.temp_root().exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_during_a_graceful_shutdown_cuts_every_wait_short() {
    let sup = Supervisor::builder()
        .grace(Duration::from_secs(120))
        .start()
        .unwrap();
    let (started_tx, started) = oneshot::channel();
    sup.on_shutdown("waits forever", Duration::from_secs(120), |_| async move {
        let _ = started_tx.send(());
        std::future::pending::<()>().await;
    })
    .unwrap();
    let s = sup.clone();
    let (in_tx, entered) = oneshot::channel();
    let stuck = tokio::spawn(async move {
        s.scope("stuck", async move |s| {
            let _d = s.temp_dir().await;
            let _ = in_tx.send(());
            std::future::pending::<()>().await
        })
        .await
    });
    let t = sup.temp_file().await.unwrap();
    entered.await.unwrap();
    let start = Instant::now();
    let s = sup.clone();
    let graceful = tokio::spawn(async move { s.shutdown().await });
    started.await.unwrap();
    sup.force();
    let report = graceful.await.unwrap();
    assert!(start.elapsed() < Duration::from_secs(30), "{report}");
    assert!(report.forced);
    assert_eq!(report.reason, CancelReason::ForcedShutdown);
    assert_eq!(report.hooks[0].outcome, HookOutcome::Cut);
    assert!(matches!(
        stuck.await.unwrap(),
        Err(Error::Cancelled {
            reason: CancelReason::ForcedShutdown,
            ..
        })
    ));
    assert!(!t.path().exists());
    assert!(!sup.temp_root().exists());
    assert_eq!(sup.stats().live(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scoped_tasks_are_awaited_by_shutdown_and_aborted_after_grace() {
    let sup = Supervisor::builder()
        .grace(Duration::from_millis(300))
        .start()
        .unwrap();
    let root = sup.root();
    let finished = Arc::new(AtomicBool::new(false));
    let (f, r) = (finished.clone(), root.clone());
    let polite = root
        .spawn(async move {
            r.cancelled().await;
            tokio::time::sleep(Duration::from_millis(100)).await; // wind-down work
            f.store(true, Ordering::SeqCst);
        })
        .unwrap();
    let deaf = root.spawn(std::future::pending::<()>()).unwrap();
    let report = sup.shutdown().await;
    // Shutdown waited for the polite task's wind-down.
    assert!(finished.load(Ordering::SeqCst));
    polite.await.unwrap();
    assert!(deaf.await.unwrap_err().is_cancelled());
    // The deaf task held the wait until its grace (= the supervisor's) was over.
    let wait = report
        .phases
        .iter()
        .find(|p| p.name == "wait for scopes")
        .unwrap();
    assert!(wait.took >= Duration::from_millis(250), "{report}");
    let err = root.spawn(async {}).unwrap_err();
    assert!(matches!(
        err,
        Error::ShuttingDown {
            op: Operation::SpawnTask
        }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::async_yields_async)] // the scope returns the task's handle on purpose
async fn a_scoped_task_is_cancelled_when_its_scope_ends() {
    let sup = Supervisor::builder()
        .grace(Duration::from_millis(50))
        .start()
        .unwrap();
    let task = sup
        .scope("short", async |s| {
            s.spawn(std::future::pending::<()>()).unwrap()
        })
        .await
        .unwrap();
    let err = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("aborted after the scope's grace")
        .unwrap_err();
    assert!(err.is_cancelled());
    assert!(sup.shutdown().await.is_clean());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emergency_cleanup_is_idempotent_and_refuses_new_work() {
    let sup = Supervisor::builder().start().unwrap();
    let a = sup.temp_file().await.unwrap();
    let d = sup.temp_dir().await.unwrap();
    std::fs::write(d.path().join("inner"), b"x").unwrap();
    let first = sup.emergency_cleanup();
    assert_eq!(first.released, 2);
    assert_eq!(first.failed, 0);
    assert!(first.temp_root_removed);
    assert!(!a.path().exists() && !d.path().exists());
    let second = sup.emergency_cleanup();
    assert_eq!((second.released, second.temp_root_removed), (0, false));
    assert!(sup.temp_file().await.unwrap_err().is_cancellation());
    // Dropping the guards afterwards releases nothing twice.
    drop((a, d));
    let s = sup.stats();
    assert!(s.is_consistent());
    assert_eq!(
        s.kind(tokio_custodian::ResourceKind::TempFile)
            .released_total(),
        1
    );
    let report = sup.shutdown().await;
    assert!(
        report.forced && report.temp_root_error.is_none(),
        "{report}"
    );
    assert!(matches!(
        sup.on_shutdown("late", Duration::ZERO, |_| async {}),
        Err(Error::ShuttingDown {
            op: Operation::RegisterHook
        })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_on_abort_panic_hook_stays_quiet_in_an_unwinding_build() {
    let sup = Supervisor::builder().start().unwrap();
    sup.install_panic_hook(PanicCleanup::OnAbort);
    let t = sup.temp_file().await.unwrap();
    std::thread::spawn(|| panic!("caught elsewhere"))
        .join()
        .unwrap_err();
    assert!(t.path().exists());
    assert!(!sup.is_shutting_down());
    drop(t);
    assert!(sup.shutdown().await.is_clean());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_is_a_table_and_round_trips_through_json() {
    let sup = Supervisor::builder().start().unwrap();
    sup.on_shutdown("slow", Duration::from_millis(20), |_| async {
        tokio::time::sleep(Duration::from_secs(60)).await;
    })
    .unwrap();
    let _kept = sup.temp_file().await.unwrap();
    let report = sup.shutdown().await;
    let text = report.to_string();
    for needle in [
        "phase",
        "wait for scopes",
        "OVERRAN",
        "released by",
        "shutdown",
        "alive at shutdown",
    ] {
        assert!(text.contains(needle), "`{needle}` in\n{text}");
    }
    assert_eq!(report.failed_hooks()[0].name, "slow");
    let json = serde_json::to_string(&report).unwrap();
    let back: tokio_custodian::ShutdownReport = serde_json::from_str(&json).unwrap();
    assert_eq!(back.hooks, report.hooks);
    assert_eq!(back.reason, report.reason);
    assert_eq!(back.alive_at_shutdown.len(), 1);
}
