//! Quotas (`Builder::quota`): waiting acquisitions proceed when room frees, first come
//! first served; a dropped waiting acquisition takes nothing; fail-fast forms refuse with
//! `Error::QuotaExceeded`; room comes back on every release path; a temp bytes quota
//! refuses real writes past it; under a low `RLIMIT_NOFILE` an fd quota turns `EMFILE`
//! into waiting. Each scenario checks fds and leftovers.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use custodian_suite::{Rt, entries, eventually, is_isolated, run_isolated, scenario};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};
use tokio_custodian::{
    Cleanup, Error, Operation, Quota, Reclaim, ReleasePath, ResourceKind, Supervisor,
};

fn one_temp_file() -> Quota {
    Quota::live(ResourceKind::TempFile, 1)
}

async fn waiting(sup: &Supervisor, n: u64) {
    let s = sup.clone();
    eventually(&format!("{n} waiting"), move || s.quotas()[0].waiting == n).await;
}

#[test]
fn a_waiting_acquisition_proceeds_when_room_frees() {
    scenario(Rt::Multi(2), "quota-wait", async |base| {
        let sup = Supervisor::builder()
            .temp_base(&base)
            .quota(Quota::live(ResourceKind::TempFile, 2))
            .start()
            .unwrap();
        let a = sup.temp_file().await.unwrap();
        let b = sup.temp_file().await.unwrap();
        let s = sup.clone();
        let third = tokio::spawn(async move { s.temp_file().await });
        waiting(&sup, 1).await;
        // It waits before creating anything: two files in the root, not three.
        assert_eq!(entries(sup.temp_root()).len(), 2);
        assert!(!third.is_finished());
        drop(a);
        let c = third.await.unwrap().unwrap();
        assert!(c.path().exists());
        let q = &sup.quotas()[0];
        assert_eq!((q.in_use, q.waiting, q.waited, q.refused), (2, 0, 1, 0));
        let json = serde_json::to_value(sup.stats()).unwrap();
        assert_eq!(json["quotas"][0]["quota"]["on"]["live"], "temp_file");
        assert_eq!(json["quotas"][0]["waited"], 1);
        drop((b, c));
        assert!(sup.shutdown().await.is_clean());
    });
}

#[test]
fn waiters_are_served_first_come_first_served() {
    scenario(Rt::Multi(2), "quota-fifo", async |base| {
        let sup = Supervisor::builder()
            .temp_base(&base)
            .quota(one_temp_file())
            .start()
            .unwrap();
        let held = sup.temp_file().await.unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..6u64 {
            let (s, order) = (sup.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let f = s.temp_file().await.unwrap();
                order.lock().unwrap().push(i);
                tokio::task::yield_now().await;
                drop(f);
            }));
            // Each one queues before the next starts.
            waiting(&sup, i + 1).await;
        }
        drop(held);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3, 4, 5]);
        assert_eq!(sup.quotas()[0].waited, 6);
        assert!(sup.shutdown().await.is_clean());
    });
}

