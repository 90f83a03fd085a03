//! Review: a dead owner's recorded cgroup was taken for gone whenever its path gave
//! `ENOENT`, and its journal, the only record of the processes in it, was dropped with a
//! clean report. A path means something only in a mount namespace that has the cgroup2
//! file system where the owner had it: a sweep run where it is not mounted there (a
//! private mount namespace, a container's or a sandboxed service's view, a hybrid host's
//! `/sys/fs/cgroup/unified` seen from a unified one) found "nothing at the path", and the
//! cgroup with its escapee (`setsid`, SIGTERM ignored) ran on for ever, with no record left
//! for a sweep that could reach it. Now "gone" needs proof: the nearest existing directory
//! on the recorded path must be on the recorded cgroup2 file system (its device); else
//! the journal is kept and the report says why (not clean), and a sweep that can see the
//! cgroup kills it.
//!
//! Provoked with `unshare -m` and `umount -l` of the cgroup2 mount in the new namespace.
//! Needs root and a writable cgroup2 mount; says so and returns otherwise.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use custodian_suite::journal_frame as frame;
use custodian_suite::{pid_running, poll_until, scratch_dir, serial};
use tokio_custodian::SweepReport;

const ROLE: &str = "CUSTODIAN_REVIEW_CG_UNREACH_ROLE";
const STATE: &str = "CUSTODIAN_REVIEW_CG_UNREACH_STATE";

/// The cgroup2 mount point and this process's cgroup directory, if it can make cgroups
/// in it (root, cgroup2).
fn cgroup2() -> Option<(PathBuf, PathBuf)> {
    if !rustix::process::geteuid().is_root() {
        return None;
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mount = mounts.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        post.starts_with("cgroup2 ")
            .then(|| pre.split(' ').nth(4).map(PathBuf::from))?
    })?;
    let cg = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let rel = cg.lines().find_map(|l| l.strip_prefix("0::"))?;
    let dir = mount.join(rel.trim_start_matches('/'));
    let probe = dir.join(format!("review-cg-unreach-probe-{}", std::process::id()));
    std::fs::create_dir(&probe).ok()?;
    std::fs::remove_dir(&probe).ok()?;
    Some((mount, dir))
}

/// A dead owner's journal (this process's pid, start time 1, this boot) recording the
/// cgroup at `cgroup` with its identity, or (`intent`) only the intent to make it.
fn write_journal(state: &Path, cgroup: &Path, intent: bool) -> PathBuf {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    let mut owner = vec![1];
    owner.extend(std::process::id().to_le_bytes());
    owner.extend(1u64.to_le_bytes());
    owner.extend(boot.trim().as_bytes());
    let md = std::fs::metadata(cgroup).unwrap();
    let mut rec = vec![if intent { 12 } else { 11 }];
    if !intent {
        rec.extend(md.dev().to_le_bytes());
        rec.extend(md.ino().to_le_bytes());
    }
    rec.extend(cgroup.as_os_str().as_encoded_bytes());
    let path = state.join(format!("{}-1-0123456789abcdef.journal", std::process::id()));
    std::fs::write(&path, [frame(&owner), frame(&rec)].concat()).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

fn sweep(state: &Path) -> SweepReport {
    let recovery = tokio_custodian::Recovery::new().state_dir(state);
    let report = recovery.grace(Duration::from_millis(200)).run().unwrap();
    report.journals.expect("a state dir was given")
}

/// The sweep in a private mount namespace without the cgroup2 mount; does nothing
/// otherwise.
#[test]
#[ignore = "run by the other test, in another process"]
fn role() {
    let Ok(mount) = std::env::var(ROLE) else {
        return;
    };
    let ok = Command::new("umount")
        .arg("-l")
        .arg(&mount)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "umount {mount}");
    assert!(!Path::new(&mount).join("cgroup.procs").exists());
    let report = sweep(Path::new(&std::env::var(STATE).unwrap()));
    println!("REPORT {}", serde_json::to_string(&report).unwrap());
}

