//! Heap bytes per live registry entry and per finished scope (issue 13), counted by a
//! counting global allocator (`stats_alloc`) — requested bytes, not RSS: malloc's own
//! rounding and the allocator's free lists are not custodian's. Goal: at most 256 B per
//! live entry, nothing retained per finished scope. The numbers are printed
//! (`cargo test -p custodian-suite --test memory_footprint -- --nocapture`) and recorded in
//! docs/benchmarks.md.

use std::alloc::System;

use custodian_suite::reclaims::Nothing;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use tokio_custodian::{ResourceKind, Supervisor};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Net heap bytes allocated since `region` began.
fn net(region: &Region<'_, System>) -> i64 {
    let c = region.change();
    c.bytes_allocated as i64 - c.bytes_deallocated as i64
}

const N: usize = 100_000;
const SCOPES: usize = 10_000;

#[test]
fn bytes_per_live_entry_and_per_finished_scope() {
    // The allocator's counters are process-wide: one measuring test at a time.
    let _serial = custodian_suite::serial();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let sup = Supervisor::builder().start().unwrap();
        let root = sup.root();
        // Warm up the lazily built parts (tracing callsites, the first shard growth).
        for _ in 0..100 {
            drop(root.register(ResourceKind::Lock, "warm", None, Nothing).unwrap());
        }
        let mut held = Vec::with_capacity(N);

        // 1. N live entries in one scope: entry + map slot + the scope's id list.
        let region = Region::new(GLOBAL);
        for _ in 0..N {
            held.push(root.register(ResourceKind::Lock, "entry", None, Nothing).unwrap());
        }
        let first = net(&region) as f64 / N as f64;
        held.clear();
        let retained = net(&region);
        // 2. Again, now that the map and the list have their capacity.
        let region = Region::new(GLOBAL);
        for _ in 0..N {
            held.push(root.register(ResourceKind::Lock, "entry", None, Nothing).unwrap());
        }
        let refill = net(&region) as f64 / N as f64;
        held.clear();
        let after_refill = net(&region);

        // 3. Finished scopes, each with one resource released inside and one at its end.
        let scope_run = async |n: usize| {
            for _ in 0..n {
                sup.scope("request", async |s| {
                    drop(s.register(ResourceKind::Lock, "a", None, Nothing).unwrap());
                    let _end = s.register(ResourceKind::Lock, "b", None, Nothing).unwrap();
                })
                .await
                .unwrap();
            }
        };
        scope_run(100).await;
        let region = Region::new(GLOBAL);
        scope_run(SCOPES).await;
        let per_scope = net(&region) as f64 / SCOPES as f64;

        // 4. A real kind: live temp files (entry with its path, reclaim, guard, tokio File).
        let mut files = Vec::with_capacity(2_000);
        let region = Region::new(GLOBAL);
        for _ in 0..2_000 {
            files.push(sup.temp_file().await.unwrap());
        }
        let per_file = net(&region) as f64 / 2_000.0;
        drop(files);

        println!(
            "live temp file (guard included): {per_file:.0} B\nlive entry: {first:.1} B (first fill of {N}, map growth included), {refill:.1} B \
             (refill); retained after releasing all {N}: {retained} B (then {after_refill} B); \
             retained per finished scope: {per_scope:.2} B over {SCOPES} scopes"
        );
        assert!(first <= 256.0, "{first:.1} B per live entry");
        assert!(per_scope < 1.0, "{per_scope:.2} B retained per finished scope");
        let report = sup.shutdown().await;
        assert!(report.is_clean(), "{report}");
    });
}

/// What one `/ingest` of the example does, in a scope: spool, decode, a child.
async fn ingest_like(sup: &Supervisor, wav: &[u8]) {
    use tokio::io::AsyncWriteExt;
    sup.scope("ingest", async |s| {
        let mut t = s.temp().suffix(".wav").file().await.unwrap();
        t.write_all(wav).await.unwrap();
        t.flush().await.unwrap();
        let mut d = tokio_custodian_audio::AudioDecoder::open(&s, t.path())
            .await
            .unwrap();
        assert_eq!(d.read_all::<i16>().await.unwrap().len(), 4000);
        d.close().await.unwrap();
        let out = s
            .command("gzip")
            .arg("-c")
            .arg(t.path())
            .output()
            .await
            .unwrap();
        assert!(out.status.success());
        t.close().await.unwrap();
    })
    .await
    .unwrap();
}

/// Heap that custodian keeps after a burst of service-like requests, 32 at a time: what
/// the managed service's RSS could owe to custodian rather than to malloc's free lists.
#[test]
fn heap_retained_after_a_burst_of_requests() {
    let _serial = custodian_suite::serial();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let sup = Supervisor::builder().start().unwrap();
        let wav = std::sync::Arc::new(wav(4000));
        let burst = async |n: usize| {
            let tasks: Vec<_> = (0..32)
                .map(|_| {
                    let (sup, wav) = (sup.clone(), wav.clone());
                    tokio::spawn(async move {
                        for _ in 0..n {
                            ingest_like(&sup, &wav).await;
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
        };
        burst(2).await; // warm up: runtime, pool threads, the map's first capacity
        let settled =
            |sup: &Supervisor| sup.stats().live() == 0 && sup.pending_cleanups().is_empty();
        let (mut kept, mut allocs) = (Vec::new(), (0, 0));
        for _ in 0..3 {
            let region = Region::new(GLOBAL);
            burst(20).await;
            assert!(settled(&sup), "{}", sup.stats());
            kept.push(net(&region));
            let c = region.change();
            allocs = (c.allocations / 640, c.bytes_allocated / 640);
        }
        println!(
            "heap kept after each of 3 bursts of 640 service-like requests: {kept:?} B; \
             per request: {} allocations, {} B allocated",
            allocs.0, allocs.1
        );
        // The map and the lists may grow past the warm-up's peak once; nothing per request.
        assert!(kept.iter().all(|&k| k < 64 * 1024), "{kept:?} B kept");
        sup.shutdown().await;
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

/// Leak records (a guard forgotten, reclaimed at its scope's end) are kept for the
/// report, at most 1,024 of them: what a leaking service keeps is bounded.
#[test]
fn leak_records_are_bounded() {
    let _serial = custodian_suite::serial();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let sup = Supervisor::builder().start().unwrap();
        let leak = async |n: usize| {
            for _ in 0..n {
                sup.scope("leaky", async |s| {
                    std::mem::forget(s.register(ResourceKind::Lock, "forgotten", None, Nothing));
                })
                .await
                .unwrap();
            }
        };
        let region = Region::new(GLOBAL);
        leak(1024).await;
        let first = net(&region);
        let region = Region::new(GLOBAL);
        leak(4096).await;
        let more = net(&region);
        println!(
            "leak records: {first} B for the first 1,024 ({} B each), {more} B kept by 4,096 more",
            first / 1024
        );
        assert_eq!(sup.leaked().len(), 1024);
        assert!(more < 16 * 1024, "{more} B kept past the bound");
        sup.shutdown().await;
    });
}
