//! The cgroup containment tier (issue 19) on real processes, on this machine's cgroup2
//! mount: a managed child that starts a `setsid env -i` double-fork daemon and a
//! TERM-ignoring grandchild is released by every path — close, scope end, shutdown, the
//! emergency clean-up, the last handle dropped — and afterwards every process is gone,
//! its cgroup was `populated 0` and removed, no zombie is left, and no cgroup is left
//! under the supervisor's or under this process's own cgroup.
//!
//! Without the tier (the control test), the daemon outlives the release: it left the
//! group and cleared its environment, so nothing else finds it.
//!
//! Skipped, saying "skipped: no writable cgroup2", where the tier is not available.

use std::path::{Path, PathBuf};
use std::time::Duration;

use custodian_suite::{poll_until, serial, sleeps, zombie_children};
use tokio_custodian::{Containment, ContainmentTier, ManagedChild, Scope, Supervisor};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A sleep length unique to this run and `n`.
fn secs(n: u32) -> String {
    format!("{}", 200_000 + std::process::id() * 10 + n)
}

/// This process's cgroup directory (from mountinfo and /proc/self/cgroup, as the crate
/// finds it).
fn own_cgroup_dir() -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let point = info.lines().rev().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        let dash = f.iter().position(|&x| x == "-")?;
        (f.get(dash + 1) == Some(&"cgroup2")).then(|| PathBuf::from(f[4]))
    })?;
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let own = own.lines().find_map(|l| l.strip_prefix("0::"))?;
    Some(point.join(own.trim_start_matches('/')))
}

/// This process's `custodian-<pid>-*` cgroups.
fn our_cgroups(parent: &Path) -> Vec<String> {
    let prefix = format!("custodian-{}-", std::process::id());
    custodian_suite::entries(parent)
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .collect()
}

/// Child cgroups under `dir` (directories only).
fn sub_cgroups(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| {
        d.filter(|e| e.as_ref().is_ok_and(|e| e.path().is_dir()))
            .count()
    })
}

/// Starts a supervisor with the cgroup tier, or `None` (printing the skip) without one.
fn start() -> Option<Supervisor> {
    let sup = Supervisor::builder()
        .containment(Containment::Auto)
        .start()
        .unwrap();
    match sup.stats().containment {
        ContainmentTier::Cgroup { .. } => Some(sup),
        other => {
            eprintln!("skipped: no writable cgroup2 ({other})");
            None
        }
    }
}

/// The escape artist: a `setsid env -i` double-fork daemon (new session, no environment,
/// orphaned at once), a grandchild that ignores SIGTERM, and the child itself.
fn escape_artist(s: &Scope, n: u32) -> ManagedChild {
    let (daemon, deaf, me) = (secs(n), secs(n + 1), secs(n + 2));
    let script = format!(
        "setsid env -i sh -c 'sleep {daemon} </dev/null >/dev/null 2>&1 &'; \
         sh -c \"trap '' TERM; sleep {deaf}\" & exec sleep {me}"
    );
    s.command("sh")
        .args(["-c", &script])
        .grace(Duration::from_millis(300))
        .spawn()
        .unwrap()
}

/// Waits for the three sleeps of `escape_artist(n)`, and checks each is in `cgroup`.
fn wait_started(n: u32, cgroup: &Path, mount_dir: &Path) {
    for k in 0..3 {
        let s = secs(n + k);
        // The pid seen, once it is `sleep` itself (an intermediate shell's command line
        // names the sleep too, and a process in the middle of `exec` reads as empty).
        let mut seen = None;
        assert!(
            poll_until(Duration::from_secs(10), || {
                let found = sleeps(&s);
                seen = found.first().copied().filter(|pid| {
                    found.len() == 1
                        && std::fs::read_to_string(format!("/proc/{pid}/comm"))
                            .is_ok_and(|c| c.trim() == "sleep")
                });
                seen.is_some()
            }),
            "sleep {s} never started"
        );
        let pid = seen.unwrap();
        let line = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        let inside = line.lines().find_map(|l| l.strip_prefix("0::")).unwrap();
        assert_eq!(
            mount_dir.join(inside.trim_start_matches('/')),
            mount_dir.join(cgroup.strip_prefix(mount_dir).unwrap()),
            "sleep {s} is not in the child's cgroup"
        );
    }
}

/// The cgroup2 mount point (the parent of what `/proc/PID/cgroup` names).
fn mount_dir() -> PathBuf {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines()
        .rev()
        .find_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let dash = f.iter().position(|&x| x == "-")?;
            (f.get(dash + 1) == Some(&"cgroup2")).then(|| PathBuf::from(f[4]))
        })
        .unwrap()
}

