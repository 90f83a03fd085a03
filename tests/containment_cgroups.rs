//! The cgroup containment tier (issue 19) on real processes, on this machine's cgroup2
//! mount: where its children are put and what it costs. A child is in its cgroup before
//! it runs any code; output does not hang on an escapee holding stdout; many children
//! released together leave no cgroup; `Required` starts with the tier here; a live child
//! holds as many fds as on the group tier; a spawn that fails leaves no cgroup.
//!
//! The release paths are in `containment_release.rs`; the scaffolding in
//! `tests/support/containment.rs`. Skipped, saying "skipped: no writable cgroup2", where
//! the tier is not available.

use std::time::Duration;

use custodian_suite::containment::{
    assert_gone, escape_artist, own_cgroup_dir, rt, secs, start, sub_cgroups, sup_cgroup,
    wait_started, with_tier,
};
use custodian_suite::{serial, sleeps, zombie_children};
use tokio_custodian::{Containment, Supervisor};

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
