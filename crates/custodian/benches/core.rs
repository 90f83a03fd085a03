//! Overhead of custodian's guards against the raw operation, measured in the same run.
//!
//! Each managed/raw pair is *interleaved*: every iteration of the managed benchmark also
//! runs one raw operation untimed, and vice versa, so both see the same file-system state
//! (ext4 without a journal slows creation down for a minute after mass deletes; see
//! docs/benchmarks.md). Temp files go to /dev/shm (tmpfs) when it exists, to measure
//! custodian's own cost rather than the disk's, and to `std::env::temp_dir()` in the
//! `tmp` variants.
//!
//! Run: `cargo bench -p tokio-custodian --bench core` (or every pair, with instruction counts:
//! `scripts/bench.sh`).

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use tokio_custodian::{Cleanup, Reclaim, ResourceKind, Supervisor};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn shm_or_tmp() -> PathBuf {
    let shm = PathBuf::from("/dev/shm");
    if shm.is_dir() {
        shm
    } else {
        std::env::temp_dir()
    }
}

/// Times `timed` and runs `other` untimed before it, `iters` times.
async fn interleaved<A, B, FA, FB>(iters: u64, mut timed: A, mut other: B) -> Duration
where
    A: FnMut() -> FA,
    B: FnMut() -> FB,
    FA: Future<Output = ()>,
    FB: Future<Output = ()>,
{
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        other().await;
        let t = Instant::now();
        timed().await;
        total += t.elapsed();
    }
    total
}

/// One group with the raw operation and the managed one, each interleaved with the other.
fn pair<A, B, FA, FB>(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    group: impl Into<String>,
    raw_name: &str,
    raw: A,
    managed: B,
) where
    A: FnMut() -> FA + Copy,
    B: FnMut() -> FB + Copy,
    FA: Future<Output = ()>,
    FB: Future<Output = ()>,
{
    let mut g = c.benchmark_group(group);
    g.bench_function(raw_name, |b| {
        b.to_async(rt).iter_custom(|n| interleaved(n, raw, managed))
    });
    g.bench_function("managed", |b| {
        b.to_async(rt).iter_custom(|n| interleaved(n, managed, raw))
    });
    g.finish();
}

fn temp_files(c: &mut Criterion, label: &str, base: PathBuf) {
    let rt = runtime();
    let sup = rt.block_on(async { Supervisor::builder().temp_base(&base).start().unwrap() });
    let raw_dir = rt.block_on(async { sup.temp_dir().await.unwrap() });
    let raw_path = raw_dir.path().to_path_buf();
    let managed = || async {
        let f = sup.temp_file().await.unwrap();
        drop(black_box(f));
    };
    let raw = || async {
        let f = async_tempfile::TempFile::new_in(raw_path.clone())
            .await
            .unwrap();
        drop(black_box(f));
    };
    pair(
        c,
        &rt,
        format!("temp_file_create_drop/{label}"),
        "raw_async_tempfile",
        raw,
        managed,
    );
    // The other common raw way: tempfile's blocking create on the blocking pool, and its
    // drop (one unlink) where it falls, like custodian's guard.
    let raw_blocking = || async {
        let d = raw_path.clone();
        let f = tokio::task::spawn_blocking(move || tempfile::NamedTempFile::new_in(d))
            .await
            .unwrap()
            .unwrap();
        drop(black_box(f));
    };
    pair(
        c,
        &rt,
        format!("temp_file_create_drop/{label}/vs_tempfile"),
        "raw_tempfile_spawn_blocking",
        raw_blocking,
        managed,
    );
    drop(raw_dir);
    rt.block_on(sup.shutdown());
}

fn temp_file_shm(c: &mut Criterion) {
    temp_files(c, "shm", shm_or_tmp());
}

fn temp_file_tmp(c: &mut Criterion) {
    temp_files(c, "tmp", std::env::temp_dir());
}

