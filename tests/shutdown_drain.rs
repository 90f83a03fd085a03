//! Shutdown's drain phase (`Builder::drain`): requests in flight keep acquiring (temp
//! files, children, nested scopes, scoped tasks) after shutdown began, new top-level work
//! is refused with `Error::Draining`, a drain that runs out falls through to cancel and
//! force within the grace, a forced request (or a second signal) cuts it, and without a
//! drain shutdown behaves as it always did. Each scenario checks fds and leftovers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use custodian_suite::{Rt, is_isolated, run_isolated, scenario};
use tokio::io::AsyncWriteExt;
use tokio::sync::{Notify, oneshot};
use tokio_custodian::{CancelReason, Error, Supervisor};

/// Generous: a loaded 2-core CI machine.
const SLACK: Duration = Duration::from_secs(3);

/// One "request": enters its scope, reports it, waits for `go`, then acquires a temp
/// file (written), a temp dir, a real child, a nested scope and a scoped task, and ends.
/// Returns the scope's cancel reason as seen after its acquisitions.
async fn request(
    sup: Supervisor,
    name: String,
    entered: oneshot::Sender<()>,
    go: Arc<Notify>,
) -> tokio_custodian::Result<Option<CancelReason>> {
    sup.scope(&name, async move |s| {
        let wait = go.notified();
        let _ = entered.send(());
        wait.await;
        let mut f = s.temp_file().await?;
        f.write_all(b"uploaded").await.unwrap();
        f.flush().await.unwrap();
        let d = s.temp_dir().await?;
        assert!(d.path().is_dir());
        let status = s.command("true").status().await?;
        assert!(status.success());
        let n = s
            .scope("decode", async |n| n.temp_file().await.map(drop))
            .await?;
        n?;
        let task = s.spawn(async { 7 })?;
        assert_eq!(task.await.unwrap(), 7);
        tokio_custodian::Result::Ok(s.cancel_reason())
    })
    .await?
}

#[test]
fn requests_in_flight_acquire_during_the_drain_and_new_work_is_refused() {
    scenario(Rt::Multi(2), "drain-in-flight", async |base| {
        let sup = Supervisor::builder()
            .temp_base(&base)
            .grace(Duration::from_secs(20))
            .drain(Duration::from_secs(10))
            .start()
            .unwrap();
        let go = Arc::new(Notify::new());
        let mut requests = Vec::new();
        for i in 0..4 {
            let (tx, rx) = oneshot::channel();
            let r = tokio::spawn(request(sup.clone(), format!("req{i}"), tx, go.clone()));
            rx.await.unwrap();
            requests.push(r);
        }
        assert!(!sup.is_draining());
        let draining = sup.draining();
        let s = sup.clone();
        let shutdown = tokio::spawn(async move { s.shutdown().await });
        let began = Instant::now();
        draining.await;
        assert!(sup.is_draining() && sup.is_shutting_down());
        // Draining is not cancelling: the scopes in flight are left alone.
        assert!(!sup.root().is_cancelled());
        // New top-level work is refused, with the operation.
        let refused = sup.scope("late", async |_| ()).await.unwrap_err();
        assert!(
            matches!(
                refused,
                Error::Draining {
                    op: tokio_custodian::Operation::EnterScope
                }
            ),
            "{refused}"
        );
        assert!(refused.is_cancellation());
        assert_eq!(
            refused.public().to_string(),
            "enter scope: the service is draining; retry elsewhere"
        );
        let refused = sup.temp_file().await.unwrap_err();
        assert!(matches!(refused, Error::Draining { .. }), "{refused}");
        // The requests acquire after shutdown began, and finish without being cancelled.
        go.notify_waiters();
        for r in requests {
            assert_eq!(
                r.await.unwrap().unwrap(),
                None,
                "a request saw a cancellation"
            );
        }
        let report = shutdown.await.unwrap();
        let took = began.elapsed();
        assert!(report.is_clean(), "{report}");
        let drain = report.drain.clone().expect("a drain ran");
        assert_eq!((drain.scopes_at_start, drain.scopes_finished), (4, 4));
        assert!(!drain.ran_out);
        assert_eq!(drain.refused, 2);
        // It ended when the requests did, not at its 10 s budget.
        assert!(took < Duration::from_secs(5), "{took:?}");
        assert_eq!(report.phases[0].name, "drain");
        assert_eq!(report.reason, CancelReason::Shutdown);
        // 4 requests × (file, dir, child, nested file), all released by their guards.
        let created: u64 = report.stats.kinds.values().map(|k| k.created).sum();
        assert_eq!(created, 16);
        assert_eq!(report.stats.live(), 0);
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["drain"]["scopes_finished"], 4);
        assert_eq!(json["drain"]["ran_out"], false);
        let back: tokio_custodian::ShutdownReport = serde_json::from_value(json).unwrap();
        assert_eq!(back.drain, report.drain);
        assert!(report.to_string().contains("drain: 4 of 4"), "{report}");
        // Nothing is accepted after shutdown.
        assert!(matches!(
            sup.temp_file().await.unwrap_err(),
            Error::ShuttingDown { .. }
        ));
    });
}

