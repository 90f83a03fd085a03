//! Review of the parallel shutdown (issue 22): the runtime dropped while a shutdown
//! releases its leftovers in chunks (the shutdown task dropped, chunks queued on the
//! blocking pool cancelled unrun, a running one finishing): no temp file, root or fd is
//! left once the supervisor's last handle goes (its emergency clean-up takes what the
//! interrupted shutdown did not release).

use std::time::Duration;

use custodian_suite::{entries, open_fds, scratch_dir, serial};
use tokio_custodian::Supervisor;

const FILES: usize = 600;

#[test]
fn a_runtime_dropped_mid_shutdown_leaves_no_file_root_or_fd() {
    let _serial = serial();
    // Tokio's signal driver keeps a process-wide socket pair from the first runtime on,
    // and the first supervisor starts process-wide helpers: one full cycle first.
    let warm = scratch_dir("rv-shut3-rtdrop-warm");
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let sup = Supervisor::builder().temp_base(&warm).start().unwrap();
            drop(sup.temp_file().await.unwrap());
            sup.shutdown().await;
        });
    std::fs::remove_dir(&warm).unwrap();
    let mut interrupted = 0;
    for step in 0..10u64 {
        let base = scratch_dir("rv-shut3-rtdrop");
        let fds = open_fds();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (sup, files) = rt.block_on(async {
            let sup = Supervisor::builder().temp_base(&base).start().unwrap();
            let mut files = Vec::new();
            for _ in 0..FILES {
                files.push(sup.temp_file().await.unwrap());
            }
            (sup, files)
        });
        let s = sup.clone();
        let task = rt.spawn(async move { s.shutdown().await });
        std::thread::sleep(Duration::from_micros(step * 3_000));
        let finished = task.is_finished();
        drop(rt);
        drop(task);
        if !finished {
            interrupted += 1;
        }
        drop(files);
        drop(sup);
        let left = entries(&base);
        assert!(left.is_empty(), "step {step}: left {left:?}");
        let start = std::time::Instant::now();
        while open_fds() > fds && start.elapsed() < Duration::from_millis(200) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let links: Vec<_> = std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.unwrap().path()).ok())
            .collect();
        assert!(
            open_fds() <= fds,
            "step {step}: fds {} > {fds}: {links:?}",
            open_fds()
        );
        std::fs::remove_dir(&base).unwrap();
    }
    // At least the first, whose runtime went at once.
    assert!(interrupted > 0);
}

/// Deterministic: the pool's only thread busy, the older chunk waits in its queue while
/// the shutdown task has released the newer one; then the runtime goes. The queued chunk
/// is run by the freed thread or cancelled unrun; either way nothing is left once the
/// supervisor's last handle goes.
#[test]
fn a_runtime_dropped_while_a_chunk_waits_for_the_pool_leaves_nothing() {
    let _serial = serial();
    let base = scratch_dir("rv-shut3-rtdrop-queued");
    drop(
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
    );
    let fds = open_fds();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (sup, files) = rt.block_on(async {
        let sup = Supervisor::builder().temp_base(&base).start().unwrap();
        let mut files = Vec::new();
        for _ in 0..FILES {
            files.push(sup.temp_file().await.unwrap());
        }
        (sup, files)
    });
    let root = sup.temp_root().to_path_buf();
    let (busy_tx, busy_rx) = std::sync::mpsc::channel::<()>();
    let (free_tx, free_rx) = std::sync::mpsc::channel::<()>();
    let occupier = rt.spawn_blocking(move || {
        busy_tx.send(()).unwrap();
        let _ = free_rx.recv();
    });
    busy_rx.recv().unwrap();
    let s = sup.clone();
    let task = rt.spawn(async move { s.shutdown().await });
    // The newer half released on the shutdown task; the older half queued.
    let start = std::time::Instant::now();
    while entries(&root).len() > FILES / 2 && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let left = entries(&root).len();
    if std::thread::available_parallelism().map_or(1, |n| n.get()) > 1 {
        assert_eq!(
            left,
            FILES / 2,
            "the older chunk ran before the pool was free"
        );
    }
    std::thread::sleep(Duration::from_millis(50));
    assert!(!task.is_finished());
    let dropper = std::thread::spawn(move || drop(rt));
    std::thread::sleep(Duration::from_millis(50));
    drop(free_tx);
    dropper.join().unwrap();
    drop((task, occupier, files, sup));
    let start = std::time::Instant::now();
    while open_fds() > fds && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(open_fds() <= fds, "fds {} > {fds}", open_fds());
    let left = entries(&base);
    assert!(left.is_empty(), "left {left:?}");
    std::fs::remove_dir(&base).unwrap();
}
