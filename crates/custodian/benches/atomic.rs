//! `atomic_write` against the raw sequence (create a temp file in the target's directory,
//! write, fsync, rename, fsync the directory) and against atomic-write-file, at 4 KiB and
//! 4 MiB, durable.
//!
//! First an interleaved pass: every round runs each variant once, in a rotating order,
//! so that the disk's state (ext4's inode reuse, writeback) falls on all of them alike;
//! it prints the median and mean per variant, and the raw sequence's time per step
//! (where durability costs: the two fsyncs). Then criterion's usual per-variant runs.
//!
//! `cargo bench -p tokio-custodian --bench atomic` (set `CUSTODIAN_BENCH_DIR` to bench
//! another file system than the temp dir's).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion};

const SIZES: [(usize, &str, usize); 2] = [(4 << 10, "4KiB", 60), (4 << 20, "4MiB", 20)];

fn bench_dir() -> PathBuf {
    let base =
        std::env::var_os("CUSTODIAN_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    let dir = base.join(format!("custodian-bench-atomic-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The raw sequence; returns the time of each step: create and write, fsync, rename,
/// dir fsync.
fn raw(dir: &Path, target: &Path, bytes: &[u8]) -> [Duration; 4] {
    let t0 = Instant::now();
    let tmp = dir.join(".raw-tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .unwrap();
    f.write_all(bytes).unwrap();
    let t1 = Instant::now();
    f.sync_all().unwrap();
    let t2 = Instant::now();
    std::fs::rename(&tmp, target).unwrap();
    let t3 = Instant::now();
    std::fs::File::open(dir).unwrap().sync_all().unwrap();
    let t4 = Instant::now();
    [t1 - t0, t2 - t1, t3 - t2, t4 - t3]
}

fn awf(target: &Path, bytes: &[u8]) {
    let mut f = atomic_write_file::AtomicWriteFile::open(target).unwrap();
    f.write_all(bytes).unwrap();
    f.commit().unwrap();
}

struct Setup {
    rt: tokio::runtime::Runtime,
    sup: tokio_custodian::Supervisor,
    dir: PathBuf,
}

impl Setup {
    fn custodian(&self, target: &Path, bytes: &Arc<Vec<u8>>) {
        let bytes = ArcBytes(bytes.clone());
        self.rt
            .block_on(self.sup.atomic_write(target, bytes))
            .unwrap();
    }
}

/// A shared buffer handed to `atomic_write` without a copy.
struct ArcBytes(Arc<Vec<u8>>);

impl AsRef<[u8]> for ArcBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn interleaved(s: &Setup) {
    for (size, name, rounds) in SIZES {
        let bytes = Arc::new(vec![0x5au8; size]);
        let target = s.dir.join(format!("target-{name}"));
        let mut times: [Vec<Duration>; 3] = Default::default();
        let mut steps = [Duration::ZERO; 4];
        for round in 0..rounds {
            for k in 0..3 {
                let v = (round + k) % 3;
                let t = Instant::now();
                match v {
                    0 => s.custodian(&target, &bytes),
                    1 => {
                        let st = raw(&s.dir, &target, &bytes);
                        for (a, b) in steps.iter_mut().zip(st) {
                            *a += b;
                        }
                    }
                    _ => awf(&target, &bytes),
                }
                times[v].push(t.elapsed());
            }
        }
        let names = [
            "custodian atomic_write",
            "raw write+fsync+rename+fsync",
            "atomic-write-file",
        ];
        let raw_med = median(&mut times[1].clone());
        for (v, n) in names.iter().enumerate() {
            let mean = times[v].iter().sum::<Duration>() / rounds as u32;
            let med = median(&mut times[v]);
            println!(
                "{name} {n:<30} median {med:>10.3?}  mean {mean:>10.3?}  ({:.3}x raw median)",
                med.as_secs_f64() / raw_med.as_secs_f64()
            );
        }
        let total: Duration = steps.iter().sum();
        let label = ["create+write", "fsync file", "rename", "fsync dir"];
        let parts: Vec<String> = label
            .iter()
            .zip(steps)
            .map(|(l, d)| format!("{l} {:.0}%", 100.0 * d.as_secs_f64() / total.as_secs_f64()))
            .collect();
        println!("{name} raw steps: {}", parts.join(", "));
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let sup = rt
        .block_on(async { tokio_custodian::Supervisor::builder().start() })
        .unwrap();
    let s = Setup {
        rt,
        sup,
        dir: bench_dir(),
    };
    interleaved(&s);
    let mut c = Criterion::default()
        .sample_size(10)
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(300))
        .configure_from_args();
    let mut g = c.benchmark_group("atomic_write");
    for (size, name, _) in SIZES {
        let bytes = Arc::new(vec![0x5au8; size]);
        let target = s.dir.join(format!("c-{name}"));
        g.bench_with_input(BenchmarkId::new("custodian", name), &bytes, |b, bytes| {
            b.iter(|| s.custodian(&target, bytes));
        });
        g.bench_with_input(BenchmarkId::new("raw", name), &bytes, |b, bytes| {
            b.iter(|| raw(&s.dir, &target, bytes));
        });
        g.bench_with_input(
            BenchmarkId::new("atomic-write-file", name),
            &bytes,
            |b, bytes| {
                b.iter(|| awf(&target, bytes));
            },
        );
    }
    g.finish();
    c.final_summary();
    let Setup { rt, sup, dir } = s;
    rt.block_on(sup.shutdown());
    std::fs::remove_dir_all(dir).unwrap();
}
