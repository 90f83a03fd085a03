//! Regression tests from a review of drain and quotas (issue 13): each one failed before
//! the fix committed with it.
//!
//! - a temp file whose `persist` fails keeps its quota share: the guard is handed back
//!   even when a waiter queued for that share, and its temp bytes stay counted (and its
//!   later writes charged).
//! - a successful `persist` hands the same open fd's open-files share over to the
//!   managed file it returns: a waiter queued on that quota cannot take it in between
//!   (which made `persist` fail with `QuotaExceeded` after moving the file).
//! - a waiting acquisition holds no quota's room while it waits for another's: one
//!   that counts two quotas (an fds quota and a live temp files quota) used to take the
//!   first and wait for the second, starving a holder of the second that needed the
//!   first: a deadlock.
//! - `Error::public()` of a decoder's error (tokio-custodian-audio's, converted into
//!   `tokio_custodian::Error::Resource`) names no path: the conversion put the audio error's
//!   full text, path included, in the message that `public()` prints.
//! - `Supervisor::draining()` completes on `force()` too: forcing cancels every scope,
//!   so a server must stop accepting then, and new top-level work is refused rather
//!   than admitted into an already cancelled supervisor.
//! - a root-scope temp file persisted during a drain is handed back managed: its
//!   registration as a file is a change of form, not new work (the drain refused it:
//!   the file was moved, the guard lost, and the call failed with `Draining`).
//! - a top-level scope whose future is dropped during the drain (a client hung up)
//!   counts as finished in the drain report (it counted only scopes that returned).
//! - a temp bytes charge of more than `u32::MAX` bytes at once (a write after a seek
//!   far past the end) is charged, not refused, when the quota has room.

use custodian_suite::{Rt, entries, eventually, scenario};
use tokio::io::AsyncWriteExt;
use tokio_custodian::{Quota, ResourceKind, Supervisor};

async fn waiting(sup: &Supervisor, n: u64) {
    let s = sup.clone();
    eventually(&format!("{n} waiting"), move || s.quotas()[0].waiting == n).await;
}

#[test]
fn a_failed_persist_keeps_its_room_when_a_waiter_is_queued() {
    scenario(Rt::Multi(2), "review-persist-wait", async |base| {
        let sup = Supervisor::builder()
            .temp_base(&base)
            .quota(Quota::live(ResourceKind::TempFile, 1))
            .start()
            .unwrap();
        let mut t = sup.temp_file().await.unwrap();
        t.write_all(b"precious").await.unwrap();
        let s = sup.clone();
        let waiter = tokio::spawn(async move { s.temp_file().await });
        waiting(&sup, 1).await;
        // The rename fails: the promise is the guard back, still managed.
        let e = t
            .persist(base.join("no-such-dir").join("out"))
            .await
            .unwrap_err();
        assert_eq!(e.error.io_kind(), Some(std::io::ErrorKind::NotFound));
        let t = e
            .into_guard()
            .expect("the guard is handed back after a failed rename");
        assert_eq!(std::fs::read(t.path()).unwrap(), b"precious");
        // The waiter still waits: the failed move never gave the room away.
        assert_eq!(sup.quotas()[0].in_use, 1);
        assert!(!waiter.is_finished());
        drop(t);
        let other = waiter.await.unwrap().unwrap();
        assert_eq!(entries(sup.temp_root()).len(), 1);
        drop(other);
        assert!(sup.shutdown().await.is_clean());
    });
}

#[test]
fn a_failed_persist_keeps_its_temp_bytes_counted() {
    scenario(Rt::Multi(2), "review-persist-bytes", async |base| {
        let sup = Supervisor::builder()
            .temp_base(&base)
            .quota(Quota::temp_bytes(1000))
            .start()
            .unwrap();
        let in_use = |sup: &Supervisor| sup.quotas()[0].in_use;
        let mut t = sup.temp_file().await.unwrap();
        t.write_all(&[1; 600]).await.unwrap();
        t.flush().await.unwrap();
        assert_eq!(in_use(&sup), 600);
        let e = t.persist(base.join("no-such-dir").join("out")).await;
        let mut t = e.unwrap_err().into_guard().expect("handed back");
        // Its 600 bytes are still on disk in the temp root: still counted.
        assert_eq!(in_use(&sup), 600);
        // And its writes are still charged: 600 more would go past 1000.
        let err = t.write_all(&[2; 600]).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::QuotaExceeded, "{err}");
        drop(t);
        assert_eq!(in_use(&sup), 0);
        assert!(sup.shutdown().await.is_clean());
    });
}

