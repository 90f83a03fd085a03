//! Review of the parallel shutdown (issue 22): the identity check holds for every file
//! of every chunk, on the shutdown task and on the pool alike. In a run of 600 leftover
//! temp files (two chunks), names in both chunks are taken over: a stranger's file at
//! the name (the original renamed away) is left alone and reported, with its path and
//! kind; a symlink at the name is unlinked, its target kept; a kept file is not touched.
//! The report is the same on a current-thread and a multi-thread runtime, in id order,
//! the failures in release order (newest first), and no fd or path is left behind.

use std::path::PathBuf;

use custodian_suite::{Rt, entries, scenario};
use tokio_custodian::{ReleasePath, ResourceKind, Supervisor};

const FILES: usize = 600;
/// Taken over by a stranger: in the pool's chunk (older) and the task's (newer).
const STRANGERS: [usize; 4] = [0, 150, 300, 599];
/// Swapped for a symlink to an outside file.
const SYMLINKS: [usize; 3] = [1, 299, 598];

/// What a run reports: the leftovers' labels in order, and the failures' labels.
type Seen = (Vec<String>, Vec<String>);

fn run(rt: Rt) -> Seen {
    scenario(rt, "rv-shut3-identity", async |base| {
        let sup = Supervisor::builder().temp_base(&base).start().unwrap();
        let root = sup.temp_root().to_path_buf();
        let (elsewhere, outside) = (base.join("elsewhere"), base.join("outside"));
        std::fs::create_dir(&elsewhere).unwrap();
        std::fs::write(&outside, b"outside").unwrap();
        let mut files = Vec::new();
        for i in 0..FILES {
            files.push(sup.temp().label(format!("f{i}")).file().await.unwrap());
        }
        let (kept, kept_path) = sup.temp_file().await.unwrap().keep().await.unwrap();
        let mut strangers: Vec<PathBuf> = Vec::new();
        for i in STRANGERS {
            let p = files[i].path().to_path_buf();
            std::fs::rename(&p, elsewhere.join(format!("orig{i}"))).unwrap();
            std::fs::write(&p, b"stranger").unwrap();
            strangers.push(p);
        }
        for i in SYMLINKS {
            std::fs::remove_file(files[i].path()).unwrap();
            std::os::unix::fs::symlink(&outside, files[i].path()).unwrap();
        }
        let report = sup.shutdown().await;
        // Left alone: the originals moved away, the symlinks' target, the kept file.
        for i in STRANGERS {
            assert!(elsewhere.join(format!("orig{i}")).exists(), "orig{i}");
        }
        assert_eq!(std::fs::read(&outside).unwrap(), b"outside");
        assert!(kept_path.exists());
        // Every leftover once, in id order.
        let labels: Vec<String> = report
            .alive_at_shutdown
            .iter()
            .map(|r| r.label().to_owned())
            .collect();
        let want: Vec<String> = (0..FILES).map(|i| format!("f{i}")).collect();
        assert_eq!(labels, want);
        // Each stranger a failure naming its path and kind; nothing else failed.
        let mut failed: Vec<_> = report.failures.iter().collect();
        assert_eq!(failed.len(), STRANGERS.len(), "{:?}", report.failures);
        for f in &failed {
            assert_eq!(f.kind, ResourceKind::TempFile);
            assert!(f.error.contains("replaced"), "{f:?}");
        }
        failed.sort_by_key(|f| f.id);
        let paths: Vec<_> = failed.iter().map(|f| f.path.clone().unwrap()).collect();
        assert_eq!(paths, strangers);
        let k = report.stats.kind(ResourceKind::TempFile);
        assert_eq!(
            (k.failures, k.released(ReleasePath::Shutdown)),
            (STRANGERS.len() as u64, FILES as u64)
        );
        drop(files);
        drop(kept);
        std::fs::remove_file(&kept_path).unwrap();
        std::fs::remove_dir_all(&elsewhere).unwrap();
        std::fs::remove_file(&outside).unwrap();
        assert!(!root.exists() && entries(&base).is_empty());
        let fails = report.failures.iter().map(|f| f.label.clone()).collect();
        (labels, fails)
    })
}

#[test]
fn every_file_of_every_chunk_is_checked_and_the_report_is_the_same_on_any_runtime() {
    let current = run(Rt::Current);
    // Failures in release order: newest first, the task's chunk before the pool's.
    let mut newest_first: Vec<String> = STRANGERS.iter().map(|i| format!("f{i}")).collect();
    newest_first.reverse();
    assert_eq!(current.1, newest_first);
    for _ in 0..2 {
        assert_eq!(run(Rt::Multi(2)), current);
    }
}