#[test]
fn a_dropped_waiting_acquisition_takes_nothing() {
    scenario(Rt::Multi(2), "quota-cancel", async |base| {
        let sup = Supervisor::builder()
            .temp_base(&base)
            .quota(one_temp_file())
            .quota(Quota::open_files(1))
            .start()
            .unwrap();
        let held = sup.temp_file().await.unwrap();
        // Dropped while waiting (by the timeout), and as an aborted task; each in a task
        // of its own, which holds nothing (this one, holding the room, would be refused:
        // it would wait for itself).
        let s = sup.clone();
        let r = tokio::spawn(async move {
            tokio::time::timeout(Duration::from_millis(30), s.temp_file()).await
        });
        assert!(r.await.unwrap().is_err(), "it had to wait");
        let s = sup.clone();
        let t = tokio::spawn(async move { s.temp_file().await });
        waiting(&sup, 1).await;
        t.abort();
        assert!(t.await.unwrap_err().is_cancelled());
        waiting(&sup, 0).await;
        drop(held);
        // All the room is back, in both quotas: nothing was kept by the dropped ones.
        let q = sup.quotas();
        assert_eq!((q[0].in_use, q[1].in_use), (0, 0));
        assert_eq!(entries(sup.temp_root()).len(), 0);
        let f = sup.temp().no_wait().file().await.unwrap();
        assert_eq!(sup.stats().kind(ResourceKind::TempFile).created, 2);
        drop(f);
        assert!(sup.shutdown().await.is_clean());
    });
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
fn a_child_waits_for_room_until_the_one_before_is_reaped() {
    scenario(Rt::Multi(2), "quota-child", async |base| {
        let sup = Supervisor::builder()
            .temp_base(&base)
            .quota(Quota::live(ResourceKind::Child, 1))
            .start()
            .unwrap();
        let first = sup.command("sleep").arg("30").spawn().unwrap();
        let pid = first.id().unwrap();
        let s = sup.clone();
        let second = tokio::spawn(async move { s.command("echo").arg("hi").output().await });
        waiting(&sup, 1).await;
        assert_eq!(
            sup.stats().kind(ResourceKind::Child).created,
            1,
            "nothing forked yet"
        );
        drop(first);
        let out = second.await.unwrap().unwrap();
        assert_eq!(out.stdout, b"hi\n");
        // Room came back only once the first was reaped.
        assert!(!custodian_suite::pid_exists(pid));
        assert_eq!(sup.quotas()[0].waited, 1);
        assert!(sup.shutdown().await.is_clean());
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

const ISOLATED: &str = "CUSTODIAN_QUOTA_ISOLATED";

#[test]
fn an_fd_quota_turns_emfile_into_waiting() {
    run_isolated("fd_quota_under_a_low_rlimit", ISOLATED, false);
}

/// 64 concurrent uploads (temp file, write, short hold) under an fd limit 20 above what
/// the process uses: without a quota some fail with `EMFILE`; with `Quota::fds(12)` all
/// of them wait their turn and succeed.
#[test]
#[ignore = "lowers RLIMIT_NOFILE: run by an_fd_quota_turns_emfile_into_waiting"]
fn fd_quota_under_a_low_rlimit() {
    if !is_isolated(ISOLATED, "fd_quota_under_a_low_rlimit") {
        return;
    }
    use rustix::process::{Resource, getrlimit, setrlimit};
    let burst = async |sup: &Supervisor| {
        let mut tasks: Vec<tokio::task::JoinHandle<tokio_custodian::Result<()>>> = Vec::new();
        for _ in 0..64 {
            let s = sup.clone();
            tasks.push(tokio::spawn(async move {
                s.scope("upload", async |s| {
                    let mut f = s.temp_file().await?;
                    f.write_all(b"RIFF....WAVE").await.unwrap();
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    tokio_custodian::Result::Ok(())
                })
                .await?
            }));
        }
        let mut emfile = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(()) => {}
                Err(e) if e.to_string().contains("Too many open files") => emfile += 1,
                Err(e) => panic!("unexpected: {e}"),
            }
        }
        emfile
    };
    scenario(Rt::Multi(2), "quota-rlimit", async |base| {
        let before = getrlimit(Resource::Nofile);
        let without = Supervisor::builder().temp_base(&base).start().unwrap();
        let with = Supervisor::builder()
            .temp_base(&base)
            .quota(Quota::fds(12))
            .start()
            .unwrap();
        let mut low = before;
        low.current = Some(custodian_suite::open_fds() as u64 + 20);
        setrlimit(Resource::Nofile, low).unwrap();
        let failed_without = burst(&without).await;
        let failed_with = burst(&with).await;
        setrlimit(Resource::Nofile, before).unwrap();
        eprintln!("EMFILE failures: {failed_without} without a quota, {failed_with} with fds(12)");
        assert!(failed_without > 0, "the limit was not low enough to matter");
        assert_eq!(failed_with, 0);
        assert!(with.quotas()[0].waited > 0);
        assert!(without.shutdown().await.is_clean());
        assert!(with.shutdown().await.is_clean());
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