#[test]
fn a_persisted_file_keeps_its_open_files_share() {
    scenario(Rt::Multi(2), "review-persist-share", async |base| {
        let sup = Supervisor::builder()
            .temp_base(&base)
            .quota(Quota::open_files(1))
            .start()
            .unwrap();
        let mut t = sup.temp_file().await.unwrap();
        t.write_all(b"kept").await.unwrap();
        let s = sup.clone();
        let waiter = tokio::spawn(async move { s.temp_file().await });
        waiting(&sup, 1).await;
        let target = base.join("out");
        let kept = t.persist(&target).await.expect("persisted");
        assert_eq!(std::fs::read(&target).unwrap(), b"kept");
        assert!(kept.registration().is_live());
        // Still one open file, the same fd: the waiter waits for it to close.
        assert_eq!(sup.quotas()[0].in_use, 1);
        assert!(!waiter.is_finished());
        drop(kept);
        drop(waiter.await.unwrap().unwrap());
        assert!(sup.shutdown().await.is_clean());
        std::fs::remove_file(&target).unwrap();
    });
}

#[test]
fn a_waiting_acquisition_holds_no_room_while_it_waits() {
    scenario(Rt::Multi(2), "review-hold-and-wait", async |base| {
        let sup = Supervisor::builder()
            .temp_base(&base)
            .quota(Quota::fds(2))
            .quota(Quota::live(ResourceKind::TempFile, 1))
            .start()
            .unwrap();
        // A request holds the only temp file (1 of 2 fds)...
        let upload = sup.temp_file().await.unwrap();
        // ...another waits for a temp file...
        let s = sup.clone();
        let waiter = tokio::spawn(async move { s.temp_file().await });
        let s = sup.clone();
        eventually("the second request waits", move || {
            s.quotas()[1].waiting == 1
        })
        .await;
        // ...and the first opens one more file: one fd is free, it must get it.
        let opened =
            tokio::time::timeout(std::time::Duration::from_secs(5), sup.open(upload.path()))
                .await
                .expect("opening with a free fd never waits for a waiter's partial hold")
                .unwrap();
        assert_eq!(sup.quotas()[0].in_use, 2);
        drop((opened, upload));
        drop(waiter.await.unwrap().unwrap());
        assert!(sup.shutdown().await.is_clean());
    });
}

#[test]
fn a_decoder_error_made_public_names_no_path() {
    scenario(Rt::Multi(2), "review-public-decoder", async |base| {
        let sup = Supervisor::builder().temp_base(&base).start().unwrap();
        let root = sup.temp_root().to_string_lossy().into_owned();
        let mut upload = sup.temp_file().await.unwrap();
        upload
            .write_all(b"RIFF\x10\0\0\0WAVEjunkjunkjunk")
            .await
            .unwrap();
        upload.flush().await.unwrap();
        let name = upload
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let e = tokio_custodian_audio::AudioDecoder::open(&sup.root(), upload.path())
            .await
            .map(drop)
            .expect_err("not a WAV");
        let e = tokio_custodian::Error::from(e);
        assert!(e.to_string().contains(&root), "the full text names it: {e}");
        let public = e.public().to_string();
        assert!(
            !public.contains(&root) && !public.contains(&name) && !public.contains('/'),
            "{public}"
        );
        assert!(public.starts_with("decode: "), "{public}");
        drop(upload);
        assert!(sup.shutdown().await.is_clean());
    });
}

#[test]
fn force_alone_fires_draining() {
    scenario(Rt::Multi(2), "review-force-draining", async |base| {
        let sup = Supervisor::builder()
            .temp_base(&base)
            .drain(std::time::Duration::from_secs(30))
            .start()
            .unwrap();
        let stop_accepting = sup.draining();
        sup.force();
        tokio::time::timeout(std::time::Duration::from_secs(5), stop_accepting)
            .await
            .expect("draining() completes once the supervisor is forced");
        assert!(sup.is_draining());
        let r = sup.scope("late", async |_| ()).await;
        assert!(
            matches!(r, Err(tokio_custodian::Error::Draining { .. })),
            "{r:?}"
        );
        let report = sup.shutdown().await;
        assert!(report.forced && report.drain.is_none());
    });
}

