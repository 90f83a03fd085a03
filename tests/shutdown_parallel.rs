//! Shutdown's leftovers released on several threads (issue 22): a long run of temp
//! files is split into chunks on the blocking pool, yet the report lists each leftover
//! once, in id order, whichever thread finished first; what else is left keeps its
//! place between the runs; a guard dropped on another thread during the shutdown is
//! released exactly once (by its drop or by shutdown, never both, never neither); and
//! every fd and path is gone after.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::ThreadId;

use custodian_suite::{Rt, entries, scenario};
use tokio_custodian::{ReleasePath, ResourceKind, Supervisor};
use tracing_subscriber::layer::{Context, SubscriberExt};

/// More than two chunks' worth of temp files (a chunk is at least 256), few enough for
/// a soft fd limit of 1,024.
const FILES: usize = 600;

/// The threads that reclaimed a leftover (its "leaked resource reclaimed" event), for
/// every test of this binary: a global subscriber, as the pool's threads do not see a
/// thread's default one.
#[derive(Clone, Default)]
struct Reclaimers(Arc<Mutex<HashSet<ThreadId>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Reclaimers {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        struct Message(bool);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                if f.name() == "message" {
                    self.0 = format!("{v:?}") == "leaked resource reclaimed";
                }
            }
        }
        let mut m = Message(false);
        event.record(&mut m);
        if m.0 {
            self.0.lock().unwrap().insert(std::thread::current().id());
        }
    }
}

fn reclaimers() -> &'static Reclaimers {
    static R: OnceLock<Reclaimers> = OnceLock::new();
    R.get_or_init(|| {
        let r = Reclaimers::default();
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(r.clone()))
            .unwrap();
        r
    })
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[test]
fn a_long_run_of_temp_files_is_released_on_several_threads_and_reported_in_order() {
    let threads = reclaimers();
    scenario(Rt::Multi(2), "parallel-leftovers", async |base| {
        let sup = Supervisor::builder().temp_base(&base).start().unwrap();
        let root = sup.temp_root().to_path_buf();
        let mut files = Vec::new();
        for _ in 0..FILES {
            files.push(sup.temp_file().await.unwrap());
        }
        // Something that is not a temp file in the middle: it splits the run.
        let dir = sup.temp_dir().await.unwrap();
        for _ in 0..FILES {
            files.push(sup.temp_file().await.unwrap());
        }
        let mut want: Vec<_> = files.iter().map(|f| f.id()).collect();
        want.insert(FILES, dir.id());
        threads.0.lock().unwrap().clear();
        let report = sup.shutdown().await;
        let used = threads.0.lock().unwrap().len();
        if cores() > 1 {
            assert!(used > 1, "leftovers released on {used} thread(s)");
        }
        // One record each, in id order, the temp dir in its place.
        let ids: Vec<_> = report.alive_at_shutdown.iter().map(|r| r.id()).collect();
        assert_eq!(ids, want);
        assert_eq!(
            report.alive_at_shutdown[FILES].kind(),
            ResourceKind::TempDir
        );
        assert_eq!(
            report.released_by_path()[&ReleasePath::Shutdown],
            want.len() as u64
        );
        assert!(report.failures.is_empty(), "{:?}", report.failures);
        assert!(files.iter().all(|f| !f.path().exists()));
        assert!(!dir.path().exists());
        assert!(!root.exists() && entries(&base).is_empty());
        // Released already: their drop has nothing left to do.
        drop((files, dir));
        let s = sup.stats();
        assert_eq!(
            s.kind(ResourceKind::TempFile).released_total(),
            2 * FILES as u64
        );
        assert_eq!(s.live(), 0);
    });
}

#[test]
fn guards_dropped_on_another_thread_during_a_split_release_are_released_once() {
    let _ = reclaimers();
    for round in 0..3 {
        scenario(Rt::Multi(2), "parallel-leftovers-drops", async |base| {
            let sup = Supervisor::builder().temp_base(&base).start().unwrap();
            let mut files = Vec::new();
            for _ in 0..2 * FILES {
                files.push(sup.temp_file().await.unwrap());
            }
            let all: Vec<_> = files.iter().map(|f| f.id()).collect();
            // Every other guard is dropped on a thread of its own, racing the shutdown
            // (oldest first, or newest first: either end of the chunks).
            let mut dropped: Vec<_> = (0..files.len())
                .rev()
                .step_by(2)
                .map(|i| files.remove(i))
                .collect();
            if round % 2 == 1 {
                dropped.reverse();
            }
            let dropper = std::thread::spawn(move || {
                for f in dropped {
                    drop(f);
                }
            });
            let report = sup.shutdown().await;
            dropper.join().unwrap();
            drop(files);
            // By their drop (`Drop`, or `Cancelled` once the root is cancelled) or by
            // shutdown: each once.
            let by_path = report.released_by_path();
            let by_shutdown = by_path.get(&ReleasePath::Shutdown).copied().unwrap_or(0);
            assert_eq!(
                by_path.values().sum::<u64>(),
                all.len() as u64,
                "{by_path:?}"
            );
            // The report lists exactly what shutdown released, each once, in id order.
            let ids: Vec<_> = report.alive_at_shutdown.iter().map(|r| r.id()).collect();
            assert_eq!(ids.len() as u64, by_shutdown);
            assert!(ids.windows(2).all(|w| w[0] < w[1]), "out of order");
            assert!(ids.iter().all(|id| all.contains(id)));
            assert!(report.failures.is_empty(), "{:?}", report.failures);
            let s = sup.stats().kind(ResourceKind::TempFile);
            assert_eq!((s.released_total(), s.live), (all.len() as u64, 0));
        });
    }
}
