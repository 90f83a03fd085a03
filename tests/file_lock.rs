//! `FileLock` between processes, and `Retry` on a busy lock.
//!
//! The other process is this test binary re-run on its ignored `lock_holder_child` test:
//! it takes the lock through custodian, says "locked" and waits to be SIGKILLed.
//! `flock(1)` is the independent witness that nothing holds a lock any more.

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use custodian_suite::{Rt, scenario};
use tokio_custodian::{GaveUp, Operation, ResourceKind, Retry, Supervisor};

const CHILD: &str = "CUSTODIAN_LOCK_CHILD";

#[test]
#[ignore = "runs in its own process, started by the tests below"]
fn lock_holder_child() {
    let Ok(spec) = std::env::var(CHILD) else {
        return;
    };
    let (mode, path) = spec.split_once(':').unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let sup = Supervisor::builder().start().unwrap();
        let opts = sup.file_lock(path);
        let opts = if mode == "shared" {
            opts.shared()
        } else {
            opts
        };
        let _held = opts.acquire().await.unwrap();
        println!("locked");
        tokio::time::sleep(Duration::from_secs(60)).await;
    });
}

/// Starts a process holding `mode` lock on `path`; returns once it holds it.
fn holder(mode: &str, path: &Path) -> Child {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "lock_holder_child", "--ignored", "--nocapture"])
        .args(["--test-threads=1"])
        .env(CHILD, format!("{mode}:{}", path.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    // The test harness prints its own lines first.
    while !line.contains("locked") {
        line.clear();
        assert_ne!(out.read_line(&mut line).unwrap(), 0, "the holder exited");
    }
    child
}

/// Asserts that another process can take an exclusive lock on `path`, polling for up
/// to 5 s (a loaded machine may run the `flock(1)` process late; a lock that is really
/// held fails every poll). The panic lists `/proc/locks` lines for the file's inode.
fn assert_free_for_others(path: &Path, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !free_for_others(path) {
        if Instant::now() > deadline {
            let ino = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(path).unwrap());
            let locks = std::fs::read_to_string("/proc/locks").unwrap_or_default();
            let held: Vec<_> = locks
                .lines()
                .filter(|l| l.contains(&format!(":{ino} ")))
                .collect();
            panic!(
                "{what}: still locked (test pid {}): {held:#?}",
                std::process::id()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether another process can take an exclusive lock on `path` right now.
fn free_for_others(path: &Path) -> bool {
    Command::new("flock")
        .args(["-n", "-x"])
        .arg(path)
        .arg("true")
        .status()
        .unwrap()
        .success()
}

#[test]
fn exclusive_excludes_shared_shares_and_a_killed_holder_frees_it() {
    scenario(Rt::Multi(2), "lock-procs", async |dir| {
        let sup = Supervisor::builder().start().unwrap();
        let path = dir.join("db.lock");
        let mut other = holder("exclusive", &path);
        for shared in [false, true] {
            let opts = sup.file_lock(&path);
            let opts = if shared { opts.shared() } else { opts };
            let err = opts.try_acquire().await.unwrap_err();
            assert_eq!(err.io_kind(), Some(std::io::ErrorKind::WouldBlock));
            assert_eq!(err.operation(), Operation::Lock);
            assert_eq!(err.path(), Some(path.as_path()));
        }
        // A timeout too far to represent saturates (no panic).
        let far = sup
            .file_lock(&path)
            .timeout(Duration::MAX)
            .try_acquire()
            .await;
        assert_eq!(
            far.unwrap_err().io_kind(),
            Some(std::io::ErrorKind::WouldBlock)
        );
        let t0 = Instant::now();
        let err = sup
            .file_lock(&path)
            .timeout(Duration::from_millis(100))
            .acquire()
            .await
            .unwrap_err();
        assert_eq!(err.io_kind(), Some(std::io::ErrorKind::TimedOut), "{err}");
        assert!(t0.elapsed() >= Duration::from_millis(100));
        // A waiter gets the lock once the kernel drops the SIGKILLed holder's.
        let waiter = tokio::spawn(sup.file_lock(&path).acquire());
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "took a lock another process holds");
        other.kill().unwrap();
        other.wait().unwrap();
        let held = tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .expect("the lock of a killed holder was never released")
            .unwrap()
            .unwrap();
        let live = sup.live();
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].kind(), ResourceKind::Lock);
        assert_eq!(live[0].label(), "exclusive db.lock");
        assert!(
            live[0].site().file.ends_with("file_lock.rs"),
            "{:?}",
            live[0].site()
        );
        assert!(!free_for_others(&path));
        held.unlock().await.unwrap();
        assert_free_for_others(&path, "after unlock");
        // Shared shares, and excludes an exclusive one.
        let mut other = holder("shared", &path);
        let mine = sup.file_lock(&path).shared().try_acquire().await.unwrap();
        let err = sup.file_lock(&path).try_acquire().await.unwrap_err();
        assert_eq!(err.io_kind(), Some(std::io::ErrorKind::WouldBlock));
        other.kill().unwrap();
        other.wait().unwrap();
        drop(mine);
        assert_free_for_others(&path, "after the shared holders");
        assert!(sup.shutdown().await.is_clean());
        std::fs::remove_file(&path).unwrap();
    });
}

#[test]
fn cancelled_acquire_holds_nothing_and_children_do_not_inherit() {
    scenario(Rt::Current, "lock-cancel", async |dir| {
        let sup = Supervisor::builder().start().unwrap();
        let path = dir.join("l");
        let first = sup.file_lock(&path).acquire().await.unwrap();
        // An acquisition cancelled while waiting, and one dropped before its first poll.
        let cut = tokio::time::timeout(Duration::from_millis(30), sup.file_lock(&path).acquire());
        assert!(cut.await.is_err());
        drop(sup.file_lock(&path).acquire());
        // A scope cancelled while its acquisition waits ends it with `Interrupted`.
        let p = path.clone();
        let waiting = sup.scope("waits", async move |s| {
            let s2 = s.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                s2.cancel();
            });
            s.file_lock(&p).acquire().await.map(drop)
        });
        let err = waiting.await.unwrap().unwrap_err();
        assert_eq!(err.io_kind(), Some(std::io::ErrorKind::Interrupted));
        // A child started while the lock is held does not keep it.
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        first.unlock().await.unwrap();
        assert_free_for_others(&path, "a lock outlived its guard");
        assert_eq!(sup.stats().live(), 0);
        assert_eq!(sup.stats().kind(ResourceKind::Lock).created, 1);
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(sup.shutdown().await.is_clean());
        std::fs::remove_file(&path).unwrap();
    });
}

