//! Spawn + wait of `true` through `ManagedChild` against raw `tokio::process` in the
//! same run. Run: `cargo bench -p custodian --bench process`.
//!
//! The managed path adds: the process group, a pidfd (open, epoll registration), the
//! registry entry, waiting on the pidfd instead of SIGCHLD, the pre-reap group sweep,
//! and the release.

#![allow(missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};

fn spawn_wait(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let sup = rt.block_on(async { custodian::Supervisor::builder().start().unwrap() });
    let mut g = c.benchmark_group("spawn_wait_true");
    // Interleaved in one group, so both see the same machine state.
    g.bench_function("raw_tokio", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut child = tokio::process::Command::new("true").spawn().unwrap();
                assert!(child.wait().await.unwrap().success());
            })
        })
    });
    g.bench_function("managed", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut child = sup.command("true").spawn().unwrap();
                assert!(child.wait().await.unwrap().success());
            })
        })
    });
    g.bench_function("raw_tokio_process_group", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut child = tokio::process::Command::new("true")
                    .process_group(0)
                    .spawn()
                    .unwrap();
                assert!(child.wait().await.unwrap().success());
            })
        })
    });
    g.finish();
    rt.block_on(sup.shutdown());
}

criterion_group!(benches, spawn_wait);
criterion_main!(benches);
