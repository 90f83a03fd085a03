//! Regression tests from a review of the child-subreaper opt-in
//! (`Builder::child_subreaper`), each for a defect found and fixed:
//! - the emergency path stopped a child's adopted descendants *before* killing its group,
//!   so what the group's death orphaned was left running;
//! - without a usable `/proc` the opt-in started, then every child's release failed;
//! - a child guard kept (or forgotten) past the supervisor kept the process a child
//!   subreaper;
//! - a child's release dropped unrun with the runtime killed the child but left what it
//!   had adopted from it running (and a zombie once the supervisor went);
//! - a descendant orphaned only by the group's death, after the release's first look,
//!   was taken for a stray between the release's two stops and got 2 s, not the
//!   child's grace;
//! - an adopted process reaped by other code stayed recorded: every later stop SIGKILLed
//!   its (free, maybe reused) pid for 4 s, then failed, and the report was not clean;
//! - every scan walked all of `/proc`, once per child in an emergency clean-up: 400
//!   children took 7.8 s, past the 3 s a panic hook waits.
//!
//! Each runs isolated (a child process of the test binary): the setting is process-wide.
//! Sleep lengths unique to each run tell the processes apart in `/proc`.

use std::time::{Duration, Instant};

use custodian_suite::{is_isolated, poll_until, ppid, run_isolated, sleeps, zombie_children};
use tokio_custodian::{Operation, Supervisor};

const ISOLATED: &str = "CUSTODIAN_REVIEW_SUBREAPER_ISOLATED";

/// A unique sleep length for this run and `n`.
fn secs(n: u32) -> String {
    format!("{}", 200_000 + std::process::id() * 10 + n)
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn emergency_cleanup_stops_what_the_groups_death_orphans() {
    run_isolated("emergency_isolated", ISOLATED, false);
}

#[test]
#[ignore = "run isolated by emergency_cleanup_stops_what_the_groups_death_orphans"]
fn emergency_isolated() {
    if !is_isolated(ISOLATED, "emergency_isolated") {
        return;
    }
    let n = secs(1);
    let rt = rt();
    let sup = rt.block_on(async { Supervisor::builder().child_subreaper(true).start() });
    let sup = sup.unwrap();
    // The shell stays (it waits); its `setsid` sleep is its child in a session of its
    // own: nothing is adopted until the shell dies with its group.
    let script = format!("setsid sleep {n} </dev/null >/dev/null 2>&1 & wait");
    let child = rt.block_on(async { sup.command("sh").args(["-c", &script]).spawn() });
    let child = child.unwrap();
    let shell = child.id().unwrap();
    let under_shell = || sleeps(&n).iter().any(|&p| ppid(p) == Some(shell));
    assert!(
        poll_until(Duration::from_secs(10), under_shell),
        "sleep {n} started"
    );
    // No runtime left (the path emergency clean-up is for): no scan task to rescue it.
    drop(rt);
    let done = sup.emergency_cleanup();
    assert_eq!(done.failed, 0, "{done:?}");
    // The group's SIGKILL orphaned the sleep to us: it must be stopped and reaped too.
    let clean = poll_until(Duration::from_secs(5), || {
        sleeps(&n).is_empty() && zombie_children().is_empty()
    });
    assert!(
        clean,
        "left after emergency clean-up: sleeps {:?} (parent {:?}), zombies {:?}",
        sleeps(&n),
        sleeps(&n).first().and_then(|&p| ppid(p)),
        zombie_children()
    );
    drop(child);
    drop(sup);
}

#[test]
fn without_proc_the_opt_in_fails_at_start() {
    run_isolated("no_proc_isolated", ISOLATED, true);
}

#[test]
#[ignore = "run isolated by without_proc_the_opt_in_fails_at_start"]
fn no_proc_isolated() {
    if !is_isolated(ISOLATED, "no_proc_isolated") {
        return;
    }
    // A private mount namespace: hide `/proc` under an empty tmpfs.
    let st = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "none", "/proc"])
        .status()
        .unwrap();
    assert!(st.success());
    assert!(std::fs::read_dir("/proc").unwrap().next().is_none());
    rt().block_on(async {
        let started = Supervisor::builder().child_subreaper(true).start();
        match started {
            Err(e) => {
                assert_eq!(e.operation(), Operation::ChildSubreaper, "{e}");
                assert_eq!(e.io_kind(), Some(std::io::ErrorKind::NotFound), "{e}");
                assert!(e.path().is_some_and(|p| p.starts_with("/proc")), "{e}");
            }
            Ok(sup) => {
                // What a user got: a reaper that scans an empty `/proc`, blind to escapees.
                let child = sup.command("true").spawn().unwrap();
                let closed = child.close().await;
                let report = sup.shutdown().await;
                panic!("started without /proc; a child's close: {closed:?}; then {report}");
            }
        }
        // The failed start gave the process-wide setting back.
        assert!(rustix::process::child_subreaper().unwrap().is_none());
        // Without the opt-in nothing needs /proc for it.
        let sup = Supervisor::builder().start().unwrap();
        sup.command("true").spawn().unwrap().close().await.unwrap();
        assert!(sup.shutdown().await.is_clean());
    });
}

