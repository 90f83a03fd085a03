//! Heap bytes per live registry entry, counted by a counting global allocator
//! (`stats_alloc`): the net bytes allocated while 100,000 resources are registered and
//! held, divided by their number, read at every size on the way (the worst is just
//! after a table's resize); then what the registry keeps once the burst is released. The guards' own `Vec` is allocated before counting starts,
//! so what is counted is what the registry keeps per entry (its `DashMap` slot with the
//! growth of the table amortised, the label, the boxed reclaim).
//!
//! Run: `cargo bench -p tokio-custodian --bench memory`.

#![allow(missing_docs)]

use std::alloc::System;
use std::hint::black_box;

use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use tokio_custodian::{Cleanup, Reclaim, ResourceKind, Supervisor};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const N: usize = 100_000;
const FILES: usize = 10_000;

struct Nothing;

impl Reclaim for Nothing {
    fn reclaim(self: Box<Self>) -> Cleanup {
        Cleanup::Done(Ok(()))
    }
}

/// Net heap bytes since `region` began. `stats_alloc` adds a realloc's growth to
/// `bytes_allocated` (and a shrink to `bytes_deallocated`) already: its
/// `bytes_reallocated` is the same change again, so it is not added (adding it counted
/// a table's growth twice: 174 B per entry printed where 164 B were kept).
fn net(region: &Region<'_, System>) -> f64 {
    let s = region.change();
    s.bytes_allocated as f64 - s.bytes_deallocated as f64
}

/// Live entries kept after the burst (and the smallest size read).
const KEPT: usize = 1_000;
/// The bytes per live entry are read at every `STEP` entries while the registry grows,
/// so that the sizes just after each table resize (the worst) are among them.
const STEP: usize = 250;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let base = if std::path::Path::new("/dev/shm").is_dir() {
        std::path::PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let sup = rt.block_on(async { Supervisor::builder().temp_base(&base).start().unwrap() });
    let root = sup.root();
    // Warm-up: lazy statics, tracing's callsite registration, the first shard tables.
    drop(root.register(ResourceKind::Lock, "bench", None, Nothing));

    let mut held = Vec::with_capacity(N);
    let region = Region::new(GLOBAL);
    let (mut worst, mut best) = ((0.0f64, 0usize), (f64::MAX, 0usize));
    for i in 1..=N {
        held.push(
            root.register(ResourceKind::Lock, "bench", None, Nothing)
                .unwrap(),
        );
        if i % STEP == 0 && i >= KEPT {
            let per = net(&region) / i as f64;
            if per > worst.0 {
                worst = (per, i);
            }
            if per < best.0 {
                best = (per, i);
            }
        }
    }
    let per_entry = net(&region) / N as f64;
    black_box(&held);
    println!(
        "registration (label \"bench\", no path, zero-sized reclaim): {per_entry:.0} B per live entry over {N}"
    );
    println!(
        "  read every {STEP} entries from {KEPT} to {N}: max {:.0} B (at {}), min {:.0} B (at {})",
        worst.0, worst.1, best.0, best.1
    );
    // The burst released down to `KEPT` live entries: what the registry keeps then,
    // against what `KEPT` entries take when registered alone (a fresh supervisor).
    held.truncate(KEPT);
    let after_burst = net(&region);
    drop(held);
    let fresh = rt.block_on(async { Supervisor::builder().temp_base(&base).start().unwrap() });
    let froot = fresh.root();
    drop(froot.register(ResourceKind::Lock, "bench", None, Nothing));
    let mut few = Vec::with_capacity(KEPT);
    let r = Region::new(GLOBAL);
    for _ in 0..KEPT {
        few.push(
            froot
                .register(ResourceKind::Lock, "bench", None, Nothing)
                .unwrap(),
        );
    }
    let need = net(&r);
    drop(few);
    rt.block_on(fresh.shutdown());
    println!(
        "  burst of {N} released down to {KEPT} live: {:.0} kB kept, {:.2}× the {:.0} kB {KEPT} take alone",
        after_burst / 1e3,
        after_burst / need,
        need / 1e3,
    );

    // The same count for a raw `DashMap<u64, u64>`, the floor of any map-based registry.
    let map = dashmap::DashMap::<u64, u64>::new();
    let region = Region::new(GLOBAL);
    for k in 0..N as u64 {
        map.insert(k, k);
    }
    println!(
        "raw DashMap<u64, u64>: {:.0} B per entry over {N}",
        net(&region) / N as f64
    );
    drop(map);

    // A temp file: its entry (with the path and the reclaim data) and its guard's heap
    // parts (the guard itself sits in the pre-allocated Vec).
    let mut files = Vec::with_capacity(FILES);
    let region = Region::new(GLOBAL);
    rt.block_on(async {
        for _ in 0..FILES {
            files.push(sup.temp_file().await.unwrap());
        }
    });
    println!(
        "temp file (entry + guard, heap only): {:.0} B per live file over {FILES}",
        net(&region) / FILES as f64
    );
    drop(files);
    rt.block_on(sup.shutdown());
}
