//! Spawn + wait of `true` through `ManagedChild` against raw `tokio::process` in the
//! same run. Run: `cargo bench -p custodian --bench process`.
//!
//! The managed path adds: the process group, a pidfd (open, epoll registration), the
//! registry entry, waiting on the pidfd instead of SIGCHLD, the pre-reap group sweep,
//! and the release. Each managed iteration also runs one raw spawn untimed, and vice
//! versa, so both sides see the same machine state (this VM is shared and noisy).

#![allow(missing_docs)]

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};

fn spawn_wait(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let sup = rt.block_on(async { custodian::Supervisor::builder().start().unwrap() });
    let raw = || async {
        let mut child = tokio::process::Command::new("true").spawn().unwrap();
        assert!(child.wait().await.unwrap().success());
    };
    let raw_group = || async {
        let mut child = tokio::process::Command::new("true")
            .process_group(0)
            .spawn()
            .unwrap();
        assert!(child.wait().await.unwrap().success());
    };
    let managed = || async {
        let mut child = sup.command("true").spawn().unwrap();
        assert!(child.wait().await.unwrap().success());
    };
    let mut g = c.benchmark_group("spawn_wait_true");
    g.bench_function("raw_tokio", |b| {
        b.iter_custom(|n| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..n {
                    managed().await;
                    let t = Instant::now();
                    raw().await;
                    total += t.elapsed();
                }
                total
            })
        })
    });
    g.bench_function("raw_tokio_process_group", |b| {
        b.iter_custom(|n| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..n {
                    managed().await;
                    let t = Instant::now();
                    raw_group().await;
                    total += t.elapsed();
                }
                total
            })
        })
    });
    g.bench_function("managed", |b| {
        b.iter_custom(|n| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..n {
                    raw().await;
                    let t = Instant::now();
                    managed().await;
                    total += t.elapsed();
                }
                total
            })
        })
    });
    g.finish();
    rt.block_on(sup.shutdown());
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(4))
        .sample_size(30);
    targets = spawn_wait
}
criterion_main!(benches);