/// Nothing of `escape_artist(n)` runs, no zombie child is left, its cgroup is gone.
fn assert_gone(n: u32, cgroup: &Path, when: &str) {
    for k in 0..3 {
        let s = secs(n + k);
        assert!(
            poll_until(Duration::from_secs(2), || sleeps(&s).is_empty()),
            "{when}: sleep {s} still runs: {:?}",
            sleeps(&s)
        );
    }
    assert!(
        !cgroup.exists(),
        "{when}: the child's cgroup {} is left",
        cgroup.display()
    );
    assert_eq!(zombie_children(), Vec::<u32>::new(), "{when}: zombies");
}

/// Runs `body` with a cgroup-tier supervisor, then checks that no cgroup of this process
/// is left under its own cgroup (and that there were as many before).
fn with_tier(tag: &str, body: impl AsyncFnOnce(Supervisor, PathBuf)) {
    let _serial = serial();
    let Some(parent) = own_cgroup_dir() else {
        eprintln!("skipped: no writable cgroup2 (no cgroup2 mount)");
        return;
    };
    let before = our_cgroups(&parent);
    assert_eq!(
        before,
        Vec::<String>::new(),
        "{tag}: left by an earlier test"
    );
    let all_before = sub_cgroups(&parent);
    rt().block_on(async {
        let Some(sup) = start() else { return };
        body(sup, mount_dir()).await;
    });
    assert_eq!(our_cgroups(&parent), before, "{tag}: cgroups left");
    assert!(
        sub_cgroups(&parent) <= all_before,
        "{tag}: more cgroups under {} than before",
        parent.display()
    );
}

fn sup_cgroup(sup: &Supervisor) -> PathBuf {
    match sup.stats().containment {
        ContainmentTier::Cgroup { path } => path,
        other => panic!("not the cgroup tier: {other}"),
    }
}

#[test]
fn close_kills_the_whole_tree_and_removes_its_cgroup() {
    with_tier("close", async |sup, mount| {
        let root = sup_cgroup(&sup);
        let child = escape_artist(&sup.root(), 10);
        let cg = child.cgroup().expect("a cgroup");
        assert_eq!(cg.parent(), Some(root.as_path()));
        wait_started(10, &cg, &mount);
        child.close().await.unwrap();
        assert_gone(10, &cg, "close");
        assert_eq!(sub_cgroups(&root), 0, "child cgroups left");
        let events = std::fs::read_to_string(root.join("cgroup.events")).unwrap();
        assert!(events.contains("populated 0"), "{events}");
        let report = sup.shutdown().await;
        assert!(report.is_clean(), "{report}");
        assert!(report.stats.containment.is_cgroup());
        assert!(!root.exists(), "the supervisor's cgroup is left");
    });
}

#[test]
fn scope_end_kills_a_forgotten_childs_tree() {
    with_tier("scope end", async |sup, mount| {
        let root = sup_cgroup(&sup);
        // Warm up (tokio's SIGCHLD driver opens its fds at the first spawn; start's reap
        // of abandoned roots holds fds on the blocking pool), then count.
        sup.reaped_at_start().await;
        sup.command("true").status().await.unwrap();
        let fds = custodian_suite::open_fds();
        let cg = sup
            .scope("job", async |s| {
                let child = escape_artist(&s, 20);
                let cg = child.cgroup().unwrap();
                wait_started(20, &cg, &mount);
                std::mem::forget(child);
                cg
            })
            .await
            .unwrap();
        assert_gone(20, &cg, "scope end");
        assert_eq!(sub_cgroups(&root), 0);
        // The forgotten guard keeps no fd: the pidfd went with the reap, the cgroup's
        // fd with its removal.
        // (Settling: a group scan's pass on the blocking pool may still hold a /proc fd.)
        custodian_suite::assert_fds_settle(fds, "fds kept by a forgotten guard");
        let report = sup.shutdown().await;
        assert!(report.failures.is_empty(), "{report}");
        assert!(!root.exists());
    });
}

#[test]
fn shutdown_kills_every_tree_and_removes_the_supervisors_cgroup() {
    with_tier("shutdown", async |sup, mount| {
        let root = sup_cgroup(&sup);
        let a = escape_artist(&sup.root(), 30);
        let b = escape_artist(&sup.root(), 40);
        let (ca, cb) = (a.cgroup().unwrap(), b.cgroup().unwrap());
        wait_started(30, &ca, &mount);
        wait_started(40, &cb, &mount);
        std::mem::forget((a, b));
        let report = sup.shutdown().await;
        assert!(report.failures.is_empty(), "{report}");
        assert_eq!(report.cgroup_error, None);
        assert_gone(30, &ca, "shutdown");
        assert_gone(40, &cb, "shutdown");
        assert!(!root.exists(), "the supervisor's cgroup is left");
    });
}

