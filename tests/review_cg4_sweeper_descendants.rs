//! Review of 1058ba6 (the cgroup tier's children carry no owner marker; recovery stops
//! a dead owner's cgroup members): a live supervisor X, started by a dead owner D (so
//! inside D's tree), sweeps D's journal while its own children run. Its children are
//! not D's to stop: before 1058ba6 they carried X's marker (X overwrote the one it had
//! inherited from D) and led their own groups, so D's sweep never found them, and the
//! cgroup kill was refused (the sweeper inside). After it:
//! - D in the cgroup tier: X's children are in D's cgroup subtree (X is in D's child's
//!   cgroup), so the cgroup scan found them and X's own sweep SIGTERMed and SIGKILLed
//!   them behind X's back;
//! - D in the process-group tier (its children carry its marker), X in the cgroup tier:
//!   X's children no longer got a marker of their own, so they inherited D's from X's
//!   environment and D's marker scan killed them.
//!
//! The test re-runs its own binary in two roles (D, then X as D's managed child);
//! skipped, saying so, without a writable cgroup2.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use custodian_suite::{poll_until, scratch_dir, serial};
use tokio_custodian::{Containment, ContainmentTier, Recovery, Supervisor};

const ROLE: &str = "REVIEW_CG4_ROLE";
const DIR: &str = "REVIEW_CG4_DIR";

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn cgroup_available() -> bool {
    rt().block_on(async {
        let sup = Supervisor::builder()
            .containment(Containment::Auto)
            .reap_abandoned(false)
            .start()
            .unwrap();
        let tier = sup.stats().containment;
        assert!(sup.shutdown().await.is_clean());
        let ok = matches!(tier, ContainmentTier::Cgroup { .. });
        if !ok {
            eprintln!("skipped: no writable cgroup2 ({tier})");
        }
        ok
    })
}

fn tier(name: &str) -> Containment {
    match name {
        "required" => Containment::Required,
        "auto" => Containment::Auto,
        _ => Containment::Never,
    }
}

fn private_dir(p: &Path) {
    std::fs::create_dir_all(p).unwrap();
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o700)).unwrap();
}

fn write_file(p: &Path, text: &str) {
    let tmp = p.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, p).unwrap();
}

fn self_args() -> [&'static str; 4] {
    ["--exact", "role", "--nocapture", "--test-threads=1"]
}

/// The roles: D (a journalled supervisor that runs X) and X (a journalled supervisor
/// with a child, that sweeps D's state dir when told to). Does nothing in a plain run.
#[test]
fn role() {
    let (Ok(role), Some(dir)) = (std::env::var(ROLE), std::env::var_os(DIR)) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let exe = std::env::current_exe().unwrap();
    let (kind, tiers) = role.split_once(':').unwrap();
    let (d_tier, x_tier) = tiers.split_once(',').unwrap();
    rt().block_on(async {
        match kind {
            "d" => {
                let sup = Supervisor::builder()
                    .state_dir(dir.join("d-state"))
                    .temp_base(dir.join("tmp"))
                    .reap_abandoned(false)
                    .sweep_at_start(false)
                    .containment(tier(d_tier))
                    .start()
                    .unwrap();
                let x = sup
                    .command(&exe)
                    .args(self_args())
                    .env(ROLE, format!("x:{tiers}"))
                    .spawn()
                    .unwrap();
                write_file(&dir.join("x-pid"), &x.id().unwrap().to_string());
                std::future::pending::<()>().await;
            }
            _ => {
                let sup = Supervisor::builder()
                    .state_dir(dir.join("x-state"))
                    .temp_base(dir.join("tmp"))
                    .reap_abandoned(false)
                    .containment(tier(x_tier))
                    .start()
                    .unwrap();
                let mut child = sup.command("sleep").arg("1000").spawn().unwrap();
                let pid = child.id().unwrap();
                write_file(&dir.join("x-child"), &pid.to_string());
                while !dir.join("go").exists() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                let report = Recovery::new()
                    .state_dir(dir.join("d-state"))
                    .grace(Duration::from_millis(300))
                    .run();
                tokio::time::sleep(Duration::from_millis(200)).await;
                let alive =
                    child.try_wait().unwrap().is_none() && custodian_suite::pid_running(pid);
                let text = match report {
                    Ok(r) => format!("{r}"),
                    Err(e) => format!("error: {e}"),
                };
                write_file(
                    &dir.join("result"),
                    &format!("{}\n{text}", if alive { "alive" } else { "dead" }),
                );
                let _ = sup.shutdown().await;
            }
        }
    });
}

fn read_pid(p: &Path) -> u32 {
    std::fs::read_to_string(p).unwrap().trim().parse().unwrap()
}

/// D in `d_tier`, X (D's child) in `x_tier`: X's child must outlive X's sweep of D.
fn the_sweepers_child_survives(tag: &str, d_tier: &str, x_tier: &str) {
    let _s = serial();
    if !cgroup_available() {
        return;
    }
    let dir = scratch_dir(tag);
    private_dir(&dir.join("d-state"));
    private_dir(&dir.join("x-state"));
    std::fs::create_dir(dir.join("tmp")).unwrap();
    let mut d = Command::new(std::env::current_exe().unwrap())
        .args(self_args())
        .env(ROLE, format!("d:{d_tier},{x_tier}"))
        .env(DIR, &dir)
        .env_remove("CUSTODIAN_OWNER")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let ready = poll_until(Duration::from_secs(20), || dir.join("x-child").exists());
    if !ready {
        let _ = d.kill();
        let _ = d.wait();
        panic!("X never started its child");
    }
    let x = read_pid(&dir.join("x-pid"));
    let x_child = read_pid(&dir.join("x-child"));
    // D dies; X and its child run on (no death signal asked for).
    d.kill().unwrap();
    d.wait().unwrap();
    std::fs::File::create(dir.join("go"))
        .unwrap()
        .flush()
        .unwrap();
    let done = poll_until(Duration::from_secs(30), || dir.join("result").exists());
    let result = std::fs::read_to_string(dir.join("result")).unwrap_or_default();
    // Clean up: X and its child, then D's leftovers from outside its tree.
    let _ = poll_until(Duration::from_secs(10), || !custodian_suite::pid_running(x));
    for pid in [x_child, x] {
        if custodian_suite::pid_running(pid) {
            let p = rustix::process::Pid::from_raw(pid as i32).unwrap();
            let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
        }
    }
    let outside = Recovery::new()
        .state_dir(dir.join("d-state"))
        .grace(Duration::from_millis(300))
        .run()
        .unwrap();
    eprintln!("X's sweep:\n{result}\n\nthe sweep from outside:\n{outside}");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(done, "X never reported");
    assert!(
        result.starts_with("alive"),
        "X's own sweep of D killed X's child {x_child}\n{result}"
    );
}

#[test]
fn d_in_the_cgroup_tier_x_s_child_is_not_stopped_by_x_s_sweep() {
    if std::env::var_os(ROLE).is_some() {
        return;
    }
    the_sweepers_child_survives("cg4-desc-cgroup", "required", "auto");
}

#[test]
fn d_in_the_group_tier_x_in_the_cgroup_tier_x_s_child_is_not_stopped() {
    if std::env::var_os(ROLE).is_some() {
        return;
    }
    the_sweepers_child_survives("cg4-desc-marker", "never", "required");
}
