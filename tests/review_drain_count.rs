//! From a review of the drain's count of top-level scopes (the atomic count with its
//! "counted" mark): new top-level scopes that keep arriving during a drain, each refused,
//! must not hold the drain's wait open after every scope it waited for has ended.
//! Refusals used to stay in the count until their end; a scope that starts after the
//! drain counted now leaves the count at once (`inner::drain`'s unit tests check that
//! deterministically). This test held on the code before that change too: it guards the
//! promise, it did not reproduce the window.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use custodian_suite::{Rt, scenario};
use tokio::sync::oneshot;
use tokio_custodian::{Error, Supervisor};

/// Tries new top-level scopes in a tight loop on its own thread, each refused at its
/// first poll (no runtime needed), until `stop`; returns how many it tried.
fn hammer(
    sup: Supervisor,
    stop: Arc<AtomicBool>,
    tried: Arc<AtomicU64>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut cx = Context::from_waker(Waker::noop());
        while !stop.load(Ordering::Relaxed) {
            let mut f = std::pin::pin!(sup.scope("late", async |_| ()));
            match f.as_mut().poll(&mut cx) {
                // Refused by the drain, then, once it has ended, by shutdown.
                Poll::Ready(Err(Error::Draining { .. } | Error::ShuttingDown { .. })) => {}
                Poll::Ready(other) => panic!("a late scope was not refused: {other:?}"),
                Poll::Pending => panic!("a late scope was not refused at once"),
            }
            tried.fetch_add(1, Ordering::Relaxed);
        }
    })
}

#[test]
fn scopes_that_keep_arriving_do_not_hold_the_drain_open() {
    scenario(Rt::Multi(2), "review-drain-arrivals", async |base| {
        let budget = Duration::from_secs(8);
        let sup = Supervisor::builder()
            .temp_base(&base)
            .grace(Duration::from_secs(30))
            .drain(budget)
            .start()
            .unwrap();
        // One request in flight, which ends as soon as the drain begins.
        let (tx, rx) = oneshot::channel();
        let s = sup.clone();
        let request = tokio::spawn(async move {
            s.scope("request", async |_| {
                let _ = tx.send(());
                s.draining().await;
            })
            .await
        });
        rx.await.unwrap();
        let draining = sup.draining();
        let s = sup.clone();
        let shutdown = tokio::spawn(async move { s.shutdown().await });
        draining.await;
        // Clients keep coming (and are refused) while the drain waits.
        let stop = Arc::new(AtomicBool::new(false));
        let tried = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..2)
            .map(|_| hammer(sup.clone(), stop.clone(), tried.clone()))
            .collect();
        let began = Instant::now();
        request.await.unwrap().unwrap();
        let report = tokio::time::timeout(budget * 2, shutdown)
            .await
            .expect("shutdown ended")
            .unwrap();
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            t.join().unwrap();
        }
        let took = began.elapsed();
        let drain = report.drain.clone().expect("a drain ran");
        assert!(tried.load(Ordering::Relaxed) > 0);
        assert_eq!(
            (drain.scopes_at_start, drain.scopes_finished),
            (1, 1),
            "{report}"
        );
        assert!(
            !drain.ran_out,
            "the drain ran out after its scope ended: {report}"
        );
        assert!(took < budget / 2, "{took:?}");
    });
}
