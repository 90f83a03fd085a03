//! Quotas (`Builder::quota`) that refuse and give back: fail-fast forms refuse with
//! `Error::QuotaExceeded`; room comes back on every release path, the emergency clean-up
//! included; a temp bytes quota refuses real writes past it; public error texts leave
//! paths out. Waiting for room is in `quota.rs`. Each scenario checks fds and leftovers.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use custodian_suite::{Rt, entries, eventually, scenario};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};
use tokio_custodian::{
    Cleanup, Error, Operation, Quota, Reclaim, ReleasePath, ResourceKind, Supervisor,
};

fn one_temp_file() -> Quota {
    Quota::live(ResourceKind::TempFile, 1)
}

struct Flag(Arc<Mutex<bool>>);

impl Reclaim for Flag {
    fn reclaim(self: Box<Self>) -> Cleanup {
        *self.0.lock().unwrap() = true;
        Cleanup::Done(Ok(()))
    }
}

#[test]
fn fail_fast_forms_refuse_with_a_typed_error() {
    scenario(Rt::Multi(2), "quota-try", async |base| {
        let sup = Supervisor::builder()
            .temp_base(&base)
            .quota(one_temp_file())
            .quota(Quota::live(ResourceKind::Child, 1))
            .quota(Quota::live(ResourceKind::AudioDecoder, 0))
            .start()
            .unwrap();
        let held = sup.temp_file().await.unwrap();
        let err = sup.temp().no_wait().file().await.unwrap_err();
        assert!(
            matches!(err, Error::QuotaExceeded { op: Operation::CreateTempFile, quota } if quota == one_temp_file()),
            "{err}"
        );
        assert_eq!(err.io_kind(), Some(std::io::ErrorKind::QuotaExceeded));
        assert_eq!(
            err.to_string(),
            "create temp file: quota live temp_file ≤ 1 exceeded"
        );
        assert_eq!(entries(sup.temp_root()).len(), 1, "nothing created");
        // `spawn` does not wait: the second child is refused before the fork.
        let mut first = sup.command("sleep").arg("30").spawn().unwrap();
        let err = sup.command("sleep").arg("30").spawn().unwrap_err();
        assert!(
            matches!(
                err,
                Error::QuotaExceeded {
                    op: Operation::Spawn,
                    ..
                }
            ),
            "{err}"
        );
        // Any kind registered through the core (an audio decoder here) is counted.
        let reclaimed = Arc::new(Mutex::new(false));
        let err = sup
            .root()
            .register(
                ResourceKind::AudioDecoder,
                "decoder",
                None,
                Flag(reclaimed.clone()),
            )
            .unwrap_err();
        assert!(matches!(
            err,
            Error::QuotaExceeded {
                op: Operation::Register,
                ..
            }
        ));
        assert!(
            *reclaimed.lock().unwrap(),
            "the refused resource was released"
        );
        let refused: Vec<u64> = sup.quotas().iter().map(|q| q.refused).collect();
        assert_eq!(refused, vec![1, 1, 1]);
        first.kill().await.unwrap();
        drop((first, held));
        let report = sup.shutdown().await;
        assert!(report.stats.is_consistent(), "{report}");
        assert_eq!(report.stats.live(), 0);
        // Nothing was started for the refused spawn; the refused registration was
        // created and released at once.
        assert_eq!(report.stats.kind(ResourceKind::Child).created, 1);
        let decoder = report.stats.kind(ResourceKind::AudioDecoder);
        assert_eq!(
            (decoder.created, decoder.released(ReleasePath::Cancelled)),
            (1, 1)
        );
        assert!(custodian_suite::zombie_children().is_empty());
    });
}

#[test]
fn room_comes_back_on_every_release_path() {
    scenario(Rt::Multi(2), "quota-paths", async |base| {
        let sup = Supervisor::builder()
            .temp_base(&base)
            .quota(one_temp_file())
            .quota(Quota::fds(7))
            .start()
            .unwrap();
        let free = |sup: &Supervisor| sup.quotas().iter().all(|q| q.in_use == 0);
        let held = |sup: &Supervisor| sup.quotas().iter().all(|q| q.in_use == 1);
        // close
        let t = sup.temp_file().await.unwrap();
        assert!(held(&sup));
        t.close().await.unwrap();
        assert!(free(&sup));
        // drop
        let t = sup.temp_file().await.unwrap();
        assert!(held(&sup));
        drop(t);
        assert!(free(&sup));
        // scope end, with the guard forgotten (a leak, reclaimed by the sweep)
        let s2 = sup.clone();
        sup.scope("s", async move |s| {
            std::mem::forget(s.temp_file().await.unwrap());
            assert!(held(&s2));
        })
        .await
        .unwrap();
        assert!(free(&sup));
        // scope cancelled while holding it
        let r = sup
            .root()
            .scope_with_grace("c", Duration::ZERO, async |s| {
                let _t = s.temp_file().await.unwrap();
                s.cancel();
                std::future::pending::<()>().await
            })
            .await;
        assert!(r.is_err());
        assert!(free(&sup));
        // a child: its room (its two pidfds and its stop's /proc scan) returns once it
        // is reaped
        let child = sup.command("sleep").arg("30").spawn().unwrap();
        assert_eq!(sup.quotas()[1].in_use, 5);
        drop(child);
        let s = sup.clone();
        eventually("the child's fd returned", move || free(&s)).await;
        // a kept file is no longer ours
        let kept = sup.temp_file().await.unwrap();
        let (file, path) = kept.keep().await.unwrap();
        assert!(free(&sup));
        drop(file);
        std::fs::remove_file(path).unwrap();
        // shutdown, with a root-scope file alive
        let alive = sup.temp_file().await.unwrap();
        assert!(held(&sup));
        let report = sup.shutdown().await;
        assert_eq!(report.alive_at_shutdown.len(), 1);
        assert!(free(&sup));
        drop(alive);
        assert!(report.stats.is_consistent());
    });
}

