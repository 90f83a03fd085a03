//! Regression tests for shutdown's edges (issue 8): the accounting at the deadline is
//! deterministic; the last handle's drop and `start`'s reap stay off the calling thread;
//! a hook's budget is cut at the deadline; the emergency path and the sweep release in a
//! safe order. The core's other edges are in `hardening_core.rs`.

use std::io;
use std::sync::Mutex;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use custodian_suite::{Rt, eventually, exists, scenario};
use tokio_custodian::{Cleanup, Reclaim, ReleasePath, ResourceKind, Supervisor};

/// Resources held normally by scopes that are still running at the deadline are cut off,
/// not leaked, whoever gets to them first (shutdown or the scope's own runner); a guard
/// forgotten in such a scope is a leak. Many rounds, on a multi-threaded runtime, so that
/// both orders happen.
#[test]
fn the_deadline_tells_cut_off_scopes_from_leaks() {
    scenario(Rt::Multi(2), "deadline", async |base| {
        for round in 0..30 {
            let sup = Supervisor::builder()
                .temp_base(&base)
                .grace(Duration::from_millis(30))
                .start()
                .unwrap();
            let (ready_tx, mut ready) = tokio::sync::mpsc::channel(16);
            let mut tasks = Vec::new();
            for i in 0..6 {
                let s = sup.clone();
                let ready_tx = ready_tx.clone();
                tasks.push(tokio::spawn(async move {
                    // A grace of its own far longer than the supervisor's: only the
                    // shutdown deadline cuts it off.
                    s.root()
                        .scope_with_grace("stubborn", Duration::from_secs(60), async |s| {
                            let _held = s.temp_file().await.unwrap();
                            if i == 0 {
                                std::mem::forget(s.temp_file().await.unwrap());
                            }
                            ready_tx.send(()).await.unwrap();
                            // Ignores cancellation: cut off at the deadline.
                            std::future::pending::<()>().await;
                        })
                        .await
                }));
            }
            for _ in 0..6 {
                ready.recv().await.unwrap();
            }
            let report = sup.shutdown().await;
            let stats = &report.stats;
            let leaked: u64 = stats.kinds.values().map(|k| k.leaked()).sum();
            let cancelled: u64 = stats
                .kinds
                .values()
                .map(|k| k.released(ReleasePath::Cancelled))
                .sum();
            let shutdown: u64 = stats
                .kinds
                .values()
                .map(|k| k.released(ReleasePath::Shutdown))
                .sum();
            assert_eq!(
                (leaked, cancelled, shutdown),
                (1, 6, 0),
                "round {round}: exactly the forgotten guard leaked\n{report}"
            );
            assert_eq!(report.leaks.len(), 1, "round {round}\n{report}");
            assert!(
                report.alive_at_shutdown.len() <= 1,
                "round {round}\n{report}"
            );
            assert!(
                !report.scopes_finished,
                "round {round}: cut off by the deadline"
            );
            for t in tasks {
                assert!(t.await.unwrap().is_err());
            }
        }
    });
}

/// A reclaim that blocks until the test lets it go, and says on which thread it ran.
struct Blocks {
    go: Mutex<mpsc::Receiver<()>>,
    ran_on: mpsc::Sender<std::thread::ThreadId>,
}

impl Reclaim for Blocks {
    fn reclaim(self: Box<Self>) -> Cleanup {
        Cleanup::Done(Ok(()))
    }

    fn reclaim_now(self: Box<Self>) -> io::Result<()> {
        let _ = self.ran_on.send(std::thread::current().id());
        let _ = self.go.lock().unwrap().recv_timeout(Duration::from_secs(5));
        Ok(())
    }
}

