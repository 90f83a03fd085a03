//! Heap bytes per live registry entry and per finished scope (issue 13), counted by a
//! counting global allocator (`stats_alloc`) — requested bytes, not RSS: malloc's own
//! rounding and the allocator's free lists are not custodian's. Goal: at most 256 B per
//! live entry, nothing retained per finished scope. The numbers are printed
//! (`cargo test -p custodian-suite --test memory_footprint -- --nocapture`) and recorded in
//! docs/benchmarks.md.

use std::alloc::System;

use custodian::{Cleanup, Reclaim, ResourceKind, Supervisor};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// A resource that owns nothing: what is counted is custodian's bookkeeping alone.
struct Nothing;

impl Reclaim for Nothing {
    fn reclaim(self: Box<Self>) -> Cleanup {
        Cleanup::Done(Ok(()))
    }
}

/// Net heap bytes allocated since `region` began.
fn net(region: &Region<'_, System>) -> i64 {
    let c = region.change();
    c.bytes_allocated as i64 - c.bytes_deallocated as i64
}

const N: usize = 100_000;
const SCOPES: usize = 10_000;

#[test]
fn bytes_per_live_entry_and_per_finished_scope() {
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
