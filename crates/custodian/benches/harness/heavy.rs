//! The pairs of `pairs.rs` whose operation needs a setup of its own per batch (shutdown,
//! mass release, a stubborn child, a journal sweep) or a long-lived background load
//! (leak scanning). In `count` mode with `N` = 0 a one-shot side does its setup and
//! exits the process at once, and with `N` = 1 it exits right after the operation
//! (`exit_if_counting`), so the measured operation is the only difference.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncBufReadExt;
use tokio_custodian::{ResourceKind, Supervisor};

use super::harness::{Batch, Pair, Unit, exit_if_counting};
use super::{Nothing, base, one_shot, raw_dir};

const FILES: usize = 10_000;
const CHILDREN: usize = 200;
/// The grace of the SIGTERM-ignoring child.
pub(crate) const GRACE: Duration = Duration::from_millis(100);

fn batch<F, Fut>(f: F) -> Batch
where
    F: Fn(u64) -> Fut + 'static,
    Fut: Future<Output = Duration> + 'static,
{
    Box::new(move |n| Box::pin(f(n)))
}

/// Exits at once in `count` mode with `N` = 0: the setup is done, the operation is not.
fn setup_only(n: u64) {
    if n == 0 {
        std::process::exit(0);
    }
}

/// Shutdown of a supervisor holding 10k live temp files, then the drop of their 10k
/// guards (the program's own end: both are the managed way's cost of closing the files),
/// against closing and unlinking 10k open files in one blocking-pool batch.
pub(crate) fn shutdown_10k(name: &'static str) -> Pair {
    let managed = batch(|n| async move {
        let sup = Supervisor::builder().temp_base(base()).start().unwrap();
        sup.reaped_at_start().await;
        let mut guards = Vec::with_capacity(FILES);
        for _ in 0..FILES {
            guards.push(sup.temp_file().await.unwrap());
        }
        setup_only(n);
        let t = Instant::now();
        let report = sup.shutdown().await;
        drop(black_box(guards));
        let d = t.elapsed();
        exit_if_counting();
        assert_eq!(
            report.released_by_path().values().sum::<u64>(),
            FILES as u64
        );
        d
    });
    let raw = batch(|n| async move {
        let dir = raw_dir("unlink");
        let files: Vec<_> = (0..FILES)
            .map(|i| {
                let p = dir.join(format!("f{i}"));
                (std::fs::File::create_new(&p).unwrap(), p)
            })
            .collect();
        setup_only(n);
        let t = Instant::now();
        tokio::task::spawn_blocking(move || {
            for (f, p) in files {
                drop(f);
                std::fs::remove_file(p).unwrap();
            }
        })
        .await
        .unwrap();
        let d = t.elapsed();
        exit_if_counting();
        std::fs::remove_dir(dir).unwrap();
        d
    });
    // The same on as many blocking-pool threads as the managed side's shutdown splits
    // its temp files over (the machine's, at most 4), each closing and unlinking a
    // contiguous share: the fair floor for a release that runs in parallel.
    let raw_par = batch(|n| async move {
        let dir = raw_dir("unlink-par");
        let mut files: Vec<_> = (0..FILES)
            .map(|i| {
                let p = dir.join(format!("f{i}"));
                (std::fs::File::create_new(&p).unwrap(), p)
            })
            .collect();
        setup_only(n);
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
        let size = FILES.div_ceil(threads);
        let t = Instant::now();
        let mut jobs = Vec::with_capacity(threads);
        while !files.is_empty() {
            let share = files.split_off(files.len().saturating_sub(size));
            jobs.push(tokio::task::spawn_blocking(move || {
                for (f, p) in share {
                    drop(f);
                    std::fs::remove_file(p).unwrap();
                }
            }));
        }
        for j in jobs {
            j.await.unwrap();
        }
        let d = t.elapsed();
        exit_if_counting();
        std::fs::remove_dir(dir).unwrap();
        d
    });
    one_shot(
        name,
        vec![
            ("managed", managed),
            ("raw_unlink", raw),
            ("raw_unlink_parallel", raw_par),
        ],
    )
}

