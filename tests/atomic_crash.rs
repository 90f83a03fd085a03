//! Crash safety and concurrent readers of `atomic_write`.
//!
//! - A child process (this test binary, re-run on its ignored `writer_child` test)
//!   replaces one target in a loop with `atomic_write`; the parent SIGKILLs it at a
//!   random point, over and over (200 kills, the full run; the
//!   `CUSTODIAN_ATOMIC_KILLS` variable changes the count). After every kill the target must be, byte for byte, one
//!   complete version the child wrote, never empty, never a mix; a temp name the kill
//!   left behind must carry the atomic prefix, and `sweep_atomic_temps` must remove it.
//! - Two writers and four reader threads share one target for 2 s
//!   (`CUSTODIAN_ATOMIC_SECS=10` for the 10 s): every read is a complete version.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use custodian_suite::{entries, scratch_dir};
use tokio_custodian::Supervisor;

/// Set (to the target path) in the child that writes in a loop.
const CHILD: &str = "CUSTODIAN_ATOMIC_CRASH_CHILD";

/// Version `i` of the content: a header naming `i` and the length, then bytes derived
/// from `i`. Lengths vary from 20 B to 192 KiB, so some writes span many pages.
fn version(i: u64) -> Vec<u8> {
    let len = 1 + (i.wrapping_mul(7919) % (192 * 1024)) as usize;
    let mut v = format!("v{i:012}:{len:08}:").into_bytes();
    v.extend((0..len).map(|k| (i as usize).wrapping_mul(31).wrapping_add(k) as u8));
    v
}

/// Which version `bytes` is, if it is exactly one.
fn which_version(bytes: &[u8]) -> Option<u64> {
    let head = std::str::from_utf8(bytes.get(..23)?).ok()?;
    let i: u64 = head.get(1..13)?.parse().ok()?;
    (version(i) == bytes).then_some(i)
}

fn random_below(n: u64) -> u64 {
    let mut b = [0u8; 8];
    rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty()).unwrap();
    u64::from_ne_bytes(b) % n
}

fn temps(dir: &Path) -> Vec<String> {
    entries(dir)
        .into_iter()
        .filter(|n| n.starts_with(tokio_custodian::ATOMIC_TEMP_PREFIX))
        .collect()
}

#[test]
#[ignore = "runs in its own process, started by sigkill_at_random_points_leaves_a_whole_version"]
fn writer_child() {
    let Ok(target) = std::env::var(CHILD) else {
        return;
    };
    let target = PathBuf::from(target);
    let roots = target.parent().unwrap().join("roots");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let sup = Supervisor::builder().temp_base(&roots).start().unwrap();
        // Start after the last version the previous child committed.
        let mut i = std::fs::read(&target)
            .ok()
            .and_then(|b| which_version(&b))
            .map_or(0, |i| i + 1);
        loop {
            sup.atomic_write(&target, version(i)).await.unwrap();
            i += 1;
        }
    });
}

#[test]
fn sigkill_at_random_points_leaves_a_whole_version() {
    let kills: u64 = std::env::var("CUSTODIAN_ATOMIC_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let dir = scratch_dir("atomic-crash");
    std::fs::create_dir(dir.join("roots")).unwrap();
    let target = dir.join("target");
    let exe = std::env::current_exe().unwrap();
    let started = Instant::now();
    let (mut left_behind, mut versions) = (std::collections::BTreeSet::new(), Vec::new());
    for _ in 0..kills {
        let mut child = Command::new(&exe)
            .args(["--exact", "writer_child", "--ignored", "--nocapture"])
            .args(["--test-threads=1"])
            .env(CHILD, &target)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Kill anywhere from start-up to deep in the loop.
        std::thread::sleep(Duration::from_micros(2_000 + random_below(30_000)));
        child.kill().unwrap();
        child.wait().unwrap();
        if let Ok(bytes) = std::fs::read(&target) {
            let v = which_version(&bytes);
            assert!(
                v.is_some(),
                "after a kill the target is not one whole version ({} bytes, starts {:?})",
                bytes.len(),
                String::from_utf8_lossy(&bytes[..bytes.len().min(23)])
            );
            versions.push(v.unwrap());
        }
        left_behind.extend(temps(&dir));
        let strays: Vec<_> = entries(&dir)
            .into_iter()
            .filter(|n| {
                n != "target" && n != "roots" && !n.starts_with(tokio_custodian::ATOMIC_TEMP_PREFIX)
            })
            .collect();
        assert!(strays.is_empty(), "unexpected names: {strays:?}");
    }
    assert!(
        versions.len() as u64 >= kills / 2,
        "the child committed too rarely to test anything: {versions:?}"
    );
    assert!(
        versions.windows(2).all(|w| w[0] <= w[1]),
        "versions went back: {versions:?}"
    );
    // A kill between `linkat` and `renameat` leaves a named temp file: the sweep takes it.
    let before = temps(&dir).len();
    let swept = tokio_custodian::AtomicFile::sweep(&dir, Duration::ZERO).unwrap();
    assert_eq!(swept, before);
    assert!(temps(&dir).is_empty(), "the sweep left some");
    eprintln!(
        "{kills} kills in {:?}: {} versions seen (last {:?}), {} temp names left \
         behind by kills, {swept} swept at the end",
        started.elapsed(),
        versions.len(),
        versions.last(),
        left_behind.len()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn readers_never_see_a_partial_file() {
    let secs: u64 = std::env::var("CUSTODIAN_ATOMIC_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let dir = scratch_dir("atomic-readers");
    let target = dir.join("shared");
    std::fs::write(&target, version(0)).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (stop, reads, target) = (stop.clone(), reads.clone(), target.clone());
            std::thread::spawn(move || {
                // Relaxed: a stop flag and a counter, read after `join`.
                while !stop.load(Ordering::Relaxed) {
                    let bytes = std::fs::read(&target).unwrap();
                    assert!(
                        which_version(&bytes).is_some(),
                        "a partial read: {} bytes",
                        bytes.len()
                    );
                    reads.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let writes = rt.block_on(async {
        let sup = Supervisor::builder().start().unwrap();
        let deadline = Instant::now() + Duration::from_secs(secs);
        let writers: Vec<_> = (0..2u64)
            .map(|w| {
                let (sup, target) = (sup.clone(), target.clone());
                tokio::spawn(async move {
                    let mut n = 0u64;
                    while Instant::now() < deadline {
                        sup.atomic_write(&target, version(w + 2 * n + 1))
                            .await
                            .unwrap();
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        let mut total = 0;
        for w in writers {
            total += w.await.unwrap();
        }
        assert!(sup.shutdown().await.is_clean());
        total
    });
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().expect("a reader saw a partial file");
    }
    let reads = reads.load(Ordering::Relaxed);
    eprintln!("{secs} s: {writes} atomic writes, {reads} whole reads");
    assert!(
        writes > 10 && reads > 100,
        "too little happened: {writes} writes, {reads} reads"
    );
    assert!(temps(&dir).is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}