/// Dropping the last handle inside a runtime must not run the emergency work on the
/// dropping thread (often a runtime worker).
#[test]
fn dropping_the_last_handle_does_not_block_the_dropping_thread() {
    scenario(Rt::Multi(2), "drop-off-thread", async |base| {
        let sup = Supervisor::builder().temp_base(&base).start().unwrap();
        let (go_tx, go_rx) = mpsc::channel();
        let (ran_tx, ran_rx) = mpsc::channel();
        let reg = sup
            .root()
            .register(
                ResourceKind::Lock,
                "slow",
                None,
                Blocks {
                    go: Mutex::new(go_rx),
                    ran_on: ran_tx,
                },
            )
            .unwrap();
        std::mem::forget(reg);
        let root = sup.temp_root().to_path_buf();
        let t = Instant::now();
        drop(sup);
        let took = t.elapsed();
        let _ = go_tx.send(());
        assert!(took < Duration::from_secs(1), "drop blocked for {took:?}");
        let ran_on = ran_rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_ne!(ran_on, std::thread::current().id());
        eventually("temp root removed", || !exists(&root)).await;
    });
}

/// `start` must not remove a dead owner's files on the calling runtime thread.
#[test]
fn start_reaps_abandoned_roots_off_the_calling_thread() {
    scenario(Rt::Current, "reap-off-thread", async |base| {
        // A root as a SIGKILLed owner leaves it: the generated name, 0700, unlocked.
        let dead = base.join(format!("custodian-{}", "ab".repeat(16)));
        std::fs::create_dir(&dead).unwrap();
        std::fs::set_permissions(&dead, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        for i in 0..20_000 {
            std::fs::write(dead.join(format!("f{i}")), b"").unwrap();
        }
        let t = Instant::now();
        let sup = Supervisor::builder()
            .temp_base(&base)
            .abandoned_min_age(Duration::ZERO)
            .start()
            .unwrap();
        let took = t.elapsed();
        let still_there = exists(&dead);
        let reaped = sup.reaped_at_start().await;
        assert_eq!(reaped, vec![dead.clone()]);
        assert!(!exists(&dead));
        assert!(
            still_there,
            "start() removed 20,000 files on the calling thread ({took:?})"
        );
        sup.shutdown().await;
    });
}

/// The grace bounds the whole graceful shutdown, hooks included: a hook whose own budget
/// is far longer is cut at the deadline.
#[test]
fn a_hook_budget_longer_than_the_grace_is_cut_at_the_deadline() {
    scenario(Rt::Multi(2), "hook-deadline", async |base| {
        let sup = Supervisor::builder()
            .temp_base(&base)
            .grace(Duration::from_millis(300))
            .start()
            .unwrap();
        sup.on_shutdown("slow", Duration::from_secs(30), |_| async {
            tokio::time::sleep(Duration::from_secs(60)).await;
        })
        .unwrap();
        sup.on_shutdown("later", Duration::from_secs(30), |_| async {})
            .unwrap();
        let t = Instant::now();
        let report = sup.shutdown().await;
        let took = t.elapsed();
        assert!(
            took < Duration::from_millis(1500),
            "shutdown took {took:?}\n{report}"
        );
        let outcomes: Vec<String> = report.hooks.iter().map(|h| h.outcome.to_string()).collect();
        // Hooks run last registered first: `later` completes, `slow` is cut.
        assert_eq!(report.hooks[0].name, "later");
        assert_eq!(report.hooks[1].name, "slow");
        assert_eq!(
            report.hooks[1].outcome,
            tokio_custodian::HookOutcome::Cut,
            "{outcomes:?}"
        );
        assert_eq!(report.reason, tokio_custodian::CancelReason::Deadline);
    });
}

/// The last handle dropped without `shutdown()`, then `process::exit` at once (review
/// finding): the deferred emergency work never runs, but the children's groups got their
/// SIGKILL inline (`Reclaim::reclaim_urgent`), so nothing keeps running.
#[test]
fn a_process_exiting_right_after_the_last_drop_leaves_no_child_running() {
    // The owner's pipes are fds of this process: keep out of the fd-counting scenarios.
    let _serial = custodian_suite::serial();
    let mut owner = custodian_suite::LineChild::spawn(
        std::process::Command::new(env!("CARGO_BIN_EXE_custodian-test-owner"))
            .arg("children-drop-exit")
            .stdin(std::process::Stdio::null()),
    );
    let slow = Duration::from_secs(30);
    let pgid: u32 = owner
        .wait_line("PGID ", slow)
        .expect("the owner's child group")
        .trim()
        .parse()
        .unwrap();
    assert!(owner.wait_exit(slow).is_some(), "the owner did not exit");
    let t = Instant::now();
    while custodian_suite::group_alive(pgid) {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "group {pgid} still running after its owner exited"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // Its temp root may be left (the exit beat the blocking pool): the next start's
    // reaper takes it. Remove it here so as not to litter.
    if let Some(root) = owner.seen.iter().find_map(|l| l.strip_prefix("ROOT ")) {
        let _ = std::fs::remove_dir_all(root);
    }
}

/// A panicking `reclaim_now` (the trait is public) does not abandon the rest of a forced
/// shutdown: it is recorded as a failure, and everything else is still released (review
/// finding).
#[test]
fn a_panicking_emergency_release_does_not_stop_the_others() {
    struct Boom;
    impl Reclaim for Boom {
        fn reclaim(self: Box<Self>) -> Cleanup {
            Cleanup::Done(Ok(()))
        }
        fn reclaim_now(self: Box<Self>) -> io::Result<()> {
            panic!("reclaim_now bug")
        }
    }
    scenario(Rt::Multi(2), "boom-now", async |base| {
        let sup = Supervisor::builder().temp_base(&base).start().unwrap();
        let t = sup.temp_file().await.unwrap();
        let path = t.path().to_path_buf();
        std::mem::forget(t);
        std::mem::forget(
            sup.root()
                .register(ResourceKind::Lock, "boom", None, Boom)
                .unwrap(),
        );
        let d = sup.temp_dir().await.unwrap();
        let dir = d.path().to_path_buf();
        std::mem::forget(d);
        let report = sup.shutdown_now().await;
        assert!(!exists(&path) && !exists(&dir), "{report}");
        assert!(sup.live().is_empty(), "{:?}", sup.live());
        assert_eq!(report.failures.len(), 1, "{report}");
        assert!(report.failures[0].error.contains("panicked"), "{report}");
        assert_eq!(report.alive_at_shutdown.len(), 3, "{report}");
    });
}

/// A scope's sweep stops its children before it removes its dirs (review finding): a
/// child that uses its grace to flush into its temp dir finds the dir still there.
#[test]
fn a_sweep_stops_children_before_removing_their_dirs() {
    scenario(Rt::Multi(2), "sweep-order", async |base| {
        let sup = Supervisor::builder().temp_base(&base).start().unwrap();
        let out = base.join("outcome");
        let dir_path = sup
            .scope("job", async |s| {
                let dir = s.temp_dir().await.unwrap();
                let d = dir.path().display().to_string();
                let script = format!(
                    "trap 'sleep 0.3; if echo x > {d}/flushed; then echo ok > {o}; \
                     else echo lost > {o}; fi; exit 0' TERM; \
                     echo up > {o}.up; while :; do sleep 0.05; done",
                    o = out.display()
                );
                let child = s
                    .command("sh")
                    .args(["-c", &script])
                    .grace(Duration::from_secs(5))
                    .spawn()
                    .unwrap();
                let up = out.with_extension("up");
                let t = Instant::now();
                while !exists(&up) {
                    assert!(
                        t.elapsed() < Duration::from_secs(10),
                        "the child never started"
                    );
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                let path = dir.path().to_path_buf();
                // Both left to the scope's sweep.
                std::mem::forget(dir);
                std::mem::forget(child);
                path
            })
            .await
            .unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap().trim(), "ok");
        assert!(
            !exists(&dir_path),
            "the dir is removed after the child stopped"
        );
        assert!(sup.failures().is_empty(), "{:?}", sup.failures());
        std::fs::remove_file(&out).unwrap();
        std::fs::remove_file(out.with_extension("up")).unwrap();
        sup.shutdown().await;
    });
}