/// 200 `sleep` children released by their scope's end (SIGTERM to each group, reap),
/// against SIGKILL to 200 raw `tokio::process` children (own groups) and reaping them.
pub(crate) fn children_200(name: &'static str) -> Pair {
    let managed = batch(|n| async move {
        let sup = Supervisor::builder().temp_base(base()).start().unwrap();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
        let scope = sup.scope("children", async |s| {
            let mut v = Vec::with_capacity(CHILDREN);
            for _ in 0..CHILDREN {
                v.push(s.command("sleep").arg("60").spawn().unwrap());
            }
            ready_tx.send(()).unwrap();
            go_rx.await.unwrap();
            // Returned, so that the scope's end (not the guards' drop) releases them.
            v
        });
        let go = async {
            ready_rx.await.unwrap();
            setup_only(n);
            go_tx.send(()).unwrap();
            Instant::now()
        };
        let (escaped, t) = tokio::join!(scope, go);
        let d = t.elapsed();
        exit_if_counting();
        assert!(escaped.unwrap().iter().all(|c| !c.registration().is_live()));
        sup.shutdown().await;
        d
    });
    let raw = batch(|n| async move {
        let mut v: Vec<_> = (0..CHILDREN)
            .map(|_| {
                tokio::process::Command::new("sleep")
                    .arg("60")
                    .process_group(0)
                    .spawn()
                    .unwrap()
            })
            .collect();
        setup_only(n);
        let t = Instant::now();
        for c in &mut v {
            c.start_kill().unwrap();
        }
        // All were signalled first: these waits overlap, the children die together.
        for c in &mut v {
            black_box(c.wait().await.unwrap());
        }
        let d = t.elapsed();
        exit_if_counting();
        d
    });
    one_shot(name, vec![("managed", managed), ("raw_kill_reap", raw)])
}

/// Release of a child that ignores SIGTERM (SIG_IGN survives `exec`), with a 100 ms
/// grace: the time from `close()` to its return, to compare with the grace.
pub(crate) fn sigterm_grace(sup: Supervisor) -> Pair {
    let side = batch(move |n| {
        let sup = sup.clone();
        async move {
            let mut c = sup
                .command("sh")
                .args(["-c", "trap '' TERM; echo ready; exec sleep 60"])
                .stdout(std::process::Stdio::piped())
                .grace(GRACE)
                .spawn()
                .unwrap();
            let mut out = tokio::io::BufReader::new(c.take_stdout().unwrap());
            let mut line = String::new();
            out.read_line(&mut line).await.unwrap();
            assert_eq!(line, "ready\n");
            setup_only(n);
            let t = Instant::now();
            let _ = c.close().await;
            t.elapsed()
        }
    });
    one_shot("sigterm_grace", vec![("close_with_100ms_grace", side)])
}

/// The crash journal's sweep of a dead owner's 1,000 child records (none running).
pub(crate) fn sweep_1000() -> Pair {
    use std::os::unix::fs::PermissionsExt;
    let state = raw_dir("sweep");
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    // A dead owner: this process's pid with another start time.
    let mut owner = vec![1];
    owner.extend(std::process::id().to_le_bytes());
    owner.extend(1u64.to_le_bytes());
    owner.extend(boot.trim().as_bytes());
    let mut journal = frame(&owner);
    for i in 0..1000u32 {
        // Pids above any `pid_max` default: never running.
        let pid = 3_000_000 + i;
        let mut child = vec![3];
        child.extend(pid.to_le_bytes());
        child.extend(1u64.to_le_bytes());
        child.extend(pid.to_le_bytes());
        journal.extend(frame(&child));
    }
    let path = state.join(format!("{}-1-0123456789abcdef.journal", std::process::id()));
    let journal = Arc::new(journal);
    let side = batch(move |n| {
        let (state, path, journal) = (state.clone(), path.clone(), journal.clone());
        async move {
            std::fs::write(&path, &*journal).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            setup_only(n);
            let t = Instant::now();
            let report =
                tokio_custodian::recover(tokio_custodian::Recovery::new().state_dir(&state))
                    .unwrap()
                    .journals
                    .unwrap();
            let d = t.elapsed();
            exit_if_counting();
            assert_eq!(report.dead_owners.len(), 1);
            d
        }
    });
    one_shot("sweep_1000", vec![("sweep", side)])
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

/// Registration + drop with leak tracking on (every kind past 60 s is a leak, scanned
/// every 10 ms, 1,000 other live entries to scan) against off (the default: no scan).
/// Creation sites are always recorded (one `&'static Location` per entry): no switch.
pub(crate) fn leak_scan(rt: &tokio::runtime::Runtime, name: &'static str) -> Pair {
    let mut sides = Vec::new();
    for (side, on) in [("scan_on", true), ("scan_off", false)] {
        let sup = rt.block_on(async {
            let mut b = Supervisor::builder().temp_base(base());
            if on {
                b = b
                    .leak_after_all(Duration::from_secs(60))
                    .leak_scan_interval(Duration::from_millis(10));
            }
            b.start().unwrap()
        });
        let root = sup.root();
        let held: Vec<_> = (0..1000)
            .map(|_| {
                root.register(ResourceKind::Lock, "held", None, Nothing)
                    .unwrap()
            })
            .collect();
        let state = Arc::new((root, held));
        sides.push((
            side,
            per_op!(state, |s| drop(black_box(
                s.0.register(ResourceKind::Lock, "bench", None, Nothing)
                    .unwrap()
            ))),
        ));
    }
    Pair {
        name,
        batch: 20_000,
        warm: 5_001,
        sides,
        unit: Unit::Ns,
    }
}