fn temp_dirs(c: &mut Criterion) {
    let rt = runtime();
    let base = shm_or_tmp();
    let sup = rt.block_on(async { Supervisor::builder().temp_base(&base).start().unwrap() });
    let raw_dir = rt.block_on(async { sup.temp_dir().await.unwrap() });
    let raw_path = raw_dir.path().to_path_buf();
    // A dir with 4 files, closed (removal awaited) so both sides do the same work.
    let managed = || async {
        let d = sup.temp_dir().await.unwrap();
        for i in 0..4 {
            std::fs::write(d.path().join(i.to_string()), b"x").unwrap();
        }
        d.close().await.unwrap();
    };
    let raw = || async {
        let d = async_tempfile::TempDir::new_in(raw_path.clone())
            .await
            .unwrap();
        for i in 0..4 {
            std::fs::write(d.dir_path().join(i.to_string()), b"x").unwrap();
        }
        d.drop_async().await;
    };
    pair(
        c,
        &rt,
        "temp_dir_4_files_create_remove/shm",
        "raw_async_tempfile",
        raw,
        managed,
    );
    drop(raw_dir);
    rt.block_on(sup.shutdown());
}

fn open_files(c: &mut Criterion) {
    let rt = runtime();
    let sup = rt.block_on(async { Supervisor::builder().start().unwrap() });
    let managed = || async {
        let f = sup.open("/dev/null").await.unwrap();
        drop(black_box(f));
    };
    let raw = || async {
        let f = tokio::fs::File::open("/dev/null").await.unwrap();
        drop(black_box(f));
    };
    pair(c, &rt, "file_open_drop", "raw_tokio", raw, managed);
    rt.block_on(sup.shutdown());
}

struct Nothing;

impl Reclaim for Nothing {
    fn reclaim(self: Box<Self>) -> Cleanup {
        Cleanup::Done(Ok(()))
    }
}

/// The bookkeeping alone: register + release of a resource whose reclaim does nothing,
/// on one thread and on two threads sharing one scope.
fn registration(c: &mut Criterion) {
    let rt = runtime();
    let sup = rt.block_on(async { Supervisor::builder().start().unwrap() });
    let root = sup.root();
    // Interleaved against the raw map operation a registry needs at least.
    let map = dashmap::DashMap::<u64, u64>::new();
    let next = std::sync::atomic::AtomicU64::new(0);
    let (map, next, root_ref) = (&map, &next, &root);
    let raw = || async move {
        let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        map.insert(k, k);
        black_box(map.remove(&k));
    };
    let managed = || async move {
        let r = root_ref
            .register(ResourceKind::Lock, "bench", None, Nothing)
            .unwrap();
        drop(black_box(r));
    };
    pair(
        c,
        &rt,
        "register_drop",
        "raw_dashmap_insert_remove",
        raw,
        managed,
    );
    let token = tokio_util::sync::CancellationToken::new();
    let token = &token;
    let sup_ref = &sup;
    let raw = || async move { drop(black_box(token.child_token())) };
    let managed = || async move {
        black_box(sup_ref.scope("bench", async |_s| 1).await.unwrap());
    };
    pair(c, &rt, "scope_enter_exit", "raw_child_token", raw, managed);
    let mut g = c.benchmark_group("registration");
    g.bench_function("register_drop_2_threads_one_scope", |b| {
        b.iter_custom(|n| {
            let t = Instant::now();
            std::thread::scope(|s| {
                for _ in 0..2 {
                    let root = root.clone();
                    s.spawn(move || {
                        for _ in 0..n {
                            let r = root
                                .register(ResourceKind::Lock, "bench", None, Nothing)
                                .unwrap();
                            drop(black_box(r));
                        }
                    });
                }
            });
            // Per operation: two threads did n each in the elapsed time.
            t.elapsed() / 2
        })
    });
    g.finish();
    rt.block_on(sup.shutdown());
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);
    targets = registration, open_files, temp_file_shm, temp_dirs, temp_file_tmp
}
criterion_main!(benches);