#[test]
fn a_write_far_past_the_end_is_charged_not_refused() {
    use tokio::io::AsyncSeekExt;
    scenario(Rt::Multi(2), "review-far-write", async |base| {
        let sup = Supervisor::builder()
            .temp_base(&base)
            .quota(Quota::temp_bytes(u64::MAX))
            .start()
            .unwrap();
        let far = 5u64 << 30; // 5 GiB: a sparse file, nothing much on disk
        let mut t = sup.temp_file().await.unwrap();
        t.seek(std::io::SeekFrom::Start(far)).await.unwrap();
        t.write_all(b"x").await.expect("the quota has room for it");
        t.flush().await.unwrap();
        assert_eq!(std::fs::metadata(t.path()).unwrap().len(), far + 1);
        assert_eq!(sup.quotas()[0].in_use, far + 1);
        // A shrink by other means settles back below u32::MAX.
        std::fs::OpenOptions::new()
            .write(true)
            .open(t.path())
            .unwrap()
            .set_len(10)
            .unwrap();
        t.flush().await.unwrap();
        assert_eq!(sup.quotas()[0].in_use, 10);
        drop(t);
        assert_eq!(sup.quotas()[0].in_use, 0);
        assert!(sup.shutdown().await.is_clean());
    });
}

/// A root-scope temp file persisted during a drain is moved AND handed back managed: the
/// re-registration of a resource changing form is not new work, so the drain does not
/// refuse it (it used to: the file was moved, the guard lost, the call an error).
#[test]
fn a_persist_during_the_drain_hands_the_file_back() {
    scenario(Rt::Multi(2), "review-persist-drain", async |base| {
        let sup = Supervisor::builder()
            .temp_base(&base)
            .grace(std::time::Duration::from_secs(5))
            .drain(std::time::Duration::from_secs(5))
            .start()
            .unwrap();
        let mut t = sup.temp_file().await.unwrap();
        t.write_all(b"result").await.unwrap();
        // A request in flight keeps the drain open.
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
        let request = tokio::spawn(sup.scope("request", async move |_s| {
            let _ = started_tx.send(());
            let _ = done_rx.await;
        }));
        started_rx.await.unwrap();
        let s = sup.clone();
        let shutdown = tokio::spawn(async move { s.shutdown().await });
        let s = sup.clone();
        eventually("the drain began", move || s.is_draining()).await;
        let target = base.join("kept.bin");
        let kept = t.persist(&target).await.map_err(|e| e.error).unwrap();
        assert_eq!(std::fs::read(kept.path()).unwrap(), b"result");
        drop(kept);
        done_tx.send(()).unwrap();
        request.await.unwrap().unwrap();
        let report = shutdown.await.unwrap();
        assert!(report.leaks.is_empty(), "{report}");
        assert!(target.exists(), "a persisted file is the caller's");
        std::fs::remove_file(&target).unwrap();
    });
}

/// A top-level scope whose future is dropped during the drain (a client hung up) ended:
/// the drain report counts it as finished (it counted only scopes that returned).
#[test]
fn a_scope_dropped_during_the_drain_counts_as_finished() {
    scenario(Rt::Multi(2), "review-drain-dropped", async |base| {
        let sup = Supervisor::builder()
            .temp_base(&base)
            .grace(std::time::Duration::from_secs(10))
            .drain(std::time::Duration::from_secs(8))
            .start()
            .unwrap();
        let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
        let request = tokio::spawn(sup.scope("request", async move |s| {
            let _t = s.temp_file().await;
            let _ = started_tx.send(());
            std::future::pending::<()>().await;
        }));
        started_rx.await.unwrap();
        let s = sup.clone();
        let shutdown = tokio::spawn(async move { s.shutdown().await });
        let s = sup.clone();
        eventually("the drain began", move || s.is_draining()).await;
        request.abort(); // the client hung up: the request's future is dropped
        let report = tokio::time::timeout(std::time::Duration::from_secs(5), shutdown)
            .await
            .expect("the drain ends when its last scope is dropped")
            .unwrap();
        let drain = report.drain.clone().expect("a drain ran");
        assert_eq!(
            (drain.scopes_at_start, drain.scopes_finished),
            (1, 1),
            "{drain:?}"
        );
        assert!(!drain.ran_out, "{drain:?}");
        assert!(report.leaks.is_empty(), "{report}");
    });
}