#[test]
fn a_guard_kept_past_the_supervisor_gives_the_setting_back() {
    run_isolated("kept_guard_isolated", ISOLATED, false);
}

#[test]
#[ignore = "run isolated by a_guard_kept_past_the_supervisor_gives_the_setting_back"]
fn kept_guard_isolated() {
    if !is_isolated(ISOLATED, "kept_guard_isolated") {
        return;
    }
    let rt = rt();
    let (kept, forgotten) = rt.block_on(async {
        let sup = Supervisor::builder().child_subreaper(true).start().unwrap();
        let kept = sup.command("sleep").arg(secs(2)).spawn().unwrap();
        let forgotten = sup.command("sleep").arg(secs(3)).spawn().unwrap();
        let report = sup.shutdown().await;
        assert!(report.adopted.live == 0, "{report}");
        drop(sup);
        (kept, forgotten)
    });
    std::mem::forget(forgotten);
    // The supervisor is gone; its guards live on (one of them forever).
    let off = poll_until(Duration::from_secs(5), || {
        rustix::process::child_subreaper().unwrap().is_none()
    });
    assert!(
        off,
        "still a child subreaper after the supervisor was dropped"
    );
    drop(kept);
}

#[test]
fn a_release_dropped_with_the_runtime_still_stops_the_escapees() {
    run_isolated("dropped_release_isolated", ISOLATED, false);
}

