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

/// Shutdown racing scopes that end, sweep and drop guards on other threads: every
/// resource reclaimed once, listed at most once, and the lists agree with the stats.
#[test]
fn shutdown_racing_scope_ends_and_drops_lists_each_resource_at_most_once() {
    use custodian_suite::reclaims::Count;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU8, Ordering};
    for round in 0..20u64 {
        scenario(Rt::Multi(2), "perf2-shutdown-race", async |base| {
            let sup = Supervisor::builder()
                .temp_base(&base)
                .grace(Duration::from_millis(20 + round))
                .start()
                .unwrap();
            const EACH: usize = 20;
            const SCOPES: usize = 16;
            let slots: Arc<Vec<AtomicU8>> = Arc::new(
                (0..SCOPES * EACH + EACH)
                    .map(|_| AtomicU8::new(0))
                    .collect(),
            );
            let root = sup.root();
            for i in 0..EACH {
                let c = Count {
                    slots: slots.clone(),
                    at: SCOPES * EACH + i,
                };
                std::mem::forget(root.register(ResourceKind::Lock, "root", None, c).unwrap());
            }
            let mut jobs = Vec::new();
            let ready = Arc::new(tokio::sync::Barrier::new(SCOPES + 1));
            for j in 0..SCOPES {
                let (sup2, slots, ready) = (sup.clone(), slots.clone(), ready.clone());
                jobs.push(tokio::spawn(async move {
                    sup2.scope("job", async move |s| {
                        let mut regs = Vec::new();
                        for i in 0..EACH {
                            let c = Count {
                                slots: slots.clone(),
                                at: j * EACH + i,
                            };
                            regs.push(s.register(ResourceKind::Lock, "j", None, c).unwrap());
                        }
                        ready.wait().await;
                        let keep: Vec<_> = regs.drain(..EACH / 2).collect();
                        std::thread::spawn(move || drop(keep));
                        for r in regs.drain(..EACH / 4) {
                            std::mem::forget(r);
                        }
                        tokio::time::sleep(Duration::from_millis((j as u64 * 7 + round) % 40))
                            .await;
                        regs
                    })
                    .await
                }));
            }
            ready.wait().await;
            tokio::time::sleep(Duration::from_millis(round % 10)).await;
            let report = if round % 2 == 0 {
                sup.shutdown().await
            } else {
                sup.shutdown_now().await
            };
            for j in jobs {
                let _ = j.await;
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while slots.iter().any(|s| s.load(Ordering::SeqCst) == 0) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let counts: Vec<u8> = slots.iter().map(|s| s.load(Ordering::SeqCst)).collect();
            assert!(counts.iter().all(|&n| n == 1), "round {round}: {counts:?}");
            let listed: Vec<_> = report
                .alive_at_shutdown
                .iter()
                .chain(&report.cut_off)
                .map(|r| r.id())
                .collect();
            let unique: BTreeSet<_> = listed.iter().collect();
            assert_eq!(unique.len(), listed.len(), "round {round}: listed twice");
            let leaks: Vec<_> = report.leaks.iter().map(|l| l.id()).collect();
            let unique: BTreeSet<_> = leaks.iter().collect();
            assert_eq!(
                unique.len(),
                leaks.len(),
                "round {round}: a leak recorded twice"
            );
            let k = report.stats.kind(ResourceKind::Lock);
            let by = |p| k.released.get(&p).copied().unwrap_or(0) as usize;
            assert_eq!(k.created as usize, (SCOPES + 1) * EACH);
            assert_eq!(k.released_total(), k.created, "round {round}: {k:?}");
            assert_eq!(by(ReleasePath::Shutdown), EACH, "round {round}: {k:?}");
            assert!(
                report.cut_off.len() <= by(ReleasePath::Cancelled),
                "round {round}"
            );
            assert!(
                report.alive_at_shutdown.len()
                    <= by(ReleasePath::Shutdown) + by(ReleasePath::ScopeEnd)
            );
            // Every leak released is recorded (fewer than the 1024 kept).
            assert_eq!(
                report.leaks.len(),
                by(ReleasePath::Shutdown) + by(ReleasePath::ScopeEnd),
                "round {round}: {k:?}"
            );
            assert_eq!(sup.leaked().len(), report.leaks.len());
        });
    }
}
