//! Spawn + wait of `true` through `ManagedChild` against raw `tokio::process` in the
//! same run. Run: `cargo bench -p tokio-custodian --bench process`.
//!
//! The managed path adds: the process group, a pidfd (open, epoll registration), the
//! registry entry, waiting on the pidfd instead of SIGCHLD, the pre-reap group sweep,
//! and the release. Each managed iteration also runs one raw spawn untimed, and vice
//! versa, so both sides see the same machine state (this VM is shared and noisy).
//!
//! `spawn_wait_true_journal` compares the managed path with and without a crash journal
//! (`Builder::state_dir`: one `write` of a child record at spawn, one at reap), the two
//! interleaved the same way; `sweep_1000_dead_records` times `tokio_custodian::sweep` of a
//! journal whose dead owner recorded 1,000 children that no longer run.

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
    let sup = rt.block_on(async { tokio_custodian::Supervisor::builder().start().unwrap() });
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

fn spawn_wait_journal(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let state = std::env::temp_dir().join(format!("custodian-bench-state-{}", std::process::id()));
    let (off, on) = rt.block_on(async {
        let off = tokio_custodian::Supervisor::builder().start().unwrap();
        let on = tokio_custodian::Supervisor::builder()
            .state_dir(&state)
            .start()
            .unwrap();
        (off, on)
    });
    let run = |sup: &tokio_custodian::Supervisor| {
        let sup = sup.clone();
        async move {
            let mut child = sup.command("true").spawn().unwrap();
            assert!(child.wait().await.unwrap().success());
        }
    };
    let mut g = c.benchmark_group("spawn_wait_true_journal");
    g.bench_function("journal_off", |b| {
        b.iter_custom(|n| rt.block_on(interleaved(n, || run(&off), || run(&on))))
    });
    g.bench_function("journal_on", |b| {
        b.iter_custom(|n| rt.block_on(interleaved(n, || run(&on), || run(&off))))
    });
    g.finish();
    rt.block_on(async {
        off.shutdown().await;
        on.shutdown().await;
    });
    drop((off, on));
    let _ = std::fs::remove_dir_all(&state);
}

/// A journal frame, as `custodian` writes it (see `docs/crash-recovery.md`).
fn frame(payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() as u32).to_le_bytes();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in len.iter().chain(payload) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let mut f = b"cjr1".to_vec();
    f.extend(len);
    f.extend(payload);
    f.extend(h.to_le_bytes());
    f
}

fn sweep_dead_records(c: &mut Criterion) {
    use std::os::unix::fs::PermissionsExt;
    let state = std::env::temp_dir().join(format!("custodian-bench-sweep-{}", std::process::id()));
    std::fs::create_dir_all(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    // A dead owner: this process's pid with another start time.
    let mut owner = vec![1];
    owner.extend(std::process::id().to_le_bytes());
    owner.extend(1u64.to_le_bytes());
    owner.extend(boot.trim().as_bytes());
    let mut journal = frame(&owner);
    for i in 0..1000u32 {
        // Pids above the default `pid_max` (32768 here): never running.
        let pid = 3_000_000 + i;
        let mut child = vec![3];
        child.extend(pid.to_le_bytes());
        child.extend(1u64.to_le_bytes());
        child.extend(pid.to_le_bytes());
        journal.extend(frame(&child));
    }
    let path = state.join(format!("{}-1-0123456789abcdef.journal", std::process::id()));
    c.bench_function("sweep_1000_dead_records", |b| {
        b.iter_custom(|n| {
            let mut total = Duration::ZERO;
            for _ in 0..n {
                std::fs::write(&path, &journal).unwrap();
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
                let t = Instant::now();
                let report =
                    tokio_custodian::recover(tokio_custodian::Recovery::new().state_dir(&state))
                        .unwrap()
                        .journals
                        .unwrap();
                total += t.elapsed();
                assert_eq!(report.dead_owners.len(), 1);
                assert!(report.stopped.is_empty());
            }
            total
        })
    });
    let _ = std::fs::remove_dir_all(&state);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(4))
        .sample_size(30);
    targets = spawn_wait, spawn_wait_journal, sweep_dead_records
}
criterion_main!(benches);
