//! What quotas cost an acquisition: a temp file create + drop with no quota against the
//! same with generous quotas on every count it takes part in (live temp files, open
//! files, fds, temp bytes), on two supervisors in the same run.
//!
//! First an interleaved pass: every round runs both variants once, in alternating
//! order, so that the file system's state falls on both alike; it prints the median and
//! mean of each and their ratio (the goal: ≤ 1.05×). Then criterion's usual runs, each
//! iteration of one variant preceded by an untimed one of the other.
//!
//! `cargo bench -p tokio-custodian --bench quota` (tmpfs `/dev/shm` when it exists).

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::Criterion;
use tokio_custodian::{Quota, ResourceKind, Supervisor};

fn base() -> PathBuf {
    let shm = PathBuf::from("/dev/shm");
    if shm.is_dir() {
        shm
    } else {
        std::env::temp_dir()
    }
}

fn generous() -> [Quota; 4] {
    [
        Quota::live(ResourceKind::TempFile, 1 << 20),
        Quota::open_files(1 << 20),
        Quota::fds(1 << 20),
        Quota::temp_bytes(1 << 40),
    ]
}

async fn create_drop(sup: &Supervisor) {
    let f = sup.temp_file().await.unwrap();
    drop(black_box(f));
}

fn stats(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort_unstable();
    let mean = v.iter().sum::<Duration>() / v.len() as u32;
    (v[v.len() / 2], mean)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (off, on) = rt.block_on(async {
        let off = Supervisor::builder().temp_base(base()).start().unwrap();
        let on = generous()
            .into_iter()
            .fold(Supervisor::builder().temp_base(base()), |b, q| b.quota(q))
            .start()
            .unwrap();
        (off, on)
    });

    // The interleaved pass.
    let rounds = 20_000;
    let (mut t_off, mut t_on) = (Vec::with_capacity(rounds), Vec::with_capacity(rounds));
    rt.block_on(async {
        for _ in 0..2_000 {
            create_drop(&off).await;
            create_drop(&on).await;
        }
        for i in 0..rounds {
            let one = async |sup: &Supervisor, into: &mut Vec<Duration>| {
                let t = Instant::now();
                create_drop(sup).await;
                into.push(t.elapsed());
            };
            if i % 2 == 0 {
                one(&off, &mut t_off).await;
                one(&on, &mut t_on).await;
            } else {
                one(&on, &mut t_on).await;
                one(&off, &mut t_off).await;
            }
        }
    });
    let ((med_off, mean_off), (med_on, mean_on)) = (stats(t_off), stats(t_on));
    println!(
        "interleaved, {rounds} rounds: no quota median {med_off:?} mean {mean_off:?}; \
         4 generous quotas median {med_on:?} mean {mean_on:?}; \
         ratio median {:.3}x mean {:.3}x",
        med_on.as_secs_f64() / med_off.as_secs_f64(),
        mean_on.as_secs_f64() / mean_off.as_secs_f64()
    );

    let mut c = Criterion::default().configure_from_args();
    let (off_ref, on_ref) = (&off, &on);
    let mut g = c.benchmark_group("temp_file_create_drop/quota");
    g.bench_function("none", |b| {
        b.to_async(&rt).iter_custom(|n| async move {
            let mut total = Duration::ZERO;
            for _ in 0..n {
                create_drop(on_ref).await;
                let t = Instant::now();
                create_drop(off_ref).await;
                total += t.elapsed();
            }
            total
        })
    });
    g.bench_function("generous", |b| {
        b.to_async(&rt).iter_custom(|n| async move {
            let mut total = Duration::ZERO;
            for _ in 0..n {
                create_drop(off_ref).await;
                let t = Instant::now();
                create_drop(on_ref).await;
                total += t.elapsed();
            }
            total
        })
    });
    g.finish();
    c.final_summary();
    rt.block_on(async {
        assert!(off.shutdown().await.is_clean());
        assert!(on.shutdown().await.is_clean());
    });
}
