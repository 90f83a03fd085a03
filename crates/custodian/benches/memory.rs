//! Heap bytes per live registry entry, counted by a counting global allocator
//! (`stats_alloc`): the net bytes allocated while 100,000 resources are registered and
//! held, divided by 100,000. The guards' own `Vec` is allocated before counting starts,
//! so what is counted is what the registry keeps per entry (its `DashMap` slot with the
//! growth of the table amortised, the label, the boxed reclaim, the scope's LIFO slot).
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

fn net(region: &Region<'_, System>) -> f64 {
    let s = region.change();
    (s.bytes_allocated as f64 - s.bytes_deallocated as f64) + s.bytes_reallocated as f64
}

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
    for _ in 0..N {
        held.push(
            root.register(ResourceKind::Lock, "bench", None, Nothing)
                .unwrap(),
        );
    }
    let per_entry = net(&region) / N as f64;
    black_box(&held);
    println!(
        "registration (label \"bench\", no path, zero-sized reclaim): {per_entry:.0} B per live entry over {N}"
    );
    drop(held);

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
