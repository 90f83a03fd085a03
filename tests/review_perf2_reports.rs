//! Review of issue 22's shared records (`LiveResource`, `LeakRecord` as handles to one
//! allocation per listing or shutdown): no record lost or duplicated, ages as measured,
//! every leak in `Supervisor::leaked()` after shutdown (graceful and forced), and every
//! field through a JSON round trip.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use custodian_suite::{Rt, exists, scenario};
use tokio_custodian::{
    LeakRecord, LiveResource, ReleasePath, ResourceKind, ShutdownReport, Supervisor,
};

const ROOT_LEFT: usize = 1500; // more than the 1024 leak records kept

/// Every field of `a` and `b` equal; the age to within a microsecond (JSON carries it as
/// fractional milliseconds).
fn same(a: &LiveResource, b: &LiveResource) {
    assert_eq!(
        (a.id(), a.kind(), a.label(), a.scope(), a.site(), a.path()),
        (b.id(), b.kind(), b.label(), b.scope(), b.site(), b.path())
    );
    assert!(
        a.age().abs_diff(b.age()) < Duration::from_micros(1),
        "{a} / {b}"
    );
}

fn same_leak(a: &LeakRecord, b: &LeakRecord) {
    same(a, b);
    assert_eq!(a.released_by(), b.released_by());
}

fn round_trip(report: &ShutdownReport) {
    let json = serde_json::to_string(report).unwrap();
    let back: ShutdownReport = serde_json::from_str(&json).unwrap();
    assert_eq!(back.alive_at_shutdown.len(), report.alive_at_shutdown.len());
    for (a, b) in report.alive_at_shutdown.iter().zip(&back.alive_at_shutdown) {
        same(a, b);
    }
    for (a, b) in report.cut_off.iter().zip(&back.cut_off) {
        same(a, b);
    }
    assert_eq!(back.leaks.len(), report.leaks.len());
    for (a, b) in report.leaks.iter().zip(&back.leaks) {
        same_leak(a, b);
    }
    // One record on its own, too.
    if let Some(l) = report.leaks.first() {
        let back: LeakRecord = serde_json::from_value(serde_json::to_value(l).unwrap()).unwrap();
        same_leak(l, &back);
        let v = serde_json::to_value(l).unwrap();
        for field in [
            "id",
            "kind",
            "label",
            "scope",
            "site",
            "age_ms",
            "path",
            "released_by",
        ] {
            assert!(v.get(field).is_some(), "{field} missing from {v}");
        }
    }
}

fn check(forced: bool) {
    scenario(Rt::Multi(2), "perf2-reports", async |base| {
        let sup = Supervisor::builder()
            .temp_base(&base)
            .grace(Duration::from_millis(300))
            .start()
            .unwrap();
        // A leak at a scope's end, during the supervisor's life.
        sup.scope("ended", async |s| {
            std::mem::forget(s.temp_file().await.unwrap())
        })
        .await
        .unwrap();
        let during = sup.leaked();
        assert_eq!(during.len(), 1);
        // Leftovers of the root, made at known instants.
        let made = Instant::now();
        let mut expect = Vec::new();
        for i in 0..ROOT_LEFT {
            let t = sup.temp().label(format!("left-{i}")).file().await.unwrap();
            expect.push((t.id(), t.path().to_path_buf(), format!("left-{i}")));
            std::mem::forget(t);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let before = made.elapsed();
        let report = if forced {
            sup.shutdown_now().await
        } else {
            sup.shutdown().await
        };
        let after = made.elapsed();
        // Every leftover once, in id order, with its label, scope, path and age.
        let ids: Vec<_> = report.alive_at_shutdown.iter().map(|r| r.id()).collect();
        assert_eq!(ids, expect.iter().map(|e| e.0).collect::<Vec<_>>());
        for (r, (id, path, label)) in report.alive_at_shutdown.iter().zip(&expect) {
            assert_eq!(
                (r.id(), r.label(), r.scope()),
                (*id, label.as_str(), "root")
            );
            assert_eq!(
                (r.kind(), r.path()),
                (ResourceKind::TempFile, Some(path.as_path()))
            );
            assert!(!exists(path));
            assert!(
                r.age() >= Duration::from_millis(100) && r.age() <= after,
                "{r}"
            );
            let _ = before;
        }
        assert!(report.cut_off.is_empty());
        // The leak records: the scope's, then the newest of shutdown's, none twice.
        let leaked = sup.leaked();
        assert_eq!(leaked.len(), 1024);
        assert_eq!(leaked.len(), report.leaks.len());
        for (a, b) in leaked.iter().zip(&report.leaks) {
            same_leak(a, b);
        }
        let unique: BTreeSet<_> = leaked.iter().map(|l| l.id()).collect();
        assert_eq!(unique.len(), leaked.len(), "a leak recorded twice");
        // In release order (newest first, as before issue 22): the last 1024 released
        // are kept, the oldest leftovers.
        let last_released = report.alive_at_shutdown[..1024].iter().rev();
        for (l, r) in leaked.iter().zip(last_released) {
            assert_eq!(l.released_by(), ReleasePath::Shutdown);
            assert_eq!(l.resource(), r, "shares the report's record");
        }
        let k = report.stats.kind(ResourceKind::TempFile);
        assert_eq!(
            k.released.get(&ReleasePath::Shutdown),
            Some(&(ROOT_LEFT as u64))
        );
        assert_eq!(k.released.get(&ReleasePath::ScopeEnd), Some(&1));
        assert_eq!(k.live, 0);
        round_trip(&report);
        // Every caller gets the same report.
        assert_eq!(sup.shutdown().await, report);
    });
}

#[test]
fn graceful_shutdown_records_every_leftover_once() {
    check(false);
}

#[test]
fn forced_shutdown_records_every_leftover_once() {
    check(true);
}

/// A scope cut off by a forced shutdown: its resources are released `Cancelled`, by the
/// scope or by shutdown (then listed as cut off), never as leaks.
#[test]
fn a_forced_shutdown_cuts_a_running_scope_off_without_leak_records() {
    scenario(Rt::Multi(2), "perf2-cut-off", async |base| {
        let sup = Supervisor::builder().temp_base(&base).start().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let s2 = sup.clone();
        let job = tokio::spawn(async move {
            s2.scope("busy", async |s| {
                let mut held = Vec::new();
                for _ in 0..50 {
                    held.push(s.temp_file().await.unwrap());
                }
                let _ = tx.send(
                    held.iter()
                        .map(|t| t.path().to_path_buf())
                        .collect::<Vec<_>>(),
                );
                std::future::pending::<()>().await;
            })
            .await
        });
        let paths = rx.await.unwrap();
        let report = sup.shutdown_now().await;
        let _ = job.await;
        assert!(
            report.leaks.is_empty() && report.alive_at_shutdown.is_empty(),
            "{report}"
        );
        let k = report.stats.kind(ResourceKind::TempFile);
        assert_eq!(k.released.get(&ReleasePath::Cancelled), Some(&50), "{k:?}");
        assert!(report.cut_off.len() <= 50);
        assert!(paths.iter().all(|p| !exists(p)));
        round_trip(&report);
    });
}
