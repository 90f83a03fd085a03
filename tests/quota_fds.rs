//! Fd quotas that count what is really held (issue 23), under load: under a low
//! `RLIMIT_NOFILE` (isolated: the limit is process-wide), `Quota::fds(n)` turns `EMFILE`
//! at `spawn` into waiting; holding and waiting never deadlocks. What each resource
//! counts (a child's two pidfds and the fds of its stop's `/proc` scan, a spawn's
//! transient pipes, a lock's fd, an atomic writer's temp and directory fds), checked
//! against `/proc/self/fd`, is in `quota_fds_accounting.rs`.

use std::time::Duration;

use custodian_suite::{Rt, is_isolated, open_fds, run_isolated, scenario};
use tokio::io::AsyncWriteExt;
use tokio_custodian::{Quota, Supervisor};

const ISOLATED: &str = "CUSTODIAN_QUOTA_FDS_ISOLATED";
/// A request that has not ended by then never will.
const STUCK: Duration = Duration::from_secs(30);

#[test]
fn children_under_an_fd_quota_do_not_hit_emfile() {
    run_isolated("children_under_a_low_rlimit", ISOLATED, false);
}

/// One request: a temp file written, then a child (`spawn`, `output` or `status` in
/// turn), then a short hold: how it ended. With `child_first`, the child runs before the
/// temp file is created (nothing is held while waiting for the child).
async fn request(sup: Supervisor, i: usize, child_first: bool) -> End {
    let r = tokio::time::timeout(
        STUCK,
        sup.scope("request", async move |s| {
            let mut f = None;
            if !child_first {
                f = Some(s.temp_file().await?);
            }
            match i % 3 {
                0 => {
                    let mut c = s.command("true").spawn_when_room().await?;
                    c.wait().await?;
                }
                1 => drop(s.command("echo").arg("hi").output().await?),
                _ => assert!(s.command("true").status().await?.success()),
            }
            let mut f = match f {
                Some(f) => f,
                None => s.temp_file().await?,
            };
            f.write_all(b"RIFF....WAVE").await.unwrap();
            tokio::time::sleep(Duration::from_millis(2)).await;
            tokio_custodian::Result::Ok(())
        }),
    )
    .await;
    let Ok(r) = r else {
        return End::Stuck;
    };
    match r.and_then(|r| r) {
        Ok(()) => End::Finished,
        Err(e) if refused(&e) => End::Refused,
        Err(e) if e.to_string().contains("Too many open files") => End::Emfile,
        Err(e) => panic!("unexpected: {e}"),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    Finished,
    Refused,
    Emfile,
    Stuck,
}

/// 200 concurrent requests with children, under `Quota::fds(28)` and an fd limit 32
/// above what the process uses: without the quota many fail with `EMFILE`; with it none.
#[test]
#[ignore = "lowers RLIMIT_NOFILE: run by children_under_an_fd_quota_do_not_hit_emfile"]
fn children_under_a_low_rlimit() {
    if !is_isolated(ISOLATED, "children_under_a_low_rlimit") {
        return;
    }
    use rustix::process::{Resource, getrlimit, setrlimit};
    let burst = async |sup: &Supervisor, child_first: bool| {
        let tasks: Vec<_> = (0..200)
            .map(|i| tokio::spawn(request(sup.clone(), i, child_first)))
            .collect();
        let mut ends = [0; 4];
        for t in tasks {
            ends[t.await.unwrap() as usize] += 1;
        }
        ends
    };
    scenario(Rt::Multi(2), "quota-fds-rlimit", async |base| {
        let before = getrlimit(Resource::Nofile);
        let without = Supervisor::builder().temp_base(&base).start().unwrap();
        let with = Supervisor::builder()
            .temp_base(&base)
            .quota(Quota::fds(28))
            .start()
            .unwrap();
        // Warm up tokio's process machinery (its SIGCHLD pipe) before the limit.
        assert!(without.command("true").status().await.unwrap().success());
        let mut low = before;
        low.current = Some(open_fds() as u64 + 32);
        setrlimit(Resource::Nofile, low).unwrap();
        // Nothing held while a child is waited for: what the undercount broke.
        let [_, _, first_without, _] = burst(&without, true).await;
        let [first_done, first_refused, first_with, first_stuck] = burst(&with, true).await;
        // A temp file held while a child is waited for: what the deadlock broke.
        let [_, _, failed_without, _] = burst(&without, false).await;
        let started = std::time::Instant::now();
        let [finished, refusals, failed_with, stuck] = burst(&with, false).await;
        let took = started.elapsed();
        setrlimit(Resource::Nofile, before).unwrap();
        eprintln!(
            "200 requests, child first: {first_without} EMFILE without a quota; with fds(28): \
             {first_with} EMFILE, {first_done} finished, {first_refused} refused, \
             {first_stuck} stuck"
        );
        assert!(first_without > 0, "the limit was not low enough to matter");
        assert_eq!((first_with, first_stuck), (0, 0), "EMFILE, stuck");
        eprintln!(
            "200 requests, temp file held: {failed_without} EMFILE without a quota; with \
             fds(28): {failed_with} EMFILE, {finished} finished, {refusals} refused, {stuck} \
             stuck, in {took:.2?}; {}",
            with.quotas()[0]
        );
        assert!(failed_without > 0, "the limit was not low enough to matter");
        assert_eq!((failed_with, stuck), (0, 0), "EMFILE, stuck");
        let q = &with.quotas()[0];
        assert_eq!((q.in_use, q.waiting), (0, 0), "{q}");
        assert!(without.shutdown().await.is_clean());
        assert!(with.shutdown().await.is_clean());
    });
}

/// Whether `e` is a quota's refusal.
fn refused(e: &tokio_custodian::Error) -> bool {
    matches!(e, tokio_custodian::Error::QuotaExceeded { .. })
}

/// 40 requests of the hold-and-wait shape (a temp file and an open file held, then a
/// child waited for) under `Quota::fds(12)`, room for one request's whole need: each
/// finishes or is refused with `QuotaExceeded` promptly; none waits for ever, and
/// nothing is left (fds, paths, children, room).
#[test]
fn hold_and_wait_never_deadlocks() {
    scenario(Rt::Multi(2), "quota-hold-wait", async |base| {
        let sup = Supervisor::builder()
            .temp_base(&base)
            .quota(Quota::fds(12))
            .start()
            .unwrap();
        let data = base.join("data");
        std::fs::write(&data, b"0123456789").unwrap();
        let started = std::time::Instant::now();
        let tasks: Vec<_> = (0..40)
            .map(|_| {
                let (sup, data) = (sup.clone(), data.clone());
                tokio::spawn(async move {
                    let body = sup.scope("hold-and-wait", async |s| {
                        let _upload = s.temp_file().await?;
                        let _input = s.open(&data).await?;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        let st = s.command("sleep").arg("0.02").status().await?;
                        assert!(st.success());
                        tokio_custodian::Result::Ok(())
                    });
                    tokio::time::timeout(Duration::from_secs(20), body).await
                })
            })
            .collect();
        let (mut finished, mut refusals, mut stuck) = (0, 0, 0);
        for t in tasks {
            match t.await.unwrap() {
                Err(_) => stuck += 1,
                Ok(r) => match r.and_then(|r| r) {
                    Ok(()) => finished += 1,
                    Err(e) if refused(&e) => refusals += 1,
                    Err(e) => panic!("unexpected: {e}"),
                },
            }
        }
        let took = started.elapsed();
        let q = sup.quotas()[0].clone();
        eprintln!(
            "40 hold-and-wait requests under fds(12): {finished} finished, {refusals} refused, \
             {stuck} stuck, in {took:.2?}; {q}"
        );
        assert_eq!(stuck, 0, "the quota stopped the service");
        assert_eq!(finished + refusals, 40);
        assert!(finished > 0, "no request went through");
        assert!(took < Duration::from_secs(15), "not prompt: {took:?}");
        let sup2 = sup.clone();
        custodian_suite::eventually("room back", move || {
            let q = &sup2.quotas()[0];
            q.in_use == 0 && q.waiting == 0
        })
        .await;
        assert!(custodian_suite::entries(sup.temp_root()).is_empty());
        std::fs::remove_file(&data).unwrap();
        assert!(sup.shutdown().await.is_clean());
        assert!(custodian_suite::zombie_children().is_empty());
    });
}
