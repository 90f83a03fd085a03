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

/// Times `timed` and runs `other` untimed before it, `n` times.
async fn interleaved<A, B, FA, FB>(n: u64, timed: A, other: B) -> Duration
where
    A: Fn() -> FA,
    B: Fn() -> FB,
    FA: Future<Output = ()>,
    FB: Future<Output = ()>,
{
    let mut total = Duration::ZERO;
    for _ in 0..n {
        other().await;
        let t = Instant::now();
        timed().await;
        total += t.elapsed();
    }
    total
}

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
        b.iter_custom(|n| rt.block_on(interleaved(n, raw, managed)))
    });
    g.bench_function("raw_tokio_process_group", |b| {
        b.iter_custom(|n| rt.block_on(interleaved(n, raw_group, managed)))
    });
    g.bench_function("managed", |b| {
        b.iter_custom(|n| rt.block_on(interleaved(n, managed, raw)))
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
