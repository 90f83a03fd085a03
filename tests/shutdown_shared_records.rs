//! Shutdown's leftovers as shared records (issue 22): one record per leftover, listed
//! as alive at shutdown and as a leak alike, handed to every caller without a copy,
//! printed and serialised as before; and the release that skips the failure
//! bookkeeping when a reclaim is done and fine still reports one that failed.

use std::path::PathBuf;

use custodian_suite::scratch_dir;
use tokio_custodian::{ReleasePath, ResourceKind, ShutdownReport, Supervisor};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_leftover_is_one_record_in_every_list_and_every_callers_report() {
    let base = scratch_dir("shared-records");
    runtime().block_on(async {
        let sup = Supervisor::builder().temp_base(&base).start().unwrap();
        let t = sup.temp().label("kept").file().await.unwrap();
        let line = line!() - 1;
        let path = t.path().to_path_buf();
        let id = t.id();
        let (a, b) = tokio::join!(sup.shutdown(), sup.shutdown());
        assert!(!path.exists(), "{} outlived shutdown", path.display());
        for report in [&a, &b] {
            let alive = &report.alive_at_shutdown[0];
            let leak = &report.leaks[0];
            assert_eq!(
                (alive.id(), alive.kind(), alive.label(), alive.scope()),
                (id, ResourceKind::TempFile, "kept", "root")
            );
            assert_eq!((alive.path(), alive.site().line), (Some(&*path), line));
            assert!(alive.site().file.ends_with("shutdown_shared_records.rs"));
            assert_eq!(leak.resource(), alive);
            assert_eq!(leak.released_by(), ReleasePath::Shutdown);
        }
        // Two callers, one run: the same records.
        assert_eq!(a, b);
        let text = a.to_string();
        assert!(text.contains("temp_file `kept` in scope `root`"), "{text}");
        assert!(text.contains("leaked from scope `root`"), "{text}");
        // JSON as before: the leak record's fields flat, beside `released_by`.
        let json = serde_json::to_value(&a).unwrap();
        let leak = &json["leaks"][0];
        assert_eq!(leak["label"], "kept");
        assert_eq!(leak["scope"], "root");
        assert_eq!(leak["released_by"], "shutdown");
        assert_eq!(leak["site"]["line"], line);
        assert!(leak["age_ms"].is_f64());
        let back: ShutdownReport = serde_json::from_value(json).unwrap();
        assert_eq!(back.leaks, a.leaks);
        assert_eq!(back.alive_at_shutdown, a.alive_at_shutdown);
        drop(t);
    });
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn a_leftover_replaced_by_a_stranger_is_left_alone_and_reported_at_shutdown() {
    let base = scratch_dir("shared-records-replaced");
    let elsewhere = base.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let (report, path): (ShutdownReport, PathBuf) = runtime().block_on(async {
        let sup = Supervisor::builder().temp_base(&base).start().unwrap();
        let t = sup.temp_file().await.unwrap();
        let ok = sup.temp_file().await.unwrap();
        let path = t.path().to_path_buf();
        // Moved away, not deleted: the inode stays in use, a stranger takes the name.
        std::fs::rename(&path, elsewhere.join("orig")).unwrap();
        std::fs::write(&path, b"stranger").unwrap();
        let report = sup.shutdown().await;
        drop((t, ok));
        (report, path)
    });
    // The file custodian made, moved away, is untouched; the name's new owner was not
    // unlinked as if it were custodian's (the private root's own removal comes after).
    assert!(elsewhere.join("orig").exists());
    assert_eq!(report.alive_at_shutdown.len(), 2);
    assert_eq!(report.failures.len(), 1, "{:?}", report.failures);
    assert_eq!(report.failures[0].path.as_deref(), Some(path.as_path()));
    assert_eq!(report.failures[0].kind, ResourceKind::TempFile);
    assert!(
        report.failures[0].error.contains("replaced"),
        "{:?}",
        report.failures
    );
    let k = report.stats.kind(ResourceKind::TempFile);
    assert_eq!((k.failures, k.released(ReleasePath::Shutdown)), (1, 2));
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn a_forced_shutdown_shares_its_records_and_reports_a_replaced_leftover() {
    let base = scratch_dir("shared-records-forced");
    let elsewhere = base.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let (report, path): (ShutdownReport, PathBuf) = runtime().block_on(async {
        let sup = Supervisor::builder().temp_base(&base).start().unwrap();
        let t = sup.temp().label("replaced").file().await.unwrap();
        let ok = sup.temp().label("fine").file().await.unwrap();
        let path = t.path().to_path_buf();
        std::fs::rename(&path, elsewhere.join("orig")).unwrap();
        std::fs::write(&path, b"stranger").unwrap();
        let report = sup.shutdown_now().await;
        assert!(!ok.path().exists());
        drop((t, ok));
        (report, path)
    });
    assert!(report.forced);
    assert!(elsewhere.join("orig").exists());
    let labels: Vec<_> = report.alive_at_shutdown.iter().map(|r| r.label()).collect();
    assert_eq!(labels, ["replaced", "fine"]);
    // One record per leftover: the leak records are the same records.
    assert_eq!(report.leaks.len(), 2);
    for (leak, alive) in report.leaks.iter().rev().zip(&report.alive_at_shutdown) {
        assert_eq!(leak.resource(), alive);
    }
    assert_eq!(report.failures.len(), 1, "{:?}", report.failures);
    assert_eq!(report.failures[0].path.as_deref(), Some(path.as_path()));
    assert_eq!(report.failures[0].label, "replaced");
    std::fs::remove_dir_all(&base).unwrap();
}
