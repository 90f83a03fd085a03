//! Fd quotas that count what is really held (issue 23): a child's two pidfds (custodian's
//! and tokio's) and the fds of its stop's `/proc` scan, a spawn's transient pipes, a
//! lock's fd, an atomic writer's temp and directory fds. At random moments of a mixed
//! load the quota's `in_use` is never below what `/proc/self/fd` shows; a quota wait ends
//! with its scope; a decoder waits for room; a quota beyond the largest limit is
//! refused. Load under a low `RLIMIT_NOFILE` is in `quota_fds.rs`.

use std::time::Duration;

use custodian_suite::{Rt, open_fds, scenario};
use tokio::io::AsyncWriteExt;
use tokio_custodian::{Quota, Supervisor};

/// Whether `e` is a quota's refusal.
fn refused(e: &tokio_custodian::Error) -> bool {
    matches!(e, tokio_custodian::Error::QuotaExceeded { .. })
}

/// At random moments of a mixed load (temp files, open files, children by `spawn` +
/// drop, `output` and `status`, locks, atomic files), the fds the process has open beyond
/// its baseline are never more than the fd quota's `in_use`.
#[test]
fn in_use_is_never_below_the_open_fds() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    scenario(Rt::Multi(2), "quota-fds-sample", async |base| {
        let sup = Supervisor::builder()
            .temp_base(&base)
            .quota(Quota::fds(40))
            .start()
            .unwrap();
        let data = base.join("data");
        std::fs::write(&data, b"0123456789").unwrap();
        // The start-up reap holds fds of its own (the base, `/proc/locks`) for a moment,
        // on the blocking pool, outside the quota: over before the baseline.
        sup.reaped_at_start().await;
        // Warm up what stays open once used (tokio's process machinery).
        assert!(sup.command("true").status().await.unwrap().success());
        custodian_suite::assert_fds_settle(open_fds(), "warm-up");
        let baseline = open_fds();
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = {
            let (sup, stop) = (sup.clone(), stop.clone());
            std::thread::spawn(move || {
                let (mut samples, mut below, mut worst) = (0u32, 0u32, 0i64);
                let mut x = 0x9e37_79b9_u32;
                while !stop.load(Ordering::Relaxed) {
                    let before = sup.quotas()[0].in_use;
                    let fds = open_fds();
                    let after = sup.quotas()[0].in_use;
                    let real = fds.saturating_sub(baseline) as u64;
                    samples += 1;
                    if real > before.max(after) {
                        below += 1;
                        worst = worst.max(real as i64 - before.max(after) as i64);
                    }
                    // xorshift: a pause of 0 to 1 ms.
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    std::thread::sleep(Duration::from_micros(u64::from(x % 1000)));
                }
                (samples, below, worst)
            })
        };
        let tasks: Vec<_> = (0..24usize)
            .map(|t| {
                let (sup, data, base) = (sup.clone(), data.clone(), base.clone());
                tokio::spawn(async move {
                    for i in 0..12usize {
                        let r = sup
                            .scope("mixed", async |s| {
                                match (t + i) % 7 {
                                    0 => {
                                        let mut f = s.temp_file().await?;
                                        f.write_all(b"x").await.unwrap();
                                    }
                                    1 => drop(s.open(&data).await?),
                                    2 => drop(s.command("echo").arg("x").output().await?),
                                    3 => assert!(s.command("true").status().await?.success()),
                                    4 => {
                                        // Dropped running: its stop scans /proc.
                                        let c =
                                            s.command("sleep").arg("5").spawn_when_room().await?;
                                        tokio::time::sleep(Duration::from_millis(3)).await;
                                        drop(c);
                                    }
                                    5 => {
                                        let l = base.join(format!("lock-{t}"));
                                        drop(s.file_lock(&l).acquire().await?);
                                        std::fs::remove_file(&l).unwrap();
                                    }
                                    _ => {
                                        let a = base.join(format!("atomic-{t}"));
                                        let mut w = s.atomic_file(&a).await?;
                                        w.write_all(b"y").await.unwrap();
                                        w.commit().await?;
                                        std::fs::remove_file(&a).unwrap();
                                    }
                                }
                                tokio::time::sleep(Duration::from_millis(1)).await;
                                tokio_custodian::Result::Ok(())
                            })
                            .await;
                        match r.and_then(|r| r) {
                            Ok(()) => {}
                            Err(e) if refused(&e) => {}
                            Err(e) => panic!("unexpected: {e}"),
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        let (samples, below, worst) = sampler.join().unwrap();
        eprintln!("{samples} samples: in_use below the open fds in {below} (by up to {worst})");
        assert!(samples > 100, "too few samples: {samples}");
        assert_eq!(below, 0, "in_use was below the fds held, by up to {worst}");
        let sup2 = sup.clone();
        custodian_suite::eventually("room back", move || sup2.quotas()[0].in_use == 0).await;
        std::fs::remove_file(&data).unwrap();
        assert!(sup.shutdown().await.is_clean());
    });
}

/// A wait for room ends as soon as its scope is cancelled (`Error::Cancelled`), not at
/// the scope's grace; it takes nothing.
#[test]
fn a_quota_wait_ends_when_its_scope_is_cancelled() {
    scenario(Rt::Multi(2), "quota-wait-cancel", async |base| {
        let sup = Supervisor::builder()
            .temp_base(&base)
            .quota(Quota::fds(1))
            .start()
            .unwrap();
        let held = sup.temp_file().await.unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let s = sup.clone();
        let waiter = tokio::spawn(async move {
            s.root()
                .scope_with_grace("waits", Duration::from_secs(30), async |s| {
                    let _ = tx.send(s.clone());
                    let r = s.temp_file().await.map(drop);
                    (r, std::time::Instant::now())
                })
                .await
        });
        let scope = rx.await.unwrap();
        let s2 = sup.clone();
        custodian_suite::eventually("waiting", move || s2.quotas()[0].waiting == 1).await;
        let cancelled_at = std::time::Instant::now();
        scope.cancel();
        let (r, ended_at) = waiter.await.unwrap().unwrap();
        let took = ended_at - cancelled_at;
        assert!(
            matches!(r, Err(tokio_custodian::Error::Cancelled { .. })),
            "{r:?}"
        );
        assert!(
            took < Duration::from_secs(1),
            "ended {took:?} after the cancel"
        );
        let q = &sup.quotas()[0];
        assert_eq!((q.in_use, q.waiting), (1, 0), "{q}");
        assert_eq!(custodian_suite::entries(sup.temp_root()).len(), 1);
        drop(held);
        assert!(sup.shutdown().await.is_clean());
    });
}

/// A 16-bit mono 16 kHz WAV of `frames` samples.
fn wav(frames: u32) -> Vec<u8> {
    let mut v = b"RIFF".to_vec();
    v.extend_from_slice(&(36 + 2 * frames).to_le_bytes());
    v.extend_from_slice(b"WAVEfmt \x10\0\0\0\x01\0\x01\0\x80\x3e\0\0\0\x7d\0\0\x02\0\x10\0data");
    v.extend_from_slice(&(2 * frames).to_le_bytes());
    v.extend((0..frames).flat_map(|i| ((i % 200) as i16 * 100).to_le_bytes()));
    v
}

/// A decoder waits for room like a file (it used to fail fast with `QuotaExceeded`).
#[test]
fn a_decoder_waits_for_room() {
    scenario(Rt::Multi(2), "quota-decoder", async |base| {
        let sup = Supervisor::builder()
            .temp_base(&base)
            .quota(Quota::fds(1))
            .start()
            .unwrap();
        let path = base.join("a.wav");
        std::fs::write(&path, wav(1000)).unwrap();
        let held = sup.temp_file().await.unwrap();
        let (s, p) = (sup.clone(), path.clone());
        let decoder = tokio::spawn(async move {
            tokio_custodian_audio::AudioDecoder::open(&s.root(), &p)
                .await
                .map(|d| d.info().channels)
        });
        let s2 = sup.clone();
        custodian_suite::eventually("waiting", move || s2.quotas()[0].waiting == 1).await;
        assert!(!decoder.is_finished());
        drop(held);
        assert_eq!(decoder.await.unwrap().unwrap(), 1);
        let s2 = sup.clone();
        custodian_suite::eventually("room back", move || s2.quotas()[0].in_use == 0).await;
        std::fs::remove_file(&path).unwrap();
        assert!(sup.shutdown().await.is_clean());
    });
}

/// A quota read through serde keeps the limit as written: `u64::MAX` is refused by
/// `start` with a typed error, before the temp root exists (it used to panic after).
#[test]
fn a_serde_quota_beyond_the_largest_limit_is_refused_by_start() {
    scenario(Rt::Multi(2), "quota-serde-max", async |base| {
        let q: Quota =
            serde_json::from_str(&format!(r#"{{"on":"fds","limit":{}}}"#, u64::MAX)).unwrap();
        assert_eq!(q.limit(), u64::MAX);
        let r = Supervisor::builder().temp_base(&base).quota(q).start();
        let e = r.map(drop).unwrap_err();
        assert_eq!(e.io_kind(), Some(std::io::ErrorKind::InvalidInput), "{e}");
        assert_eq!(e.operation(), tokio_custodian::Operation::CreateTempRoot);
        assert!(e.to_string().contains("fds"), "{e}");
        assert!(
            custodian_suite::entries(&base).is_empty(),
            "a root was left"
        );
    });
}