#[test]
fn without_a_drain_shutdown_cancels_at_once_as_before() {
    scenario(Rt::Multi(2), "drain-off", async |base| {
        let sup = Supervisor::builder()
            .temp_base(&base)
            .grace(Duration::from_secs(20))
            .start()
            .unwrap();
        let (tx, rx) = oneshot::channel();
        let s = sup.clone();
        let req = tokio::spawn(async move {
            s.scope("req", async move |s| {
                let _ = tx.send(());
                s.cancelled().await;
                // Acquiring once shutdown began is refused without a drain.
                let late = s.temp_file().await.map(drop);
                (s.cancel_reason(), late)
            })
            .await
        });
        rx.await.unwrap();
        let draining = sup.draining();
        let began = Instant::now();
        let report = sup.shutdown().await;
        // `draining()` fires with shutdown when there is no drain.
        tokio::time::timeout(Duration::from_secs(1), draining)
            .await
            .expect("draining fired");
        let (reason, late) = req.await.unwrap().unwrap();
        assert_eq!(reason, Some(CancelReason::Shutdown));
        assert!(matches!(late, Err(Error::ShuttingDown { .. })), "{late:?}");
        assert!(report.drain.is_none());
        assert!(report.phases.iter().all(|p| p.name != "drain"));
        assert!(report.is_clean(), "{report}");
        assert!(began.elapsed() < SLACK);
    });
}

/// A scope that never ends on its own and ignores cancellation, holding a temp file.
fn stuck(
    sup: &Supervisor,
    entered: oneshot::Sender<()>,
) -> tokio::task::JoinHandle<tokio_custodian::Result<()>> {
    let s = sup.clone();
    tokio::spawn(async move {
        s.scope("stuck", async move |s| {
            let _t = s.temp_file().await.unwrap();
            let _ = entered.send(());
            std::future::pending::<()>().await
        })
        .await
    })
}

#[test]
fn a_drain_that_runs_out_falls_through_to_cancel_and_force_within_the_grace() {
    scenario(Rt::Multi(2), "drain-runs-out", async |base| {
        let (grace, budget) = (Duration::from_millis(1500), Duration::from_millis(500));
        let sup = Supervisor::builder()
            .temp_base(&base)
            .grace(grace)
            .drain(budget)
            .start()
            .unwrap();
        let (tx, rx) = oneshot::channel();
        let stuck = stuck(&sup, tx);
        rx.await.unwrap();
        // A second scope that stops when cancelled: it sees the cancellation only once
        // the drain has run out.
        let (tx, rx) = oneshot::channel();
        let s = sup.clone();
        let polite = tokio::spawn(async move {
            s.scope("polite", async move |s| {
                let _ = tx.send(());
                s.cancelled().await;
                Instant::now()
            })
            .await
        });
        rx.await.unwrap();
        let began = Instant::now();
        let report = sup.shutdown().await;
        let took = began.elapsed();
        let cancelled_after = polite.await.unwrap().unwrap() - began;
        assert!(
            cancelled_after >= budget,
            "cancelled during the drain: {cancelled_after:?}"
        );
        assert!(cancelled_after < grace, "{cancelled_after:?}");
        assert!(matches!(
            stuck.await.unwrap(),
            Err(Error::Cancelled {
                reason: CancelReason::Deadline,
                ..
            })
        ));
        let drain = report.drain.clone().unwrap();
        assert!(drain.ran_out, "{report}");
        assert_eq!((drain.scopes_at_start, drain.scopes_finished), (2, 0));
        assert!(
            drain.took >= budget && drain.took < grace,
            "{:?}",
            drain.took
        );
        assert_eq!(report.reason, CancelReason::Deadline);
        assert!(!report.scopes_finished);
        assert_eq!(
            report.cut_off.len(),
            0,
            "the stuck scope swept its own file"
        );
        assert_eq!(report.stats.live(), 0);
        // The grace is the total bound: cut at 1.5 s, then at most the sweep wait.
        assert!(took >= grace && took < grace + SLACK, "{took:?}");
        eprintln!("drain ran out: shutdown took {took:?} (grace {grace:?}, drain {budget:?})");
    });
}

