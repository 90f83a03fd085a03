//! The body of `leak_check_current_thread.rs` and `leak_check_multi_thread.rs`: one
//! scenario, run once in each runtime flavour. They are two test binaries on purpose: the
//! leak check watches process-wide state (fds, threads, children), so each binary runs
//! this one test and nothing else at the same time.

use std::time::Duration;

use tokio_custodian::testing::LeakCheck;
use tokio_custodian::{ResourceKind, Supervisor};

/// The runtime's own fds and threads are not leaks; a forgotten guard and a raw fd are.
pub(crate) async fn harness_is_not_a_leak_and_a_leak_is() {
    // The supervisor's temp base is a dir of this test's own, watched as the temp dir
    // (the real one is shared with every other process of the machine).
    let base = std::env::temp_dir().join(format!("leak-flavour-{}", std::process::id()));
    std::fs::create_dir_all(&base).unwrap();
    let check = LeakCheck::builder().no_temp_dir().watch_dir(&base).start();
    let sup = Supervisor::builder().temp_base(&base).start().unwrap();
    sup.scope("work", async |s| {
        let d = s.temp_dir().await?;
        for n in 0..50 {
            std::fs::write(d.path().join(n.to_string()), b"x").unwrap();
        }
        let _f = s.temp_file().await?;
        let out = s.command("sh").args(["-c", "echo hi"]).output().await?;
        assert_eq!(out.stdout, b"hi\n");
        // Blocking-pool threads come and go; they hold no fds.
        let jobs: Vec<_> = (0..8)
            .map(|_| tokio::task::spawn_blocking(|| std::thread::sleep(Duration::from_millis(20))))
            .collect();
        for j in jobs {
            j.await.unwrap();
        }
        Ok::<_, tokio_custodian::Error>(())
    })
    .await
    .unwrap()
    .unwrap();
    assert!(sup.shutdown().await.is_clean());
    drop(sup);
    let report = check.finish().await;
    assert!(report.is_clean(), "{report}");
    assert!(!report.exclusive);
    std::fs::remove_dir(&base).unwrap();

    // And a leak in the same runtime is seen.
    let check = LeakCheck::builder().no_temp_dir().start();
    let sup = Supervisor::builder().start().unwrap();
    let f = std::fs::File::open("/etc/hostname").unwrap();
    let report = {
        let check2 = LeakCheck::builder()
            .no_temp_dir()
            .wait(Duration::ZERO)
            .start();
        std::mem::forget(sup.temp_file().await.unwrap());
        check2.finish().await
    };
    assert_eq!(report.resources.len(), 1, "{report}");
    assert_eq!(report.resources[0].resource.kind(), ResourceKind::TempFile);
    assert!(
        report.fds.iter().all(|f| f.target != "/etc/hostname"),
        "{report}"
    );
    sup.shutdown().await;
    drop(sup);
    let report = check.finish().await;
    assert_eq!(report.len(), 1, "{report}");
    assert_eq!(report.fds[0].target, "/etc/hostname");
    drop(f);
}
