//! Many tasks on a 2-worker runtime acquiring and releasing thousands of resources by
//! every path, and acquisitions racing with shutdown. The property test over random
//! sequences of operations is in `core_model.rs`.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use common::{Guard, KINDS, Kind};
use custodian_suite::{Rt, assert_fds_settle, entries, exists, open_fds, scenario};
use tokio_custodian::{ReleasePath, ResourceKind, Scope, Supervisor};

async fn acquire(s: &Scope, kind: Kind) -> tokio_custodian::Result<Guard> {
    Ok(match kind {
        Kind::File => Guard::File(s.open("/dev/null").await?),
        Kind::Temp => Guard::Temp(s.temp_file().await?),
        Kind::Dir => Guard::Dir(s.temp_dir().await?),
    })
}

const TASKS: usize = 24;
const OPS: usize = 96;

#[derive(Clone, Copy, Debug, PartialEq)]
enum How {
    Drop,
    Close,
    Escape,
    Forget,
}

fn plan(i: usize) -> (Kind, How) {
    let how = [How::Drop, How::Close, How::Escape, How::Forget][(i / 3) % 4];
    (KINDS[i % 3], how)
}

#[test]
fn thousands_of_resources_from_many_tasks() {
    scenario(Rt::Multi(2), "stress", async |base| {
        let sup = Supervisor::builder().temp_base(&base).start().unwrap();
        // The start-up reap runs on the blocking pool: let it close its fds first.
        sup.reaped_at_start().await;
        let fds = open_fds();
        // A reader listing the registry while it changes.
        let stop = Arc::new(AtomicBool::new(false));
        let reads = Arc::new(AtomicU64::new(0));
        let reader = {
            let (sup, stop, reads) = (sup.clone(), stop.clone(), reads.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let _ = (
                        sup.live(),
                        sup.stats(),
                        sup.leaks(std::time::Duration::ZERO),
                    );
                    reads.fetch_add(1, Ordering::Relaxed);
                    tokio::task::yield_now().await;
                }
            })
        };
        let mut tasks = Vec::new();
        for t in 0..TASKS {
            let sup = sup.clone();
            tasks.push(tokio::spawn(async move {
                let escaped = sup
                    .scope(&format!("task-{t}"), async |s| {
                        let mut escaped = Vec::new();
                        for i in 0..OPS {
                            let (kind, how) = plan(t + i);
                            let g = acquire(&s, kind).await.unwrap();
                            match how {
                                How::Drop => drop(g),
                                How::Close => g.close().await.unwrap(),
                                How::Escape => escaped.push(g),
                                How::Forget => std::mem::forget(g),
                            }
                            if i % 8 == 0 {
                                tokio::task::yield_now().await;
                            }
                        }
                        escaped
                    })
                    .await
                    .unwrap();
                for g in &escaped {
                    assert!(!g.is_live());
                    assert!(matches!(g, Guard::File(_)) || !exists(&g.path()), "{g:?}");
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        reader.await.unwrap();
        assert!(reads.load(Ordering::Relaxed) > 0);

        let mut want: BTreeMap<(ResourceKind, ReleasePath), u64> = BTreeMap::new();
        for t in 0..TASKS {
            for i in 0..OPS {
                let (kind, how) = plan(t + i);
                let by = match how {
                    How::Drop => ReleasePath::Drop,
                    How::Close => ReleasePath::Close,
                    How::Escape | How::Forget => ReleasePath::ScopeEnd,
                };
                *want.entry((kind.resource(), by)).or_default() += 1;
            }
        }
        let stats = sup.stats();
        assert!(stats.is_consistent(), "{stats}");
        assert_eq!(stats.live(), 0, "{stats}");
        for kind in KINDS {
            let k = stats.kind(kind.resource());
            assert_eq!(k.created, (TASKS * OPS / 3) as u64, "{stats}");
            assert_eq!(k.failures, 0);
            for by in ReleasePath::ALL {
                let w = want.get(&(kind.resource(), by)).copied().unwrap_or(0);
                assert_eq!(k.released(by), w, "{kind:?} by {by}: {stats}");
            }
        }
        assert!(sup.live().is_empty());
        assert!(entries(sup.temp_root()).is_empty());
        assert_eq!(open_fds(), fds, "{:?}", custodian_suite::fd_targets());
        let report = sup.shutdown().await;
        assert!(report.alive_at_shutdown.is_empty() && report.failures.is_empty());
        assert_eq!(report.stats, stats);
    });
}

/// Tasks keep acquiring while shutdown runs: each acquisition either succeeds and is
/// released exactly once, or is refused with a cancellation error; nothing is left.
#[test]
fn acquisitions_racing_with_shutdown() {
    scenario(Rt::Multi(2), "race-shutdown", async |base| {
        // Taken once the process-wide, lazily created fds exist (a first supervisor's
        // start, shutdown and drop) and the count has settled. A refused acquisition's
        // clean-up may still be finishing on the blocking pool when its task returns the
        // refusal, so each round waits for the count to come back rather than sampling it.
        let warm = Supervisor::builder().temp_base(&base).start().unwrap();
        drop(warm.temp_file().await.unwrap());
        warm.shutdown().await;
        drop(warm);
        let fds = custodian_suite::settled_fds().await;
        for round in 0..4 {
            let sup = Supervisor::builder()
                .temp_base(&base)
                .grace(std::time::Duration::from_secs(10))
                .start()
                .unwrap();
            let mut tasks = Vec::new();
            for t in 0..8 {
                let sup = sup.clone();
                tasks.push(tokio::spawn(async move {
                    let mut ok = 0u64;
                    for i in 0.. {
                        let kind = KINDS[(t + i) % 3];
                        let r = if i % 2 == 0 {
                            acquire(&sup.root(), kind).await.map(drop)
                        } else {
                            sup.scope("s", async |s| acquire(&s, kind).await.map(drop))
                                .await
                                .and_then(|r| r)
                        };
                        match r {
                            Ok(()) => ok += 1,
                            Err(e) if e.is_cancellation() => return ok,
                            Err(e) => panic!("task {t}: {e:?}"),
                        }
                    }
                    ok
                }));
            }
            tokio::time::sleep(std::time::Duration::from_millis(5 + 10 * round)).await;
            let report = sup.shutdown().await;
            let mut ok = 0;
            for t in tasks {
                ok += t.await.unwrap();
            }
            let stats = sup.stats();
            assert!(stats.is_consistent(), "{stats}");
            assert_eq!(stats.live(), 0, "{stats}");
            let created: u64 = stats.kinds.values().map(|k| k.created).sum();
            assert!(created >= ok, "{created} < {ok}");
            assert!(report.failures.is_empty(), "{report}");
            assert_eq!(report.temp_root_error, None, "{report}");
            assert!(!exists(sup.temp_root()), "{report}");
            drop(sup);
            assert_fds_settle(fds, &format!("round {round}"));
        }
    });
}