#[test]
fn the_grace_stays_the_total_bound_when_the_drain_budget_is_longer() {
    scenario(Rt::Multi(2), "drain-over-grace", async |base| {
        let grace = Duration::from_millis(800);
        let sup = Supervisor::builder()
            .temp_base(&base)
            .grace(grace)
            .drain(Duration::MAX)
            .start()
            .unwrap();
        let (tx, rx) = oneshot::channel();
        let stuck = stuck(&sup, tx);
        rx.await.unwrap();
        let began = Instant::now();
        let report = sup.shutdown().await;
        let took = began.elapsed();
        assert!(stuck.await.unwrap().is_err());
        let drain = report.drain.clone().unwrap();
        assert!(drain.ran_out);
        assert!(
            drain.took >= grace && drain.took < grace + SLACK,
            "{:?}",
            drain.took
        );
        assert_eq!(report.reason, CancelReason::Deadline);
        assert!(took >= grace && took < grace + SLACK, "{took:?}");
        eprintln!("drain budget MAX, grace {grace:?}: shutdown took {took:?}");
    });
}

#[test]
fn force_during_the_drain_forces() {
    scenario(Rt::Multi(2), "drain-force", async |base| {
        let sup = Supervisor::builder()
            .temp_base(&base)
            .grace(Duration::from_secs(60))
            .drain(Duration::from_secs(30))
            .start()
            .unwrap();
        let (tx, rx) = oneshot::channel();
        let stuck = stuck(&sup, tx);
        rx.await.unwrap();
        let draining = sup.draining();
        let s = sup.clone();
        let shutdown = tokio::spawn(async move { s.shutdown().await });
        draining.await;
        let began = Instant::now();
        sup.force();
        let report = shutdown.await.unwrap();
        assert!(began.elapsed() < SLACK, "{:?}", began.elapsed());
        assert!(report.forced);
        assert_eq!(report.reason, CancelReason::ForcedShutdown);
        assert!(report.drain.unwrap().ran_out);
        assert!(matches!(
            stuck.await.unwrap(),
            Err(Error::Cancelled {
                reason: CancelReason::ForcedShutdown,
                ..
            })
        ));
        assert_eq!(report.stats.live(), 0);
    });
}

#[test]
fn a_forced_shutdown_skips_the_drain() {
    scenario(Rt::Multi(2), "drain-skipped", async |base| {
        let sup = Supervisor::builder()
            .temp_base(&base)
            .grace(Duration::from_secs(60))
            .drain(Duration::from_secs(30))
            .start()
            .unwrap();
        let (tx, rx) = oneshot::channel();
        let stuck = stuck(&sup, tx);
        rx.await.unwrap();
        let began = Instant::now();
        let report = sup.shutdown_now().await;
        assert!(began.elapsed() < SLACK);
        assert!(report.drain.is_none());
        assert!(stuck.await.unwrap().is_err());
    });
}

const ISOLATED: &str = "CUSTODIAN_DRAIN_ISOLATED";

#[test]
fn a_second_signal_during_the_drain_forces() {
    run_isolated("signals_in_their_own_process", ISOLATED, false);
}

/// Real SIGTERMs to this (isolated) process: the first starts the drain, which does not
/// cancel anything; the second forces.
#[test]
#[ignore = "changes process-wide signal handling: run by a_second_signal_during_the_drain_forces"]
fn signals_in_their_own_process() {
    if !is_isolated(ISOLATED, "signals_in_their_own_process") {
        return;
    }
    scenario(Rt::Multi(2), "drain-signals", async |base| {
        let sup = Supervisor::builder()
            .temp_base(&base)
            .grace(Duration::from_secs(60))
            .drain(Duration::from_secs(30))
            .handle_signals(true)
            .start()
            .unwrap();
        let (tx, rx) = oneshot::channel();
        let stuck = stuck(&sup, tx);
        rx.await.unwrap();
        let me = rustix::process::getpid();
        rustix::process::kill_process(me, rustix::process::Signal::TERM).unwrap();
        tokio::time::timeout(SLACK, sup.draining())
            .await
            .expect("the first signal starts the drain");
        // The drain holds: nothing is cancelled while it runs.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!sup.root().is_cancelled());
        assert!(!stuck.is_finished());
        let began = Instant::now();
        rustix::process::kill_process(me, rustix::process::Signal::TERM).unwrap();
        let report = tokio::time::timeout(SLACK, sup.wait_for_shutdown())
            .await
            .expect("the second signal forces");
        assert!(began.elapsed() < SLACK);
        assert!(report.forced);
        assert!(report.drain.unwrap().ran_out);
        assert!(matches!(
            stuck.await.unwrap(),
            Err(Error::Cancelled {
                reason: CancelReason::ForcedShutdown,
                ..
            })
        ));
    });
}
