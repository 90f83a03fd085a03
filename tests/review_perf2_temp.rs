//! Review of issue 22's temp file removal (the name kept as an inline C string, the
//! guard's name derived from its path): with long, non-ASCII names, on every release path
//! (drop, scope end, graceful and forced shutdown, emergency clean-up, a failed persist
//! handing the guard back), the temp file is removed, and a file swapped in at its name
//! is never unlinked (identity check), a symlink swapped in is unlinked, not followed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use custodian_suite::{Rt, exists, scenario};
use tokio_custodian::{ReleasePath, Supervisor, TempFile};

/// Names of every length around the inline limit (48 bytes with the NUL), and long ones.
fn prefixes() -> Vec<String> {
    let mut p: Vec<String> = [0, 10, 20, 26, 27, 28, 30, 47, 60, 100, 200]
        .into_iter()
        .map(|n| "p".repeat(n))
        .collect();
    p.push("é".repeat(40)); // 80 bytes, not ASCII
    p.push("ü-".repeat(5));
    p
}

/// Swaps a file the test made (not custodian) in at `t`'s name; returns its path.
fn swap_in_foreign(t: &TempFile, scratch: &Path) -> PathBuf {
    let foreign = t.path().with_file_name("foreign");
    std::fs::write(&foreign, b"not custodian's").unwrap();
    std::fs::rename(&foreign, t.path()).unwrap();
    // A symlink to an outside file would be unlinked, not followed: checked below.
    let _ = scratch;
    t.path().to_path_buf()
}

async fn file(sup: &Supervisor, prefix: &str) -> TempFile {
    sup.temp().prefix(prefix).suffix(".ü").file().await.unwrap()
}

#[test]
fn long_and_non_ascii_names_are_removed_by_drop_and_scope_end() {
    scenario(Rt::Current, "perf2-temp-names", async |base| {
        let sup = Supervisor::builder().temp_base(&base).start().unwrap();
        for p in prefixes() {
            let t = file(&sup, &p).await;
            let path = t.path().to_path_buf();
            assert!(exists(&path));
            drop(t);
            assert!(!exists(&path), "{p:?}: dropped, still there");
            let path = sup
                .scope("s", async |s| {
                    let t = s.temp().prefix(&p).file().await.unwrap();
                    let path = t.path().to_path_buf();
                    std::mem::forget(t);
                    path
                })
                .await
                .unwrap();
            assert!(!exists(&path), "{p:?}: scope ended, still there");
        }
        assert!(sup.failures().is_empty(), "{:?}", sup.failures());
        let e = sup.temp().prefix("a\0b").file().await.unwrap_err();
        assert_eq!(e.io_kind(), Some(std::io::ErrorKind::InvalidInput));
        let r = sup.shutdown().await;
        assert!(r.is_clean() || r.leaks.len() == prefixes().len(), "{r}");
    });
}

#[test]
fn a_file_swapped_in_is_left_alone_on_drop_scope_end_and_after_a_failed_persist() {
    scenario(Rt::Current, "perf2-temp-swap", async |base| {
        let sup = Supervisor::builder().temp_base(&base).start().unwrap();
        for p in prefixes() {
            // Drop.
            let t = file(&sup, &p).await;
            let path = swap_in_foreign(&t, &base);
            drop(t);
            assert_eq!(std::fs::read(&path).unwrap(), b"not custodian's", "{p:?}");
            std::fs::remove_file(&path).unwrap();
            // Scope end, the guard forgotten.
            let path = sup
                .scope("s", async |s| {
                    let t = s.temp().prefix(&p).file().await.unwrap();
                    let path = swap_in_foreign(&t, &base);
                    std::mem::forget(t);
                    path
                })
                .await
                .unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), b"not custodian's", "{p:?}");
            std::fs::remove_file(&path).unwrap();
            // A persist that fails hands the guard back, registered again: its removal
            // uses the name derived from its path.
            let t = file(&sup, &p).await;
            let e = t.persist(base.join("missing/dir/x")).await.unwrap_err();
            let t = e.into_guard().expect("handed back");
            let kept = t.path().to_path_buf();
            let path = swap_in_foreign(&t, &base);
            drop(t);
            assert_eq!(std::fs::read(&path).unwrap(), b"not custodian's", "{p:?}");
            std::fs::remove_file(&path).unwrap();
            let t = file(&sup, &p).await;
            let e = t.persist(base.join("missing/dir/x")).await.unwrap_err();
            let t = e.into_guard().expect("handed back");
            let path = t.path().to_path_buf();
            drop(t);
            assert!(!exists(&path) && path != kept, "{p:?}");
        }
        // Each refusal is a clean-up failure naming the path, never a silent unlink.
        let failures = sup.failures();
        assert_eq!(failures.len(), 3 * prefixes().len(), "{failures:?}");
        assert!(failures.iter().all(|f| f.path.is_some()));
        sup.shutdown().await;
    });
}

/// Shutdown (graceful, forced) and the emergency clean-up: a swapped-in file is a
/// failure, not an unlink; a symlink swapped in is unlinked and its target kept.
#[test]
fn a_file_or_symlink_swapped_in_at_shutdown_forced_shutdown_and_emergency() {
    for how in ["graceful", "forced", "emergency"] {
        scenario(Rt::Multi(2), "perf2-temp-swap-end", async |base| {
            let sup = Supervisor::builder()
                .temp_base(&base)
                .grace(Duration::from_millis(200))
                .start()
                .unwrap();
            let outside = base.join("outside");
            std::fs::write(&outside, b"outside").unwrap();
            let mut swapped = 0;
            for p in prefixes() {
                let t = file(&sup, &p).await;
                swap_in_foreign(&t, &base);
                swapped += 1;
                std::mem::forget(t);
                let t = file(&sup, &p).await;
                std::fs::remove_file(t.path()).unwrap();
                std::os::unix::fs::symlink(&outside, t.path()).unwrap();
                std::mem::forget(t);
                let t = file(&sup, &p).await;
                std::mem::forget(t);
            }
            let failed = match how {
                "graceful" => {
                    let r = sup.shutdown().await;
                    assert!(
                        r.leaks
                            .iter()
                            .all(|l| l.released_by() == ReleasePath::Shutdown)
                    );
                    r.failures.len()
                }
                "forced" => sup.shutdown_now().await.failures.len(),
                _ => {
                    let done = tokio::task::block_in_place(|| sup.emergency_cleanup());
                    assert_eq!(done.released, 3 * prefixes().len());
                    assert!(done.temp_root_removed);
                    done.failed
                }
            };
            assert_eq!(
                failed, swapped,
                "{how}: a swapped-in file is a failure, not an unlink"
            );
            assert_eq!(std::fs::read(&outside).unwrap(), b"outside", "{how}");
            std::fs::remove_file(&outside).unwrap();
            assert!(!exists(sup.temp_root()));
        });
    }
}