#[test]
#[ignore = "run isolated by a_release_dropped_with_the_runtime_still_stops_the_escapees"]
fn dropped_release_isolated() {
    if !is_isolated(ISOLATED, "dropped_release_isolated") {
        return;
    }
    // One thread: nothing runs outside `block_on`, so the release task below is
    // dropped unpolled with the runtime.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let n = secs(4);
    let me = std::process::id();
    let (sup, child) = rt.block_on(async {
        let sup = Supervisor::builder().child_subreaper(true).start().unwrap();
        let script = format!("setsid sleep {n} </dev/null >/dev/null 2>&1 & exit 0");
        let child = sup.command("sh").args(["-c", &script]).spawn().unwrap();
        // Adopted: the shell exited, the sleep is ours and the scan task found it.
        let end = Instant::now() + Duration::from_secs(10);
        while sup.adopted().adopted == 0 || !sleeps(&n).iter().any(|&p| ppid(p) == Some(me)) {
            assert!(Instant::now() < end, "never adopted: {:?}", sup.adopted());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        (sup, child)
    });
    // The release's task is spawned, then dropped unrun with the runtime.
    drop(child);
    drop(rt);
    let clean = poll_until(Duration::from_secs(5), || {
        sleeps(&n).is_empty() && zombie_children().is_empty()
    });
    assert!(
        clean,
        "left after the runtime dropped the release: sleeps {:?}, zombies {:?}, {:?}",
        sleeps(&n),
        zombie_children(),
        sup.adopted()
    );
    drop(sup);
}

#[test]
fn an_escapee_orphaned_late_in_a_release_gets_the_childs_grace() {
    run_isolated("late_grace_isolated", ISOLATED, false);
}

#[test]
#[ignore = "run isolated by an_escapee_orphaned_late_in_a_release_gets_the_childs_grace"]
fn late_grace_isolated() {
    if !is_isolated(ISOLATED, "late_grace_isolated") {
        return;
    }
    let n = secs(5);
    rt().block_on(async {
        let sup = Supervisor::builder().child_subreaper(true).start().unwrap();
        // The shell takes 1 s to die of SIGTERM; only then is its TERM-deaf `setsid`
        // child orphaned to us: after the release's first look for escapees.
        let script = format!(
            "trap 'sleep 1; exit 0' TERM; setsid sh -c \"trap '' TERM; sleep {n}\" </dev/null >/dev/null 2>&1 & wait"
        );
        let grace = Duration::from_secs(4);
        let child = sup.command("sh").args(["-c", &script]);
        let child = child.grace(grace).spawn().unwrap();
        let shell = child.id().unwrap();
        let started = || sleeps(&n).iter().any(|&p| ppid(p).and_then(ppid) == Some(shell));
        assert!(poll_until(Duration::from_secs(10), started), "sleep {n} started");
        let t = Instant::now();
        child.close().await.unwrap();
        // Its SIGTERM ignored, the escapee is owed the child's grace once orphaned, not
        // the 2 s a process adopted after its child's release gets.
        let took = t.elapsed();
        assert!(took >= grace + Duration::from_millis(900), "took {took:?}");
        assert!(sleeps(&n).is_empty() && zombie_children().is_empty());
        let s = sup.adopted();
        assert_eq!((s.live, s.kill_needed), (0, 1), "{s:?}");
        assert!(sup.shutdown().await.is_clean());
    });
}

#[test]
fn an_adopted_process_reaped_by_other_code_is_forgotten() {
    run_isolated("reaped_elsewhere_isolated", ISOLATED, false);
}

#[test]
#[ignore = "run isolated by an_adopted_process_reaped_by_other_code_is_forgotten"]
fn reaped_elsewhere_isolated() {
    if !is_isolated(ISOLATED, "reaped_elsewhere_isolated") {
        return;
    }
    // One thread: the scan task runs only inside `block_on`, so the reap below is other
    // code's (a PID 1 zombie reaper, a `waitpid(-1)` loop), not the supervisor's.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let n = secs(6);
    let me = std::process::id();
    let sup = rt.block_on(async { Supervisor::builder().child_subreaper(true).start() });
    let sup = sup.unwrap();
    let script = format!("setsid sleep {n} </dev/null >/dev/null 2>&1 & exit 0");
    let grace = Duration::from_millis(300);
    let (child, pid) = rt.block_on(async {
        let child = sup.command("sh").args(["-c", &script]).grace(grace).spawn();
        let child = child.unwrap();
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            let ours = sleeps(&n).into_iter().find(|&p| ppid(p) == Some(me));
            if let Some(p) = ours
                && sup.adopted().adopted == 1
            {
                return (child, p);
            }
            assert!(Instant::now() < end, "never adopted: {:?}", sup.adopted());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    let p = rustix::process::Pid::from_raw(pid as i32).unwrap();
    rustix::process::kill_process(p, rustix::process::Signal::KILL).unwrap();
    let reaped = rustix::process::waitpid(Some(p), rustix::process::WaitOptions::empty());
    assert!(reaped.unwrap().is_some(), "other code reaped {pid}");
    rt.block_on(async {
        let t = Instant::now();
        let closed = child.close().await;
        let took = t.elapsed();
        // Nothing of it is left: no wait for SIGKILL rounds on a pid that is not ours.
        assert!(closed.is_ok(), "{closed:?}");
        assert!(took < grace + Duration::from_secs(2), "close took {took:?}");
        assert_eq!(sup.adopted().live, 0, "{:?}", sup.adopted());
        let report = sup.shutdown().await;
        assert!(report.is_clean(), "{report}");
    });
}

#[test]
fn emergency_clean_up_of_many_children_fits_the_panic_hooks_budget() {
    run_isolated("many_children_isolated", ISOLATED, false);
}

#[test]
#[ignore = "run isolated by emergency_clean_up_of_many_children_fits_the_panic_hooks_budget"]
fn many_children_isolated() {
    if !is_isolated(ISOLATED, "many_children_isolated") {
        return;
    }
    const CHILDREN: usize = 400;
    // What a panic hook waits for the emergency releases before the process may end
    // (`emergency::HOOK_BUDGET`); without the opt-in these take a fraction of it.
    const HOOK_BUDGET: Duration = Duration::from_secs(3);
    let n = secs(7);
    let rt = rt();
    let sup = rt.block_on(async { Supervisor::builder().child_subreaper(true).start() });
    let sup = sup.unwrap();
    let kids: Vec<_> = (0..CHILDREN)
        .map(|_| sup.command("sleep").arg(&n).spawn().unwrap())
        .collect();
    assert!(poll_until(Duration::from_secs(20), || sleeps(&n).len() == CHILDREN));
    let t = Instant::now();
    let done = sup.emergency_cleanup();
    let took = t.elapsed();
    println!("emergency clean-up of {CHILDREN} children took {took:?}");
    assert_eq!((done.released, done.failed), (CHILDREN, 0), "{done:?}");
    // One `/proc` walk per child made this O(children x processes).
    assert!(took < HOOK_BUDGET, "emergency clean-up took {took:?}");
    assert!(sleeps(&n).is_empty() && zombie_children().is_empty());
    drop(kids);
}
