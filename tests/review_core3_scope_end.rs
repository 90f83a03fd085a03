//! Review of the scope runner's end (scope3) and of the entry's birth instant (reg3),
//! with real resources: ages read from the stored birth, a scope future dropped while
//! it waits for its clean-ups after its drop guards were forgotten, and children, temp
//! files and temp dirs racing their scopes' ends (no process, zombie, path or fd left).

mod review_core3_support;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use custodian_suite::{Rt, scenario};
use review_core3_support::{Book, Counted, Ends, stats_balance};
use tokio_custodian::{Cleanup, Reclaim, ReleasePath, ResourceKind, Scope, Supervisor};

#[test]
fn ages_follow_the_entrys_birth_in_listings_and_leak_records() {
    // An entry stores its birth instant (reg3): the listing's age, and the leak
    // record's age when its scope's end reclaims it, both read the clock then.
    let book = Book::new(4);
    scenario(Rt::Paused, "core3-ages", async |base| {
        let sup = Supervisor::builder().temp_base(&base).start().unwrap();
        sup.reaped_at_start().await;
        let kept = sup
            .root()
            .register(
                ResourceKind::Lock,
                "aged",
                None,
                Counted::new(&book, Ends::Done),
            )
            .unwrap();
        tokio::time::advance(Duration::from_secs(61)).await;
        let age = sup.live()[0].age();
        assert!(
            age >= Duration::from_secs(61) && age < Duration::from_secs(62),
            "{age:?}"
        );
        sup.scope("s", async |s| {
            let r = s
                .register(
                    ResourceKind::Lock,
                    "forgotten",
                    None,
                    Counted::new(&book, Ends::Done),
                )
                .unwrap();
            std::mem::forget(r);
            tokio::time::advance(Duration::from_secs(7)).await;
        })
        .await
        .unwrap();
        let leaked = sup.leaked();
        assert_eq!(leaked.len(), 1, "{leaked:?}");
        let age = leaked[0].resource().age();
        assert!(
            age >= Duration::from_secs(7) && age < Duration::from_secs(8),
            "{age:?}"
        );
        assert_eq!(leaked[0].released_by(), ReleasePath::ScopeEnd);
        drop(kept);
        sup.shutdown().await;
        assert_eq!(book.check(), 2);
        stats_balance(&sup, 2);
    });
}

#[test]
fn a_scope_future_dropped_while_it_waits_for_clean_ups_releases_each_once() {
    // After the body has ended the runner's drop guards are forgotten (scope3); the
    // runner then awaits its clean-ups. Dropped at that await (a caller's timeout),
    // nothing may be released twice or lost, and the drain's count of top-level scopes
    // must come back to zero.
    let book = Book::new(8);
    scenario(Rt::Multi(2), "core3-cancel-wait", async |base| {
        let sup = Supervisor::builder()
            .temp_base(&base)
            .drain(Duration::from_secs(1))
            .start()
            .unwrap();
        sup.reaped_at_start().await;
        let (go, wait) = tokio::sync::oneshot::channel::<()>();
        struct Slow(Counted, Option<tokio::sync::oneshot::Receiver<()>>);
        impl Reclaim for Slow {
            fn reclaim(self: Box<Self>) -> Cleanup {
                let Slow(c, rx) = *self;
                c.book.reclaimed[c.i].fetch_add(1, Ordering::SeqCst);
                Cleanup::Async(Box::pin(async move {
                    if let Some(rx) = rx {
                        let _ = rx.await;
                    }
                    drop(c);
                    Ok(())
                }))
            }
        }
        let slow = Slow(Counted::new(&book, Ends::Done), Some(wait));
        let scope = sup.scope("waits", async |s| {
            // Forgotten: the scope's sweep releases it, its clean-up outlives the sweep.
            std::mem::forget(s.register(ResourceKind::Lock, "slow", None, slow).unwrap());
        });
        let timed_out = tokio::time::timeout(Duration::from_millis(100), scope).await;
        assert!(timed_out.is_err(), "the scope waited for its clean-up");
        assert_eq!(sup.stats().live(), 0);
        go.send(()).unwrap();
        let report = sup.shutdown().await;
        let drain = report.drain.expect("a drain ran");
        assert_eq!(drain.scopes_at_start, 0, "{drain:?}");
        assert_eq!(book.check(), 1);
        stats_balance(&sup, 1);
    });
}

/// Pids of live processes in process group `pgid` (zombies included: not yet reaped).
fn in_group(pgid: u32) -> Vec<u32> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().filter_map(Result::ok) {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
            continue;
        };
        if rest.split_whitespace().nth(2) == Some(&pgid.to_string()) {
            v.push(pid);
        }
    }
    v
}