#[test]
fn the_emergency_path_kills_and_removes_synchronously() {
    with_tier("emergency", async |sup, mount| {
        let root = sup_cgroup(&sup);
        let child = escape_artist(&sup.root(), 50);
        let cg = child.cgroup().unwrap();
        wait_started(50, &cg, &mount);
        std::mem::forget(child);
        // On this thread, no await: what a panic hook or an abort path runs.
        let done = sup.emergency_cleanup();
        assert_eq!((done.released, done.failed), (1, 0), "{done:?}");
        // Synchronous: already gone when the call returns.
        assert!(!cg.exists(), "the child's cgroup is left");
        assert!(!root.exists(), "the supervisor's cgroup is left");
        assert_gone(50, &cg, "emergency");
    });
}

#[test]
fn the_last_handle_dropped_without_shutdown_kills_and_removes() {
    with_tier("last drop", async |sup, mount| {
        let root = sup_cgroup(&sup);
        let child = escape_artist(&sup.root(), 60);
        let cg = child.cgroup().unwrap();
        wait_started(60, &cg, &mount);
        std::mem::forget(child);
        drop(sup);
        assert!(
            poll_until(Duration::from_secs(5), || !root.exists()),
            "the supervisor's cgroup is left"
        );
        assert_gone(60, &cg, "last drop");
    });
}

#[test]
fn a_child_that_exits_by_itself_has_its_daemon_killed_at_wait() {
    with_tier("wait", async |sup, mount| {
        let daemon = secs(70);
        let mut child = sup
            .command("sh")
            .args([
                "-c",
                &format!("setsid env -i sh -c 'sleep {daemon} >/dev/null 2>&1 &'"),
            ])
            .spawn()
            .unwrap();
        let cg = child.cgroup().unwrap();
        assert!(child.wait().await.unwrap().success());
        // The reap wrote cgroup.kill: whatever the child left is dying or gone.
        assert!(
            poll_until(Duration::from_secs(2), || sleeps(&daemon).is_empty()),
            "the daemon outlived its parent's reap"
        );
        let _ = mount;
        child.close().await.unwrap();
        assert!(!cg.exists());
        assert!(sup.shutdown().await.is_clean());
    });
}

/// The control: without the tier, the same daemon outlives the release (it left the
/// group and cleared its environment). This is what the tests above would see on the
/// code before the tier.
#[test]
fn without_the_tier_the_daemon_outlives_the_release() {
    let _serial = serial();
    rt().block_on(async {
        let sup = Supervisor::builder().start().unwrap();
        assert!(!sup.stats().containment.is_cgroup());
        let child = escape_artist(&sup.root(), 80);
        assert_eq!(child.cgroup(), None);
        let daemon = secs(80);
        assert!(poll_until(Duration::from_secs(10), || sleeps(&daemon)
            .len()
            == 1));
        child.close().await.unwrap();
        let survivors = sleeps(&daemon);
        assert_eq!(
            survivors.len(),
            1,
            "the escapee was caught without a cgroup"
        );
        // Test cleanup by pid, checked to be the escapee just seen.
        for pid in survivors {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        sup.shutdown().await;
    });
}

#[test]
fn the_child_is_in_its_cgroup_before_it_runs_any_code() {
    with_tier("placement", async |sup, mount| {
        // The child's first act is to read its own cgroup.
        let mut child = sup
            .command("cat")
            .arg("/proc/self/cgroup")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let cg = child.cgroup().unwrap();
        let mut out = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut child.take_stdout().unwrap(), &mut out)
            .await
            .unwrap();
        let seen = out.lines().find_map(|l| l.strip_prefix("0::")).unwrap();
        assert_eq!(mount.join(seen.trim_start_matches('/')), cg);
        child.close().await.unwrap();
        assert!(!cg.exists());
        assert!(sup.shutdown().await.is_clean());
    });
}

#[test]
fn output_does_not_hang_on_an_escapee_holding_stdout() {
    with_tier("output", async |sup, _mount| {
        let n = secs(90);
        let t = std::time::Instant::now();
        // The escapee keeps stdout open: without the tier, the read waits for it.
        let out = sup
            .command("sh")
            .args(["-c", &format!("setsid sleep {n} & sleep 0.2; echo hi")])
            .output()
            .await
            .unwrap();
        assert_eq!(out.stdout, b"hi\n");
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        assert!(sleeps(&n).is_empty(), "the escapee outlived output()");
        assert!(sup.shutdown().await.is_clean());
    });
}

