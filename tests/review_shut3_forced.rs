//! Review of the parallel shutdown (issue 22): a forced shutdown (`shutdown_now`, as a
//! second signal does) arriving while a graceful one releases its leftovers in chunks,
//! with guards dropped on another thread meanwhile: every temp file is released exactly
//! once (by its drop or by shutdown), the report lists exactly what shutdown released,
//! in id order, and no file or fd is left.

use std::time::Duration;

use custodian_suite::{Rt, entries, scenario};
use tokio_custodian::{ReleasePath, ResourceKind, Supervisor};

const FILES: usize = 600;

#[test]
fn forced_mid_split_with_guards_dropping_releases_each_once() {
    for round in 0..4u64 {
        scenario(Rt::Multi(2), "rv-shut3-forced", async |base| {
            let sup = Supervisor::builder().temp_base(&base).start().unwrap();
            let root = sup.temp_root().to_path_buf();
            let mut files = Vec::new();
            for _ in 0..FILES {
                files.push(sup.temp_file().await.unwrap());
            }
            let all: Vec<_> = files.iter().map(|f| f.id()).collect();
            let paths: Vec<_> = files.iter().map(|f| f.path().to_path_buf()).collect();
            let dropped: Vec<_> = (0..files.len())
                .rev()
                .step_by(3)
                .map(|i| files.remove(i))
                .collect();
            let dropper = std::thread::spawn(move || drop(dropped));
            let s = sup.clone();
            let forcer = tokio::spawn(async move {
                tokio::time::sleep(Duration::from_micros(round * 400)).await;
                s.shutdown_now().await
            });
            let report = sup.shutdown().await;
            let forced = forcer.await.unwrap();
            dropper.join().unwrap();
            drop(files);
            // One run, one report, whoever asked.
            assert_eq!(forced.alive_at_shutdown, report.alive_at_shutdown);
            let by_path = report.released_by_path();
            let by_shutdown = by_path.get(&ReleasePath::Shutdown).copied().unwrap_or(0);
            let ids: Vec<_> = report.alive_at_shutdown.iter().map(|r| r.id()).collect();
            assert_eq!(ids.len() as u64, by_shutdown, "{by_path:?}");
            assert!(ids.windows(2).all(|w| w[0] < w[1]), "out of order");
            assert!(ids.iter().all(|id| all.contains(id)));
            assert!(report.failures.is_empty(), "{:?}", report.failures);
            let s = sup.stats().kind(ResourceKind::TempFile);
            assert_eq!(
                (s.released_total(), s.live),
                (FILES as u64, 0),
                "{by_path:?}"
            );
            assert!(paths.iter().all(|p| !p.exists()));
            assert!(!root.exists() && entries(&base).is_empty());
        });
    }
}
