//! Review of issue 22's release bookkeeping (no per-scope id list: a scope's end filters
//! the registry by scope when its live count says something is left; a drop releases
//! inline): registrations, transfers and drops racing a scope's close, on many threads.
//! Every resource handed to `register` is reclaimed exactly once, nothing stays
//! registered to a closed scope, and a failed transfer leaves the resource where it was.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use custodian_suite::reclaims::Count;
use custodian_suite::{Rt, scenario};
use tokio_custodian::{Registration, ReleasePath, ResourceKind, Supervisor};

const THREADS: usize = 4;
const ROUNDS: usize = 300;
const SLOTS: usize = 1 << 20;

fn slots() -> Arc<Vec<AtomicU8>> {
    Arc::new((0..SLOTS).map(|_| AtomicU8::new(0)).collect())
}

/// Every slot below `used` was reclaimed exactly once, none above.
fn exactly_once(slots: &[AtomicU8], used: usize) {
    let bad: Vec<(usize, u8)> = slots[..used]
        .iter()
        .enumerate()
        .map(|(i, s)| (i, s.load(Ordering::SeqCst)))
        .filter(|&(_, n)| n != 1)
        .take(10)
        .collect();
    assert!(
        bad.is_empty(),
        "reclaimed not exactly once: {bad:?} (of {used})"
    );
    assert!(slots[used..].iter().all(|s| s.load(Ordering::SeqCst) == 0));
}

fn stats_add_up(sup: &Supervisor) {
    let k = sup.stats().kind(ResourceKind::Lock);
    assert_eq!(k.created, k.released_total() + k.live, "{k:?}");
}

#[test]
fn registrations_racing_a_scope_close_are_each_reclaimed_exactly_once() {
    scenario(Rt::Multi(2), "perf2-register-race", async |base| {
        let sup = Supervisor::builder().temp_base(&base).start().unwrap();
        let slots = slots();
        let next = Arc::new(AtomicUsize::new(0));
        for round in 0..ROUNDS {
            let (s2, n2) = (slots.clone(), next.clone());
            let threads = sup
                .scope("racing", async move |s| {
                    let go = Arc::new(std::sync::Barrier::new(THREADS + 1));
                    let threads: Vec<_> = (0..THREADS)
                        .map(|t| {
                            let (s, slots, next, go) =
                                (s.clone(), s2.clone(), n2.clone(), go.clone());
                            std::thread::spawn(move || {
                                go.wait();
                                let mut kept: Vec<Registration> = Vec::new();
                                for i in 0usize.. {
                                    let at = next.fetch_add(1, Ordering::SeqCst);
                                    // Under load the scope closes late: the slots are
                                    // the bound, not the close (no registration
                                    // past them, so none is left unchecked).
                                    if at >= SLOTS {
                                        break;
                                    }
                                    let r = s.register(
                                        ResourceKind::Lock,
                                        "r",
                                        None,
                                        Count {
                                            slots: slots.clone(),
                                            at,
                                        },
                                    );
                                    let Ok(r) = r else { break };
                                    match (i + t) % 3 {
                                        0 => std::mem::forget(r),
                                        1 => drop(r),
                                        _ => kept.push(r),
                                    }
                                }
                                kept
                            })
                        })
                        .collect();
                    go.wait();
                    // Let them register a little before the body ends and the scope closes.
                    std::thread::sleep(Duration::from_micros((round % 7) as u64 * 50));
                    threads
                })
                .await
                .unwrap();
            // The scope has swept: what is still registered to it is a leak nobody reclaims.
            let kept: Vec<Registration> = threads
                .into_iter()
                .flat_map(|t| t.join().unwrap())
                .collect();
            let live: Vec<_> = sup
                .live()
                .into_iter()
                .filter(|r| r.scope() == "racing")
                .collect();
            assert!(
                live.is_empty(),
                "round {round}: left registered to a closed scope: {live:?}"
            );
            assert!(kept.iter().all(|r| !r.is_live()), "round {round}");
            drop(kept);
        }
        let used = next.load(Ordering::SeqCst).min(SLOTS);
        exactly_once(&slots, used);
        stats_add_up(&sup);
        let k = sup.stats().kind(ResourceKind::Lock);
        assert_eq!(k.live, 0, "{k:?}");
        let report = sup.shutdown().await;
        assert!(report.alive_at_shutdown.is_empty());
    });
}

