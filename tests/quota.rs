//! Quotas (`Builder::quota`) that wait: waiting acquisitions proceed when room frees,
//! first come first served; a dropped waiting acquisition takes nothing; a child waits
//! until the one before is reaped; under a low `RLIMIT_NOFILE` an fd quota turns `EMFILE`
//! into waiting (isolated: the limit is process-wide). Refusals and room coming back are
//! in `quota_refusals.rs`. Each scenario checks fds and leftovers.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use custodian_suite::{Rt, entries, eventually, is_isolated, run_isolated, scenario};
use tokio::io::AsyncWriteExt;
use tokio_custodian::{Quota, ResourceKind, Supervisor};

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
