//! Regressions found by the review of issue 14's hot-path changes: the shared `/proc`
//! group census that child stops use (one pass per batch of asks, through a
//! process-wide static shared by every runtime).
//!
//! Each test stops a "victim" child whose group outlives its leader: a member that
//! ignores SIGTERM, sleeps, then writes a marker and exits. A stop with a long grace
//! must wait for that member; a wrong "the group is empty" answer makes the stop reap
//! at once, and the reap's final SIGKILL kills the member before it writes its marker.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use custodian_suite::{wait_group_size, wait_groups_gone};
use tokio_custodian::Supervisor;

const SETTLE: Duration = Duration::from_secs(5);

/// How long a victim's member outlives the SIGTERM to its group.
const MEMBER_LIFE: &str = "1.5";

fn marker(tag: &str, n: usize) -> PathBuf {
    let p = std::env::temp_dir().join(format!(
        "custodian-review-perf-{}-{tag}-{n}",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&p);
    p
}

/// A child whose leader dies on SIGTERM while a member (TERM ignored) lives on for
/// [`MEMBER_LIFE`] seconds, then touches `marker`. Waits until all three run.
fn victim(sup: &Supervisor, marker: &Path) -> tokio_custodian::ManagedChild {
    let script = format!(
        "(trap '' TERM; sleep {MEMBER_LIFE}; touch '{}') & exec sleep 1000",
        marker.display()
    );
    let c = sup
        .command("sh")
        .args(["-c", &script])
        .grace(Duration::from_secs(20))
        .spawn()
        .unwrap();
    assert!(
        wait_group_size(c.id().unwrap(), 3, SETTLE),
        "victim not started"
    );
    c
}

/// The census is process-wide: these tests must not share it with each other.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The census answered each ask with the *latest* pass: an asker that was not polled
/// between the pass that took its group and the next one read the next one, which was
/// not asked about its group, as "no member runs". A busy runtime (here: a task that
/// blocks its thread in 30 ms slices) next to a runtime whose stops keep the passes
/// going made every such stop skip its grace and SIGKILL a member that was exiting.
#[test]
fn a_slow_asker_gets_its_own_groups_answer_not_a_later_pass() {
    let _serial = serial();
    let stop_load = Arc::new(AtomicBool::new(false));
    let load = {
        let stop_load = stop_load.clone();
        std::thread::spawn(move || load_runtime(&stop_load))
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (pgids, missing) = rt.block_on(async {
        let sup = Supervisor::builder().start().unwrap();
        let markers: Vec<_> = (0..4).map(|n| marker("slow", n)).collect();
        let victims: Vec<_> = markers.iter().map(|m| victim(&sup, m)).collect();
        let pgids: Vec<u32> = victims.iter().map(|v| v.id().unwrap()).collect();
        let done = Cell::new(false);
        let closes = async {
            // Spawned: every victim is signalled at once, so each member is still
            // in its sleep when its stop first asks about its group.
            let stops: Vec<_> = victims
                .into_iter()
                .map(|v| tokio::spawn(v.close()))
                .collect();
            let mut all = Vec::new();
            for s in stops {
                all.push(s.await.unwrap());
            }
            done.set(true);
            all
        };
        let busy = async {
            while !done.get() {
                std::thread::sleep(Duration::from_millis(30));
                tokio::task::yield_now().await;
            }
        };
        let (closed, ()) = tokio::join!(closes, busy);
        for c in closed {
            c.unwrap();
        }
        let missing: Vec<_> = markers.iter().filter(|m| !m.exists()).cloned().collect();
        for m in &markers {
            let _ = std::fs::remove_file(m);
        }
        assert!(sup.shutdown().await.is_clean());
        (pgids, missing)
    });
    drop(rt);
    stop_load.store(true, Ordering::Relaxed);
    let load_stops = load.join().unwrap();
    assert!(load_stops > 0, "the load runtime stopped no child");
    assert!(
        missing.is_empty(),
        "stops ended before their group was gone (a member was killed in its grace): \
         {missing:?}"
    );
    assert!(wait_groups_gone(&pgids, SETTLE).is_empty());
}

/// Another runtime whose stops keep the census busy: three tasks start and stop
/// children in a loop (each stop asks about its group once its leader has exited) until
/// `stop` is set. Returns how many children it stopped.
fn load_runtime(stop: &Arc<AtomicBool>) -> usize {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let sup = Supervisor::builder().start().unwrap();
        let loops: Vec<_> = (0..3)
            .map(|_| {
                let (sup, stop) = (sup.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let c = sup.command("sleep").arg("1000").spawn().unwrap();
                        c.close().await.unwrap();
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        let mut stopped = 0;
        for l in loops {
            stopped += l.await.unwrap();
        }
        assert!(sup.shutdown().await.is_clean());
        stopped
    })
}

/// The LIFO pop (`try_lock`, never waits) racing scope ends, transfers and drops on
/// two worker threads; scopes that end "empty" skip their sweep. Every temp dir must
/// still be released exactly once: created = released, none live, none left on disk,
/// and exactly the forgotten ones are reported, as leaks swept by their scope's end.
#[test]
fn lifo_pops_racing_sweeps_and_transfers_release_each_resource_once() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let sup = Supervisor::builder().start().unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        // Drops, on another task, the dirs the scopes moved to the root.
        let dropper = tokio::spawn(async move {
            while let Some(d) = rx.recv().await {
                drop::<tokio_custodian::TempDir>(d);
                tokio::task::yield_now().await;
            }
        });
        let workers: Vec<_> = (0..4)
            .map(|w| {
                let (sup, tx) = (sup.clone(), tx.clone());
                tokio::spawn(async move {
                    for round in 0..25 {
                        let root = sup.root();
                        let tx = tx.clone();
                        sup.scope("race", async move |s| {
                            let mut dirs = Vec::new();
                            for _ in 0..6 {
                                dirs.push(s.temp_dir().await.unwrap());
                            }
                            // Pops in acquisition order (the top each time)...
                            drop(dirs.pop());
                            drop(dirs.pop());
                            // ...one moved out (every other round; its id stays
                            // in this scope's list, released elsewhere)...
                            if round % 2 == 1 {
                                let moved = dirs.remove(0);
                                moved.registration().transfer(&root).unwrap();
                                tx.send(moved).unwrap();
                            }
                            // ...one forgotten: only the scope's sweep releases it...
                            if (w + round) % 3 == 0 {
                                std::mem::forget(dirs.remove(0));
                            }
                            // ...the rest dropped newest first: a scope with nothing
                            // moved or forgotten ends with an empty list (no sweep).
                            while let Some(d) = dirs.pop() {
                                drop(d);
                            }
                            tokio::task::yield_now().await;
                        })
                        .await
                        .unwrap();
                    }
                })
            })
            .collect();
        for w in workers {
            w.await.unwrap();
        }
        drop(tx);
        dropper.await.unwrap();
        let s = sup.stats().kind(tokio_custodian::ResourceKind::TempDir);
        assert_eq!(s.created, 4 * 25 * 6);
        assert_eq!((s.released_total(), s.live), (s.created, 0), "{s:?}");
        let report = sup.shutdown().await;
        let forgotten = (0..4)
            .flat_map(|w| (0..25).map(move |r| (w + r) % 3))
            .filter(|&x| x == 0)
            .count();
        assert_eq!(report.leaks.len(), forgotten, "{report}");
        assert!(
            report.leaks.iter().all(
                |l| l.released_by() == tokio_custodian::ReleasePath::ScopeEnd
                    && l.path().as_ref().is_some_and(|p| !p.exists())
            ),
            "{report}"
        );
        assert!(report.alive_at_shutdown.is_empty() && report.failures.is_empty());
        assert!(report.cleanups_finished, "{report}");
        assert!(!report.temp_root.exists(), "temp root left behind");
    });
}

/// A temp dir dropped just before shutdown: shutdown's report and temp root removal
/// wait for its background removal (its tracker token is taken before the drop
/// returns, since the perf pass takes it only for work that outlives the call).
#[test]
fn a_temp_dir_dropped_just_before_shutdown_is_removed_before_the_report() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let sup = Supervisor::builder().start().unwrap();
        let d = sup.temp_dir().await.unwrap();
        for i in 0..200 {
            std::fs::write(d.path().join(i.to_string()), b"x").unwrap();
        }
        let path = d.path().to_path_buf();
        drop(d);
        let report = sup.shutdown().await;
        assert!(report.is_clean() && report.cleanups_finished, "{report}");
        assert!(report.temp_root_error.is_none(), "{report}");
        assert!(!path.exists() && !report.temp_root.exists());
        let s = report.stats.kind(tokio_custodian::ResourceKind::TempDir);
        assert_eq!(
            (s.created, s.released_total(), s.live, s.failures),
            (1, 1, 0, 0)
        );
    });
}