#[test]
fn a_transfer_racing_the_target_scopes_close_either_moves_or_leaves_it_in_place() {
    scenario(Rt::Multi(2), "perf2-transfer-race", async |base| {
        let sup = Supervisor::builder().temp_base(&base).start().unwrap();
        let slots = slots();
        let next = Arc::new(AtomicUsize::new(0));
        let released_by_failed_transfer = Arc::new(AtomicUsize::new(0));
        for round in 0..ROUNDS {
            let (s2, n2, bad) = (
                slots.clone(),
                next.clone(),
                released_by_failed_transfer.clone(),
            );
            let root = sup.root();
            let threads = sup
                .scope("target", async move |s| {
                    let go = Arc::new(std::sync::Barrier::new(THREADS + 1));
                    let threads: Vec<_> = (0..THREADS)
                        .map(|_| {
                            let (s, root, slots, next, go, bad) = (
                                s.clone(),
                                root.clone(),
                                s2.clone(),
                                n2.clone(),
                                go.clone(),
                                bad.clone(),
                            );
                            std::thread::spawn(move || {
                                go.wait();
                                let mut kept = Vec::new();
                                loop {
                                    let at = next.fetch_add(1, Ordering::SeqCst);
                                    if at >= SLOTS {
                                        break;
                                    }
                                    let c = Count {
                                        slots: slots.clone(),
                                        at,
                                    };
                                    let r =
                                        root.register(ResourceKind::Lock, "t", None, c).unwrap();
                                    match r.transfer(&s) {
                                        Ok(()) => kept.push(r),
                                        Err(_) => {
                                            // Refused: nothing moved, it is still the root's.
                                            if !r.is_live() {
                                                bad.fetch_add(1, Ordering::SeqCst);
                                            }
                                            kept.push(r);
                                            break;
                                        }
                                    }
                                }
                                kept
                            })
                        })
                        .collect();
                    go.wait();
                    std::thread::sleep(Duration::from_micros((round % 7) as u64 * 50));
                    threads
                })
                .await
                .unwrap();
            let kept: Vec<Registration> = threads
                .into_iter()
                .flat_map(|t| t.join().unwrap())
                .collect();
            let live: Vec<_> = sup
                .live()
                .into_iter()
                .filter(|r| r.scope() == "target")
                .collect();
            assert!(
                live.is_empty(),
                "round {round}: left registered to a closed scope: {live:?}"
            );
            drop(kept);
            assert!(sup.live().is_empty(), "round {round}");
        }
        exactly_once(&slots, next.load(Ordering::SeqCst).min(SLOTS));
        stats_add_up(&sup);
        assert_eq!(
            released_by_failed_transfer.load(Ordering::SeqCst),
            0,
            "a transfer that failed (ScopeClosed) released the caller's resource"
        );
        sup.shutdown().await;
    });
}