#[test]
fn children_and_temp_paths_racing_scope_ends_leave_nothing() {
    // Real resources on the same paths: children (an asynchronous clean-up: TERM, wait),
    // temp files and dirs, dropped here or on another thread, kept past their scope's
    // end, forgotten, or in a scope whose future is dropped mid-body. After shutdown no
    // process of theirs, no zombie, no path and no fd is left (`scenario` checks the
    // last two).
    let pgids = scenario(Rt::Multi(2), "core3-real", async |base| {
        let check = tokio_custodian::testing::LeakCheck::builder()
            .watch_dir(&base)
            .start();
        let sup = Supervisor::builder()
            .temp_base(&base)
            .grace(Duration::from_secs(10))
            .start()
            .unwrap();
        sup.reaped_at_start().await;
        let (to_dropper, dropped) = mpsc::channel::<Box<dyn Send>>();
        let dropper = std::thread::spawn(move || {
            for g in dropped {
                drop(g);
            }
        });
        let pgids = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for t in 0..4usize {
            let (sup, to_dropper, pgids) = (sup.clone(), to_dropper.clone(), pgids.clone());
            tasks.push(tokio::spawn(async move {
                let mut kept: Vec<Box<dyn Send>> = Vec::new();
                for round in 0..6usize {
                    let k = t + round;
                    // Told when a body to be cut off has made all its resources: the cut
                    // comes then, however long the spawns took (a 50 ms timeout cut
                    // slow bodies off before their third spawn under load).
                    let reached = tokio::sync::Notify::new();
                    let body = async |s: Scope| {
                        let mut out: Vec<Box<dyn Send>> = Vec::new();
                        for n in 0..3usize {
                            let child = s.command("sleep").arg("30").spawn().unwrap();
                            pgids.lock().unwrap().push(child.process_group());
                            let file = s.temp_file().await.unwrap();
                            let dir = s.temp_dir().await.unwrap();
                            let guards: [Box<dyn Send>; 3] =
                                [Box::new(child), Box::new(file), Box::new(dir)];
                            for (j, g) in guards.into_iter().enumerate() {
                                match (k + n + j) % 4 {
                                    0 => drop(g),
                                    1 => to_dropper.send(g).unwrap(),
                                    2 => out.push(g),
                                    _ => std::mem::forget(g),
                                }
                            }
                        }
                        tokio::task::yield_now().await;
                        if k % 3 == 0 {
                            // Cut off mid-body below.
                            reached.notify_one();
                            std::future::pending::<()>().await;
                        }
                        out
                    };
                    let scope = sup.scope(&format!("t{t}-{round}"), body);
                    if k % 3 == 0 {
                        tokio::select! {
                            _ = scope => panic!("a body that never ends ended"),
                            // The scope's future is dropped mid-body.
                            () = reached.notified() => {}
                        }
                    } else {
                        let r = tokio::time::timeout(Duration::from_secs(30), scope).await;
                        kept.extend(r.expect("a scope that ends").unwrap());
                    }
                    if round % 2 == 1 {
                        // Escaped guards dropped after their scope swept them.
                        for g in kept.drain(..) {
                            to_dropper.send(g).unwrap();
                        }
                    }
                }
                kept
            }));
        }
        let mut kept = Vec::new();
        for t in tasks {
            kept.extend(t.await.unwrap());
        }
        drop(to_dropper);
        sup.shutdown().await;
        drop(kept);
        tokio::task::spawn_blocking(move || dropper.join().unwrap())
            .await
            .unwrap();
        let st = sup.stats();
        assert!(st.is_consistent(), "{st:?}");
        assert_eq!(st.live(), 0, "{st:?}");
        drop(sup);
        let report = check.finish().await;
        assert!(report.is_clean(), "{report}");
        let pgids = pgids.lock().unwrap().clone();
        assert_eq!(pgids.len(), 4 * 6 * 3);
        pgids
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let left = loop {
        let left: Vec<_> = pgids.iter().flat_map(|&g| in_group(g)).collect();
        if left.is_empty() || std::time::Instant::now() > deadline {
            break left;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(left.is_empty(), "processes left: {left:?}");
    let z = custodian_suite::zombie_children();
    assert!(z.is_empty(), "zombies: {z:?}");
}

#[test]
fn a_reclaim_panicking_in_a_sweep_does_not_abandon_the_rest_of_the_scopes_end() {
    // Two forgotten resources; the newer one's reclaim panics when the scope's end
    // sweeps it (newest first). The emergency path turns such a panic into a recorded
    // failure and goes on ("a panicking one must not abandon the releases after it").
    // The sweep let it unwind out of the runner at once (a defect older than reg3 and
    // scope3): the older resource stayed registered until shutdown, and the handle that
    // escaped the body was never cancelled. Now the panic still reaches the scope's
    // caller, after the rest of the scope's end.
    let book = Book::new(4);
    scenario(Rt::Multi(2), "core3-sweep-panic", async |base| {
        let sup = Supervisor::builder().temp_base(&base).start().unwrap();
        sup.reaped_at_start().await;
        let escaped: Arc<Mutex<Option<Scope>>> = Arc::default();
        let (b, s2, e2) = (book.clone(), sup.clone(), escaped.clone());
        let ended = tokio::spawn(async move {
            s2.scope("s", async |s| {
                let older = Counted::new(&b, Ends::Done);
                let newer = Counted::new(&b, Ends::Panics);
                std::mem::forget(
                    s.register(ResourceKind::Lock, "older", None, older)
                        .unwrap(),
                );
                std::mem::forget(
                    s.register(ResourceKind::Lock, "newer", None, newer)
                        .unwrap(),
                );
                *e2.lock().unwrap() = Some(s.clone());
            })
            .await
        })
        .await;
        assert!(
            ended.is_err(),
            "the reclaim's panic reaches the scope's caller"
        );
        let older = (
            book.reclaimed[0].load(Ordering::SeqCst),
            book.dropped[0].load(Ordering::SeqCst),
        );
        let live = sup.stats().live();
        let cancelled = escaped.lock().unwrap().take().unwrap().is_cancelled();
        sup.shutdown().await;
        assert_eq!(older, (1, 1), "the older resource was left to shutdown");
        assert_eq!(live, 0, "left registered after its scope's end");
        assert!(
            cancelled,
            "the escaped handle outlived its scope uncancelled"
        );
    });
}
