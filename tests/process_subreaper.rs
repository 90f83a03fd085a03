//! The child-subreaper opt-in (`Builder::child_subreaper`, issue 10) on real processes:
//! descendants that leave a managed child's group (`setsid`, a double fork) are adopted,
//! stopped with the child that spawned them and reaped, at its release and at shutdown,
//! leaving no process and no zombie; children spawned outside custodian keep their exit
//! statuses while the reaper runs; without the opt-in nothing changes.
//!
//! Each test runs isolated (a child process of the test binary): the setting is
//! process-wide. Sleep lengths unique to each run tell the processes apart in `/proc`.

use std::process::Stdio;
use std::time::{Duration, Instant};

use custodian_suite::{
    is_isolated, mentioning, poll_until, ppid, run_isolated, sleeps, zombie_children,
};
use tokio_custodian::Supervisor;

const ISOLATED: &str = "CUSTODIAN_SUBREAPER_ISOLATED";

/// A unique sleep length for this run and `n`.
fn secs(n: u32) -> String {
    format!("{}", 100_000 + std::process::id() * 10 + n)
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// `sh -c 'setsid sh -c "trap '' TERM; sleep N" & exit 0'`: the escapee leaves the
/// group and the session, its parent exits at once.
fn setsid_escapee(n: &str) -> String {
    format!("setsid sh -c \"trap '' TERM; sleep {n}\" </dev/null >/dev/null 2>&1 & exit 0")
}

/// A double-fork daemon in a new session; the managed child itself stays.
fn double_fork(n: &str) -> String {
    format!("sh -c \"setsid sleep {n} </dev/null >/dev/null 2>&1 &\"; exec sleep 99{n}")
}

/// Waits until the escapee `sleep n` runs with this process as its parent or
/// grandparent (adopted: the shell between them has exited).
fn wait_adopted(n: &str) {
    let me = std::process::id();
    let adopted = || {
        sleeps(n)
            .iter()
            .any(|&p| ppid(p) == Some(me) || ppid(p).and_then(ppid) == Some(me))
    };
    assert!(
        poll_until(Duration::from_secs(10), adopted),
        "sleep {n} never adopted"
    );
}

/// No process mentions any of `ns`, and this process has no zombie child.
fn assert_nothing_left(ns: &[&str], when: &str) {
    let left = || {
        let procs: Vec<u32> = ns
            .iter()
            .flat_map(|n| mentioning(&format!("sleep {n}")))
            .collect();
        (procs, zombie_children())
    };
    let clean = poll_until(Duration::from_secs(10), || {
        let (p, z) = left();
        p.is_empty() && z.is_empty()
    });
    assert!(clean, "{when}: left (processes, zombies) {:?}", left());
}

#[test]
fn escapees_are_stopped_and_reaped_at_release() {
    run_isolated("release_isolated", ISOLATED, false);
}

#[test]
#[ignore = "run isolated by escapees_are_stopped_and_reaped_at_release"]
fn release_isolated() {
    if !is_isolated(ISOLATED, "release_isolated") {
        return;
    }
    let (a, b) = (secs(1), secs(2));
    rt().block_on(async {
        let sup = Supervisor::builder().child_subreaper(true).start().unwrap();
        assert!(rustix::process::child_subreaper().unwrap().is_some());
        let grace = Duration::from_millis(300);
        let one = sup
            .command("sh")
            .args(["-c", &setsid_escapee(&a)])
            .grace(grace)
            .spawn()
            .unwrap();
        let two = sup
            .command("sh")
            .args(["-c", &double_fork(&b)])
            .stdin(Stdio::null())
            .grace(grace)
            .spawn()
            .unwrap();
        wait_adopted(&a);
        wait_adopted(&b);
        // The first: its shell exited at once; release by close.
        one.close().await.unwrap();
        assert_nothing_left(&[&a], "after close");
        assert!(
            !mentioning(&format!("sleep {b}")).is_empty(),
            "the other child's kept"
        );
        // The second: released by drop (its escapee reaped in the background).
        drop(two);
        assert_nothing_left(&[&a, &b], "after drop");
        // A group member orphaned by its shell is adopted too (by its group): `wait()`
        // kills it and reaps the leader; its zombie, proven by the group of a leader
        // reaped in the meantime, is reaped as well.
        let c = secs(7);
        let st = sup
            .command("sh")
            .args(["-c", &format!("sleep {c} & exit 4")])
            .status()
            .await
            .unwrap();
        assert_eq!(st.code(), Some(4));
        assert_nothing_left(&[&c], "after a member orphaned in the group");
        // An escapee deaf to SIGTERM gets the child's grace, then SIGKILL.
        let d = secs(8);
        let deaf = format!(
            "setsid sh -c \"trap '' TERM; while :; do sleep {d}; done\" </dev/null >/dev/null 2>&1 & exit 0"
        );
        let stubborn = sup.command("sh").args(["-c", &deaf]).grace(grace).spawn();
        let stubborn = stubborn.unwrap();
        wait_adopted(&d);
        let t = Instant::now();
        stubborn.close().await.unwrap();
        assert!(t.elapsed() >= grace, "the grace was given: {:?}", t.elapsed());
        assert_nothing_left(&[&d], "after a TERM-deaf escapee");
        assert!(sup.adopted().kill_needed >= 1, "{:?}", sup.adopted());
        let s = sup.adopted();
        assert!(s.adopted >= 4, "{s:?}");
        assert_eq!((s.reaped, s.live), (s.adopted, 0), "{s:?}");
        let report = sup.shutdown().await;
        assert!(report.is_clean(), "{report}");
        assert_eq!(report.adopted.live, 0);
        drop(sup);
        // The last hold gone, the setting is off again: at once, or as soon as a scan
        // already on the blocking pool (a SIGCHLD's) ends, which holds the reaper until then.
        let off = || rustix::process::child_subreaper().unwrap().is_none();
        assert!(custodian_suite::poll_until(Duration::from_secs(2), off));
    });
}

#[test]
fn escapees_are_stopped_and_reaped_at_shutdown() {
    run_isolated("shutdown_isolated", ISOLATED, false);
}

#[test]
#[ignore = "run isolated by escapees_are_stopped_and_reaped_at_shutdown"]
fn shutdown_isolated() {
    if !is_isolated(ISOLATED, "shutdown_isolated") {
        return;
    }
    let (a, b) = (secs(3), secs(4));
    rt().block_on(async {
        let sup = Supervisor::builder()
            .child_subreaper(true)
            .grace(Duration::from_secs(3))
            .start()
            .unwrap();
        let grace = Duration::from_millis(300);
        let mut keep = Vec::new();
        for script in [setsid_escapee(&a), double_fork(&b)] {
            let c = sup.command("sh").args(["-c", &script]).stdin(Stdio::null());
            keep.push(c.grace(grace).spawn().unwrap());
        }
        wait_adopted(&a);
        wait_adopted(&b);
        // Held by the root scope: shutdown releases them.
        std::mem::forget(keep);
        let report = sup.shutdown().await;
        assert_nothing_left(&[&a, &b], "after shutdown");
        assert!(report.adopted.adopted >= 2, "{:?}", report.adopted);
        assert_eq!(report.adopted.live, 0, "{:?}", report.adopted);
        assert_eq!(report.adopted.reaped, report.adopted.adopted);
    });
}

#[test]
fn children_spawned_outside_custodian_keep_their_statuses() {
    run_isolated("others_isolated", ISOLATED, false);
}

#[test]
#[ignore = "run isolated by children_spawned_outside_custodian_keep_their_statuses"]
fn others_isolated() {
    if !is_isolated(ISOLATED, "others_isolated") {
        return;
    }
    let a = secs(5);
    rt().block_on(async {
        let sup = Supervisor::builder().child_subreaper(true).start().unwrap();
        // Keep the reaper busy: an adopted escapee, scanned for on every SIGCHLD.
        let managed = sup
            .command("sh")
            .args(["-c", &setsid_escapee(&a)])
            .spawn()
            .unwrap();
        wait_adopted(&a);
        // A std child that exits and stays a zombie until waited for: the reaper sees
        // it at a scan (counted unproven) and leaves it.
        let mut std_child = std::process::Command::new("sh")
            .args(["-c", "exit 7"])
            .spawn()
            .unwrap();
        let seen = poll_until(Duration::from_secs(10), || {
            sup.adopted().unproven_zombies >= 1
        });
        assert!(seen, "a scan saw the zombie: {:?}", sup.adopted());
        assert_eq!(std_child.wait().unwrap().code(), Some(7), "status kept");
        // Plain tokio children, many, while the reaper scans on their SIGCHLDs.
        let mut set = tokio::task::JoinSet::new();
        for i in 0..20 {
            set.spawn(async move {
                let st = tokio::process::Command::new("sh")
                    .args(["-c", &format!("sleep 0.0{}; exit {}", i % 10, 10 + i)])
                    .status()
                    .await
                    .expect("tokio's wait never fails with ECHILD");
                (i, st.code())
            });
        }
        while let Some(r) = set.join_next().await {
            let (i, code) = r.unwrap();
            assert_eq!(code, Some(10 + i));
        }
        // A std child waited for while the escapee is stopped.
        let slow = std::process::Command::new("sh")
            .args(["-c", "sleep 0.3; exit 5"])
            .spawn()
            .unwrap();
        managed.close().await.unwrap();
        let st = slow.wait_with_output().unwrap().status;
        assert_eq!(st.code(), Some(5));
        assert_nothing_left(&[&a], "after close");
        let report = sup.shutdown().await;
        assert!(report.is_clean(), "{report}");
    });
}

#[test]
fn off_by_default_changes_nothing() {
    run_isolated("off_isolated", ISOLATED, false);
}

#[test]
#[ignore = "run isolated by off_by_default_changes_nothing"]
fn off_isolated() {
    if !is_isolated(ISOLATED, "off_isolated") {
        return;
    }
    let a = secs(6);
    rt().block_on(async {
        let sup = Supervisor::builder().start().unwrap();
        assert!(rustix::process::child_subreaper().unwrap().is_none());
        let out = sup
            .command("sh")
            .args(["-c", "echo ${CUSTODIAN_OWNER-unset}"])
            .output()
            .await
            .unwrap();
        assert_eq!(out.stdout, b"unset\n", "no marker without the opt-in");
        // An escapee is not adopted: its parent is not this process, and it survives
        // its child's release (the residual the opt-in exists for).
        let child = sup
            .command("sh")
            .args(["-c", &setsid_escapee(&a)])
            .spawn()
            .unwrap();
        let me = std::process::id();
        let running = || !sleeps(&a).is_empty();
        assert!(poll_until(Duration::from_secs(10), running));
        child.close().await.unwrap();
        let escaped = mentioning(&format!("sleep {a}"));
        assert!(!escaped.is_empty(), "not stopped without the opt-in");
        assert!(escaped.iter().all(|&p| ppid(p) != Some(me)));
        assert_eq!(sup.adopted(), tokio_custodian::AdoptionStats::default());
        let report = sup.shutdown().await;
        assert_eq!(report.adopted, tokio_custodian::AdoptionStats::default());
        for p in escaped {
            let pid = rustix::process::Pid::from_raw(p as i32).unwrap();
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
        // With the opt-in, the marker names this process.
        let sup = Supervisor::builder().child_subreaper(true).start().unwrap();
        let out = sup
            .command("sh")
            .args(["-c", "echo $CUSTODIAN_OWNER"])
            .output()
            .await
            .unwrap();
        let marker = String::from_utf8(out.stdout).unwrap();
        assert!(marker.starts_with(&format!("{me}-")), "{marker}");
        sup.shutdown().await;
    });
}