#[test]
fn drops_racing_a_scope_sweep_release_each_once_by_one_path() {
    scenario(Rt::Multi(2), "perf2-drop-race", async |base| {
        let sup = Supervisor::builder().temp_base(&base).start().unwrap();
        let slots = slots();
        let mut used = 0;
        for _ in 0..ROUNDS {
            let (s2, from) = (slots.clone(), used);
            let regs = sup
                .scope("dropping", async move |s| {
                    (from..from + 64)
                        .map(|at| {
                            let c = Count {
                                slots: s2.clone(),
                                at,
                            };
                            s.register(ResourceKind::Lock, "d", None, c).unwrap()
                        })
                        .collect::<Vec<_>>()
                })
                .await;
            used += 64;
            // Escaped guards: the scope swept them (ScopeEnd); dropping them now is a no-op.
            drop(regs);
        }
        // Guards dropped on other threads while the scope's end sweeps them.
        for _ in 0..ROUNDS {
            let (s2, from) = (slots.clone(), used);
            sup.scope("dropping2", async move |s| {
                let regs: Vec<Registration> = (from..from + 64)
                    .map(|at| {
                        let c = Count {
                            slots: s2.clone(),
                            at,
                        };
                        s.register(ResourceKind::Lock, "d", None, c).unwrap()
                    })
                    .collect();
                let mut halves = regs.into_iter();
                let a: Vec<_> = halves.by_ref().take(32).collect();
                let b: Vec<_> = halves.collect();
                std::thread::spawn(move || drop(a));
                std::thread::spawn(move || drop(b));
            })
            .await
            .unwrap();
            used += 64;
        }
        tokio_custodian_wait(&sup).await;
        exactly_once(&slots, used);
        stats_add_up(&sup);
        let k = sup.stats().kind(ResourceKind::Lock);
        let by = |p| k.released.get(&p).copied().unwrap_or(0);
        assert_eq!(
            by(ReleasePath::ScopeEnd) + by(ReleasePath::Drop),
            used as u64,
            "{k:?}"
        );
        assert!(by(ReleasePath::ScopeEnd) >= (ROUNDS * 64) as u64, "{k:?}");
        sup.shutdown().await;
    });
}

/// Waits until nothing is registered (threads dropping guards finish a moment later).
async fn tokio_custodian_wait(sup: &Supervisor) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sup.live().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A guard's drop reads its scope's cancellation from flags (its scope's and its
/// ancestors'), not the token: the path must still say what the tokens say, for a
/// grandparent cancelled, a scope born under a cancelled ancestor, a drop on another
/// thread, and an uncancelled sibling.
#[test]
fn a_drop_is_cancelled_exactly_when_some_ancestor_is() {
    scenario(Rt::Multi(2), "perf2-drop-path", async |base| {
        let sup = Supervisor::builder().temp_base(&base).start().unwrap();
        let slots = slots();
        let paths = sup
            .scope("a", async |a| {
                a.scope("b", async |b| {
                    let reg = |s: &tokio_custodian::Scope, at| {
                        let c = Count {
                            slots: slots.clone(),
                            at,
                        };
                        s.register(ResourceKind::Lock, "p", None, c).unwrap()
                    };
                    let stats = || {
                        let k = sup.stats().kind(ResourceKind::Lock);
                        let by = |p| k.released.get(&p).copied().unwrap_or(0);
                        (by(ReleasePath::Drop), by(ReleasePath::Cancelled))
                    };
                    let mut seen = Vec::new();
                    drop(reg(&b, 0));
                    seen.push(stats());
                    let held = reg(&b, 1);
                    a.cancel();
                    std::thread::spawn(move || drop(held)).join().unwrap();
                    seen.push(stats());
                    // Born under a cancelled ancestor: cancelled at once.
                    b.scope("c", async |c| {
                        assert!(c.is_cancelled());
                        drop(reg(&c, 2));
                    })
                    .await
                    .unwrap();
                    seen.push(stats());
                    seen
                })
                .await
                .unwrap()
            })
            .await
            .unwrap();
        assert_eq!(paths, [(1, 0), (1, 1), (1, 2)]);
        // A sibling never cancelled: its drops are plain drops.
        sup.scope("d", async |d| {
            let c = Count {
                slots: slots.clone(),
                at: 3,
            };
            drop(d.register(ResourceKind::Lock, "p", None, c).unwrap());
        })
        .await
        .unwrap();
        let k = sup.stats().kind(ResourceKind::Lock);
        assert_eq!(k.released.get(&ReleasePath::Drop), Some(&2), "{k:?}");
        exactly_once(&slots, 4);
        sup.shutdown().await;
    });
}