#[test]
fn emergency_cleanup_returns_room() {
    scenario(Rt::Multi(2), "quota-emergency", async |base| {
        let sup = Supervisor::builder()
            .temp_base(&base)
            .quota(one_temp_file())
            .start()
            .unwrap();
        let t = sup.temp_file().await.unwrap();
        assert_eq!(sup.quotas()[0].in_use, 1);
        assert_eq!(sup.emergency_cleanup().released, 1);
        assert_eq!(sup.quotas()[0].in_use, 0);
        drop(t);
    });
}

#[test]
fn a_temp_bytes_quota_refuses_writes_past_it() {
    scenario(Rt::Multi(2), "quota-bytes", async |base| {
        let sup = Supervisor::builder()
            .temp_base(&base)
            .quota(Quota::temp_bytes(1000))
            .start()
            .unwrap();
        let in_use = |sup: &Supervisor| sup.quotas()[0].in_use;
        let mut a = sup.temp_file().await.unwrap();
        a.write_all(&[1; 600]).await.unwrap();
        a.flush().await.unwrap();
        assert_eq!(in_use(&sup), 600);
        // Rewriting the same bytes costs nothing more.
        a.rewind().await.unwrap();
        a.write_all(&[2; 600]).await.unwrap();
        a.flush().await.unwrap();
        assert_eq!(in_use(&sup), 600);
        let mut b = sup.temp_file().await.unwrap();
        let err = b.write_all(&[3; 600]).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::QuotaExceeded, "{err}");
        b.write_all(&[3; 400]).await.unwrap();
        b.flush().await.unwrap();
        assert_eq!(
            std::fs::metadata(b.path()).unwrap().len(),
            400,
            "the refused write wrote nothing"
        );
        assert_eq!(in_use(&sup), 1000);
        assert_eq!(sup.quotas()[0].refused, 1);
        // A shrink by other means is settled at the next flush (fstat).
        std::fs::OpenOptions::new()
            .write(true)
            .open(a.path())
            .unwrap()
            .set_len(100)
            .unwrap();
        a.flush().await.unwrap();
        assert_eq!(in_use(&sup), 500);
        drop(a);
        assert_eq!(in_use(&sup), 400);
        b.write_all(&[4; 600]).await.unwrap();
        b.flush().await.unwrap();
        assert_eq!(std::fs::metadata(b.path()).unwrap().len(), 1000);
        drop(b);
        assert_eq!(in_use(&sup), 0);
        assert!(sup.shutdown().await.is_clean());
    });
}

/// Errors shown to a service's clients leave out the private temp root's random path.
#[test]
fn public_error_texts_leave_paths_out() {
    scenario(Rt::Multi(2), "quota-public", async |base| {
        let sup = Supervisor::builder()
            .temp_base(&base)
            .quota(one_temp_file())
            .start()
            .unwrap();
        let root = sup.temp_root().to_string_lossy().into_owned();
        let dir = sup.temp_dir().await.unwrap();
        let errors = [
            sup.open(sup.temp_root().join("upload.wav"))
                .await
                .unwrap_err(),
            // A directory is not a managed file.
            sup.open(dir.path()).await.unwrap_err(),
        ];
        for e in &errors {
            assert!(
                e.to_string().contains(&root),
                "the full text names the path: {e}"
            );
            let public = e.public().to_string();
            assert!(!public.contains(&root) && !public.contains('/'), "{public}");
        }
        assert_eq!(
            errors[0].public().to_string(),
            "open file: entity not found"
        );
        let held = sup.temp_file().await.unwrap();
        let busy = sup.temp().no_wait().file().await.unwrap_err();
        assert_eq!(
            busy.public().to_string(),
            "create temp file: busy (live temp_file ≤ 1 reached); retry later"
        );
        drop((held, dir));
        assert!(sup.shutdown().await.is_clean());
    });
}
