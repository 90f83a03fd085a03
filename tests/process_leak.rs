//! Forgotten guards and many children at once.

use std::time::{Duration, Instant};

use custodian_suite::{group_members, pid_exists, serial_process_test};
use tokio_custodian::{ReleasePath, ResourceKind, Supervisor};

#[test]
fn a_forgotten_guard_is_stopped_at_scope_end_and_counted_as_a_leak() {
    serial_process_test(async || {
        let sup = Supervisor::builder().start().unwrap();
        let pid = sup
            .scope("s", async |s| {
                let child = s
                    .command("sleep")
                    .arg("1000")
                    .label("forgotten")
                    .spawn()
                    .unwrap();
                let pid = child.id().unwrap();
                std::mem::forget(child);
                pid
            })
            .await
            .unwrap();
        assert!(
            !pid_exists(pid),
            "stopped and reaped before the scope returned"
        );
        let leaks = sup.leaked();
        assert_eq!(leaks.len(), 1);
        assert_eq!(leaks[0].kind(), ResourceKind::Child);
        assert_eq!(leaks[0].label(), "forgotten");
        assert!(
            leaks[0].site().file.ends_with("process_leak.rs"),
            "{}",
            leaks[0].site()
        );
        assert_eq!(leaks[0].released_by(), ReleasePath::ScopeEnd);
        let report = sup.shutdown().await;
        assert_eq!(report.leaks.len(), 1);
        // The forgotten guard still holds the child's shared state, but the reap
        // closed its pidfd: the fd check in `serial_process_test` proves it.
        vec![pid]
    });
}

#[test]
fn two_hundred_children_released_at_one_scope_end() {
    serial_process_test(async || {
        let sup = Supervisor::builder().start().unwrap();
        let t = Instant::now();
        let (pids, guards) = sup
            .scope("fleet", async |s| {
                let mut guards = Vec::new();
                for i in 0..200 {
                    let c = s
                        .command("sleep")
                        .arg("1000")
                        .label(format!("worker-{i}"))
                        .spawn()
                        .unwrap();
                    guards.push(c);
                }
                let pids: Vec<u32> = guards.iter().map(|c| c.id().unwrap()).collect();
                assert_eq!(group_members(&pids).len(), 200);
                (pids, guards) // escape: released by the scope's end
            })
            .await
            .unwrap();
        let took = t.elapsed();
        assert!(took < Duration::from_secs(20), "took {took:?}");
        assert!(
            pids.iter().all(|&p| !pid_exists(p)),
            "all reaped at scope end"
        );
        assert!(guards.iter().all(|g| g.id().is_none()));
        let s = sup.stats();
        assert_eq!(
            s.kind(ResourceKind::Child)
                .released
                .get(&ReleasePath::ScopeEnd),
            Some(&200)
        );
        drop(guards);
        sup.shutdown().await;
        pids
    });
}