/// The sweep of `state` in a private mount namespace without the cgroup2 `mount`.
fn blind_sweep(mount: &Path, state: &Path) -> SweepReport {
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private"])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "role", "--ignored", "--nocapture"])
        .env(ROLE, mount)
        .env(STATE, state)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let json = text
        .lines()
        .find_map(|l| l.split_once("REPORT ").map(|(_, r)| r))
        .unwrap_or_else(|| panic!("no report ({}):\n{text}", out.status));
    serde_json::from_str(json).unwrap()
}

/// The same for a cgroup only intended (the owner died between its `mkdir` and its
/// record): an empty cgroup, left for good with its journal dropped.
#[test]
fn an_intended_cgroup_whose_path_does_not_reach_cgroup2_here_is_not_taken_for_gone() {
    let Some((mount, own)) = cgroup2() else {
        eprintln!("skipped: needs root and a writable cgroup2 mount");
        return;
    };
    let _s = serial();
    let scratch = scratch_dir("review-cg-unreach-intent");
    let state = scratch.join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    let sup = own.join(format!("custodian-{}-00000000deadc9a1", std::process::id()));
    std::fs::create_dir(&sup).unwrap();
    let journal = write_journal(&state, &sup, true);
    let blind = blind_sweep(&mount, &state);
    let kept = journal.exists();
    let seeing = sweep(&state);
    let left = sup.exists();
    let _ = std::fs::remove_dir(&sup);
    assert!(
        kept,
        "the journal was dropped by a sweep that could not see the cgroup: {blind}"
    );
    assert!(!blind.is_clean(), "{blind}");
    assert!(!left, "the intended cgroup was left for good: {seeing}");
    assert_eq!(seeing.cgroups, vec![sup.clone()], "{seeing}");
    assert!(!journal.exists(), "{seeing}");
    std::fs::remove_dir_all(&scratch).unwrap();
}

#[test]
fn a_cgroup_whose_path_does_not_reach_cgroup2_here_is_not_taken_for_gone() {
    let Some((mount, own)) = cgroup2() else {
        eprintln!("skipped: needs root and a writable cgroup2 mount");
        return;
    };
    let _s = serial();
    let scratch = scratch_dir("review-cg-unreach");
    let state = scratch.join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    // The dead owner's cgroup, named as the tier names it, with an escapee in a child
    // cgroup: its own session, SIGTERM ignored.
    let sup = own.join(format!("custodian-{}-00000000deadc9a0", std::process::id()));
    let child = sup.join("child-1");
    std::fs::create_dir_all(&child).unwrap();
    let mut escapee = Command::new("setsid")
        .args([
            "sh",
            "-c",
            "echo $$ > \"$1\" && trap '' TERM && exec sleep 1000",
            "sh",
        ])
        .arg(child.join("cgroup.procs"))
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let pid = escapee.id();
    assert!(poll_until(Duration::from_secs(5), || {
        std::fs::read_to_string(child.join("cgroup.procs"))
            .unwrap()
            .lines()
            .any(|l| l == pid.to_string())
    }));
    let journal = write_journal(&state, &sup, false);
    let blind = blind_sweep(&mount, &state);
    let kept = journal.exists();
    // A sweep that sees the cgroup: it must still have the record to act on.
    let seeing = sweep(&state);
    let stopped = poll_until(Duration::from_secs(5), || {
        escapee.try_wait().unwrap().is_some()
    });
    if !stopped {
        let _ = std::fs::write(sup.join("cgroup.kill"), b"1");
        let _ = escapee.wait();
    }
    let _ = poll_until(Duration::from_secs(5), || {
        std::fs::read_to_string(sup.join("cgroup.events"))
            .map_or(true, |e| e.contains("populated 0"))
    });
    let _ = std::fs::remove_dir(&child);
    let _ = std::fs::remove_dir(&sup);
    assert!(
        kept,
        "the journal was dropped by a sweep that could not see the cgroup: {blind}"
    );
    assert!(!blind.is_clean(), "{blind}");
    assert!(
        stopped,
        "the escapee outlived every sweep, its record gone: {seeing}"
    );
    assert!(!pid_running(pid));
    assert_eq!(seeing.cgroups, vec![sup.clone()], "{seeing}");
    assert!(!journal.exists(), "{seeing}");
    std::fs::remove_dir_all(&scratch).unwrap();
}
