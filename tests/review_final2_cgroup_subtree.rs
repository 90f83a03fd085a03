//! Review: "a recorded cgroup is gone only on proof" (`sys/cgroup/remove.rs`) took for
//! proof that the nearest directory on the recorded path that exists is on the recorded
//! cgroup2 file system (its device). A sweeper's mount namespace can show that very file
//! system with another cgroup at the recorded path's place: a bind mount of a subtree
//! (`mount --bind /sys/fs/cgroup/some.slice /sys/fs/cgroup`, as sandboxes and container
//! runtimes do), or a cgroup namespace's own mount (a container sees its cgroup as `/`).
//! There "nothing at the path" is just as blind as without cgroup2, yet it read as gone:
//! the journal, the only record of the cgroup and its escapee, was dropped with a clean
//! report, and the escapee ran on for ever. Now a root sweeper asks the file system for
//! the recorded cgroup by its identity (`open_by_handle_at`: a cgroup's file handle is
//! its id, its inode number): found, it is not gone, whatever the path shows here; a
//! stale handle is the proof that it is.
//!
//! Provoked with `unshare -m` and a bind mount of a sibling cgroup over this process's
//! cgroup directory. Needs root and a writable cgroup2 mount; says so and returns
//! otherwise.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use custodian_suite::journal_frame as frame;
use custodian_suite::{pid_running, poll_until, scratch_dir, serial};
use tokio_custodian::SweepReport;

const ROLE: &str = "CUSTODIAN_REVIEW_FINAL2_CG_BIND";
const STATE: &str = "CUSTODIAN_REVIEW_FINAL2_CG_STATE";

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
    let probe = dir.join(format!("review-final2-cg-probe-{}", std::process::id()));
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

/// The sweep in a private mount namespace where `ROLE`'s `SIBLING:OWN` is bind-mounted
/// (a sibling cgroup seen at this process's cgroup's place); does nothing otherwise.
#[test]
#[ignore = "run by the other test, in another process"]
fn role() {
    let Ok(pair) = std::env::var(ROLE) else {
        return;
    };
    let (sibling, own) = pair.split_once(':').unwrap();
    let ok = Command::new("mount")
        .args(["--bind", sibling, own])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "mount --bind {sibling} {own}");
    let report = sweep(Path::new(&std::env::var(STATE).unwrap()));
    println!("REPORT {}", serde_json::to_string(&report).unwrap());
}

/// The sweep of `state` in a private mount namespace that shows `sibling` at `own`.
fn subtree_sweep(sibling: &Path, own: &Path, state: &Path) -> SweepReport {
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private"])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "role", "--ignored", "--nocapture"])
        .env(ROLE, format!("{}:{}", sibling.display(), own.display()))
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

#[test]
fn a_cgroup_hidden_by_a_bind_mounted_subtree_is_not_taken_for_gone() {
    let _s = serial();
    let Some((_mount, own)) = cgroup2() else {
        eprintln!("skipped: needs root and a writable cgroup2 mount");
        return;
    };
    let scratch = scratch_dir("review-final2-cg-bind");
    let state = scratch.join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    let sibling = own.join(format!("review-final2-sibling-{}", std::process::id()));
    std::fs::create_dir(&sibling).unwrap();
    // The dead owner's cgroup, named as the tier names it, with an escapee in a child
    // cgroup: its own session, SIGTERM ignored.
    let sup = own.join(format!("custodian-{}-00000000deadf2b0", std::process::id()));
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
    let blind = subtree_sweep(&sibling, &own, &state);
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
    let _ = std::fs::remove_dir(&sibling);
    assert!(
        kept,
        "the journal was dropped by a sweep that saw another cgroup at the path: {blind}"
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

#[test]
fn a_removed_cgroup_is_still_gone_when_its_parent_is_gone_too() {
    let _s = serial();
    let Some((_mount, own)) = cgroup2() else {
        eprintln!("skipped: needs root and a writable cgroup2 mount");
        return;
    };
    let scratch = scratch_dir("review-final2-cg-gone");
    let state = scratch.join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    // A session's cgroup holding the owner's, both removed since (the session ended).
    let session = own.join(format!("review-final2-session-{}", std::process::id()));
    let sup = session.join(format!("custodian-{}-00000000deadf2b1", std::process::id()));
    std::fs::create_dir_all(&sup).unwrap();
    let journal = write_journal(&state, &sup, false);
    std::fs::remove_dir(&sup).unwrap();
    std::fs::remove_dir(&session).unwrap();
    let report = sweep(&state);
    assert!(report.is_clean(), "{report}");
    assert!(
        !journal.exists(),
        "a journal kept for a cgroup that is gone: {report}"
    );
    std::fs::remove_dir_all(&scratch).unwrap();
}