#[test]
fn retry_waits_out_a_busy_lock_and_never_retries_what_is_not_transient() {
    scenario(Rt::Current, "lock-retry", async |dir| {
        let sup = Supervisor::builder().start().unwrap();
        let path = dir.join("busy");
        let held = sup.file_lock(&path).acquire().await.unwrap();
        let release = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            drop(held);
        });
        let policy = Retry::new()
            .attempts(50)
            .base_delay(Duration::from_millis(2))
            .max_delay(Duration::from_millis(10));
        let got = policy
            .run(|_| sup.file_lock(&path).try_acquire())
            .await
            .unwrap();
        release.await.unwrap();
        drop(got);
        // Not transient: one attempt, its cause kept.
        let mut calls = 0;
        let err = policy
            .run(|_| {
                calls += 1;
                sup.atomic_write(dir.join("no/such/dir"), "x")
            })
            .await
            .unwrap_err();
        assert_eq!((calls, err.gave_up()), (1, GaveUp::NotTransient));
        assert_eq!(
            err.attempts()[0].io_kind(),
            Some(std::io::ErrorKind::NotFound)
        );
        // Cancelled while waiting between attempts: every cause so far is kept.
        let held = sup.file_lock(&path).acquire().await.unwrap();
        // A token of its own (a scope's token would do as well).
        let token = sup.root().token().child_token();
        let t = token.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            t.cancel();
        });
        let err = Retry::new()
            .attempts(1000)
            .base_delay(Duration::from_millis(5))
            .cancel_on(token)
            .run(|_| sup.file_lock(&path).try_acquire())
            .await
            .unwrap_err();
        assert_eq!(err.gave_up(), GaveUp::Cancelled);
        assert!(!err.attempts().is_empty() && err.attempts().len() < 1000);
        assert!(err.to_string().contains("cancelled"), "{err}");
        drop(held);
        assert!(sup.shutdown().await.is_clean());
        std::fs::remove_file(&path).unwrap();
    });
}