#[test]
fn many_children_released_together_leave_no_cgroup() {
    with_tier("many", async |sup, mount| {
        let root = sup_cgroup(&sup);
        let cgs = sup
            .scope("fleet", async |s| {
                let mut cgs = Vec::new();
                for i in 0..8 {
                    let child = escape_artist(&s, 100 + 3 * i);
                    let cg = child.cgroup().unwrap();
                    wait_started(100 + 3 * i, &cg, &mount);
                    cgs.push(cg);
                    std::mem::forget(child);
                }
                cgs
            })
            .await
            .unwrap();
        for (i, cg) in cgs.iter().enumerate() {
            assert_gone(100 + 3 * i as u32, cg, "many");
        }
        assert_eq!(sub_cgroups(&root), 0);
        let report = sup.shutdown().await;
        assert!(report.failures.is_empty(), "{report}");
    });
}

#[test]
fn required_starts_with_the_cgroup_tier_here() {
    let _serial = serial();
    if own_cgroup_dir().is_none() {
        eprintln!("skipped: no writable cgroup2");
        return;
    }
    rt().block_on(async {
        let Some(probe) = start() else { return };
        probe.shutdown().await;
        let sup = Supervisor::builder()
            .containment(Containment::Required)
            .start()
            .unwrap();
        let path = sup_cgroup(&sup);
        assert!(path.is_dir());
        let report = sup.shutdown().await;
        assert!(report.is_clean(), "{report}");
        assert!(
            report.to_string().contains("containment: cgroup ("),
            "{report}"
        );
        assert!(!path.exists());
    });
}

#[test]
fn a_live_child_holds_as_many_fds_in_the_cgroup_tier_as_in_the_group_tier() {
    with_tier("fds", async |sup, _mount| {
        let group = Supervisor::builder().start().unwrap();
        group.reaped_at_start().await;
        sup.reaped_at_start().await;
        // Warm up both (tokio's SIGCHLD driver opens its fds at the first spawn).
        group.command("true").status().await.unwrap();
        sup.command("true").status().await.unwrap();
        // The least of a few tries: a group scan on the blocking pool may hold a /proc
        // fd for a moment.
        let held = async |s: &Supervisor| {
            let mut least = usize::MAX;
            for _ in 0..5 {
                let before = custodian_suite::open_fds();
                let child = s.command("sleep").arg("1000").spawn().unwrap();
                least = least.min(custodian_suite::open_fds().saturating_sub(before));
                child.close().await.unwrap();
                custodian_suite::assert_fds_settle(before, "fds left after close");
            }
            least
        };
        let (g, c) = (held(&group).await, held(&sup).await);
        assert_eq!(c, g, "the cgroup tier holds more fds per child");
        assert!(group.shutdown().await.is_clean());
        assert!(sup.shutdown().await.is_clean());
    });
}

#[test]
fn without_a_runtime_the_last_drop_kills_and_removes_inline() {
    let _serial = serial();
    let Some(parent) = own_cgroup_dir() else {
        eprintln!("skipped: no writable cgroup2");
        return;
    };
    let runtime = rt();
    let started = runtime.block_on(async {
        let sup = start()?;
        let child = escape_artist(&sup.root(), 130);
        let cg = child.cgroup().unwrap();
        wait_started(130, &cg, &mount_dir());
        std::mem::forget(child);
        Some((sup, cg))
    });
    let Some((sup, cg)) = started else { return };
    let root = sup_cgroup(&sup);
    // The runtime is gone: its blocking pool drops the clean-up unrun, and the drop
    // runs it on this thread.
    drop(runtime);
    drop(sup);
    assert!(!root.exists(), "the supervisor's cgroup is left");
    assert_gone(130, &cg, "no runtime");
    assert_eq!(our_cgroups(&parent), Vec::<String>::new());
}

#[test]
fn a_spawn_that_fails_leaves_no_cgroup() {
    with_tier("failed spawn", async |sup, _mount| {
        let root = sup_cgroup(&sup);
        let err = sup.command("/no/such/program").spawn().unwrap_err();
        assert_eq!(err.operation(), tokio_custodian::Operation::Spawn);
        assert_eq!(err.io_kind(), Some(std::io::ErrorKind::NotFound));
        assert_eq!(sub_cgroups(&root), 0, "the failed child's cgroup is left");
        assert_eq!(zombie_children(), Vec::<u32>::new());
        assert!(sup.shutdown().await.is_clean());
    });
}
