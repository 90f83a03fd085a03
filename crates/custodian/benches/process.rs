//! Spawn + wait of `true` through `ManagedChild` against raw `tokio::process` in the
//! same run. Run: `cargo bench -p tokio-custodian --bench process`.
//!
//! The managed path adds: the process group, a pidfd (open, epoll registration), the
//! registry entry, waiting on the pidfd instead of SIGCHLD, the pre-reap group sweep,
//! and the release. Each managed iteration also runs one raw spawn untimed, and vice
//! versa, so both sides see the same machine state (this VM is shared and noisy).
//!
//! `spawn_wait_true_journal` compares the managed path with and without a crash journal
//! (`Builder::state_dir`: one `write` of a child record at spawn, one at reap) in
//! interleaved rounds of its own, long enough that the journal is compacted twice, with
//! the journal on tmpfs, in the temp dir and in `$CUSTODIAN_BENCH_EXT4` if set (each line
//! names the file system); `sweep_1000_dead_records` times
//! `tokio_custodian::sweep` of a journal whose dead owner recorded 1,000 children that no
//! longer run.

#![allow(missing_docs)]

use std::path::{Path, PathBuf};
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
    // Fixed here, whatever the command line asks (`scripts/bench.sh --quick` asks for
    // 1 s): a spawn takes about 1.5 ms, and one timed spawn comes with one untimed, so
    // 1 s made about 300 per side; 4 s make over 1,000.
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(4));
    g.sample_size(20);
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

/// The journal pair's state directories: tmpfs (`/dev/shm`), the temp dir, and
/// `$CUSTODIAN_BENCH_EXT4` if set (say, a loop-mounted ext4 image with its journal, where
/// the temp dir is ext4 without one, as on the project's VMs). Each line of output names
/// the file system.
fn state_dirs() -> Vec<(&'static str, PathBuf)> {
    let mut dirs = Vec::new();
    let shm = PathBuf::from("/dev/shm");
    if shm.is_dir() {
        dirs.push(("tmpfs", shm));
    }
    dirs.push(("temp_dir", std::env::temp_dir()));
    if let Some(d) = std::env::var_os("CUSTODIAN_BENCH_EXT4") {
        dirs.push(("ext4", d.into()));
    }
    dirs
}

/// The type of the file system `path` is on (the longest mount point above it in
/// `/proc/self/mounts`).
fn fs_type(path: &Path) -> String {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split(' ');
            let (_, at, ty) = (f.next()?, f.next()?, f.next()?);
            path.starts_with(at).then(|| (at.len(), ty.to_owned()))
        })
        .max()
        .map_or_else(|| "?".into(), |(_, ty)| ty)
}

/// Spawns per side in the journal pair: each spawn writes two records, so this reaches
/// the compaction threshold (4,096 records) twice per side.
const JOURNAL_SPAWNS: usize = 4_096;
const JOURNAL_ROUNDS: usize = 8;
/// Spawns between two looks at the journal's size (untimed).
const JOURNAL_STEP: usize = 64;

/// Spawn + wait of `true` with a crash journal on and off, in interleaved rounds (not
/// criterion: its time-boxed runs would reach the journal's compaction or not by chance),
/// on tmpfs and on ext4. Prints per file system the median per-round ratio on/off with
/// its spread, and how often the journal was compacted during the run.
fn spawn_wait_journal(_: &mut Criterion) {
    if !wanted("spawn_wait_true_journal") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for (label, base) in state_dirs() {
        let state = base.join(format!("custodian-bench-state-{}", std::process::id()));
        let (off, on) = rt.block_on(async {
            let off = tokio_custodian::Supervisor::builder().start().unwrap();
            let on = tokio_custodian::Supervisor::builder()
                .state_dir(&state)
                .start()
                .unwrap();
            (off, on)
        });
        let journal = std::fs::read_dir(&state)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|x| x == "journal"))
            .expect("the journal file");
        let size = || std::fs::metadata(&journal).map_or(0, |m| m.len());
        let (mut last, mut compactions) = (size(), 0);
        let batch = JOURNAL_SPAWNS / JOURNAL_ROUNDS;
        let mut ratios = Vec::new();
        let (mut t_on, mut t_off) = (Vec::new(), Vec::new());
        // One untimed batch of each side first: pool threads, page cache.
        for sup in [&off, &on] {
            rt.block_on(spawn_n(sup, JOURNAL_STEP));
        }
        for r in 0..JOURNAL_ROUNDS {
            let mut on_time = Duration::ZERO;
            let mut off_time = Duration::ZERO;
            let run_off = |t: &mut Duration| *t += rt.block_on(spawn_n(&off, batch));
            if r % 2 == 1 {
                run_off(&mut off_time);
            }
            for _ in 0..batch / JOURNAL_STEP {
                on_time += rt.block_on(spawn_n(&on, JOURNAL_STEP));
                let now = size();
                if now < last {
                    compactions += 1;
                }
                last = now;
            }
            if r % 2 == 0 {
                run_off(&mut off_time);
            }
            ratios.push(on_time.as_secs_f64() / off_time.as_secs_f64());
            t_on.push(on_time.as_secs_f64() / batch as f64);
            t_off.push(off_time.as_secs_f64() / batch as f64);
        }
        let med = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let (m_on, m_off) = (med(&mut t_on), med(&mut t_off));
        let m = med(&mut ratios);
        println!(
            "spawn_wait_true_journal/{label} ({}, {}): journal_on {:.0} µs / journal_off {:.0} µs = {m:.3}× \
             (p25–p75 {:.3}–{:.3}, min–max {:.3}–{:.3}) [{JOURNAL_ROUNDS} rounds of {batch}; \
             journal compacted {compactions}×, {} bytes at the end]",
            fs_type(&state),
            state.display(),
            m_on * 1e6,
            m_off * 1e6,
            ratios[ratios.len() / 4],
            ratios[3 * ratios.len() / 4],
            ratios[0],
            ratios[ratios.len() - 1],
            size(),
        );
        assert!(compactions > 0, "the journal was never compacted");
        rt.block_on(async {
            off.shutdown().await;
            on.shutdown().await;
        });
        drop((off, on));
        let _ = std::fs::remove_dir_all(&state);
    }
}

/// Whether criterion's command line (`cargo bench ... -- [FILTER]`) selects `name`: no
/// filter, or one that `name` contains. An argument after a flag that takes a value is
/// that value, not a filter.
fn wanted(name: &str) -> bool {
    const BOOL_FLAGS: &[&str] = &[
        "--bench",
        "--test",
        "--list",
        "--quick",
        "--noplot",
        "--verbose",
        "--quiet",
        "--exact",
        "--ignored",
        "--discard-baseline",
        "--nocapture",
    ];
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut filters = args.iter().enumerate().filter(|(i, a)| {
        !a.starts_with('-')
            && (*i == 0 || !args[i - 1].starts_with("--") || BOOL_FLAGS.contains(&&*args[i - 1]))
    });
    let mut any = false;
    let hit = filters.any(|(_, f)| {
        any = true;
        name.contains(f.as_str())
    });
    hit || !any
}

/// `n` spawns + waits of `true`; the time they took.
async fn spawn_n(sup: &tokio_custodian::Supervisor, n: usize) -> Duration {
    let t = Instant::now();
    for _ in 0..n {
        let mut child = sup.command("true").spawn().unwrap();
        assert!(child.wait().await.unwrap().success());
    }
    t.elapsed()
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
