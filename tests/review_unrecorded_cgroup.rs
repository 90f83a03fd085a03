//! Review: recovery once removed a dead owner's *unrecorded* empty cgroup
//! (`custodian-<pid>-<16 hex>`, when "no process has that pid"); that removed a live
//! supervisor's cgroup made in another pid namespace sharing the sweeper's cgroup
//! directory, whose name carries its pid in *its* namespace. Recovery now removes only
//! what a journal names (the cgroup's intent record, `crash_cgroup_intent.rs`).
//!
//! Provoked with `unshare -p -f --mount-proc` (no cgroup namespace, so the new namespace
//! shares this process's cgroup) and `ns_last_pid`: a process in the new namespace gets
//! exactly the pid of a dead journalled owner and makes its (empty) supervisor cgroup,
//! as a live supervisor that has no child running at the moment would have.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use custodian_suite::journal_frame as frame;
use custodian_suite::{poll_until, scratch_dir, serial};

/// This process's cgroup v2 directory, if it has one it can write to.
fn own_cgroup_dir() -> Option<PathBuf> {
    let cg = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let rel = cg.lines().find_map(|l| l.strip_prefix("0::"))?.to_owned();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mount = mounts.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        let fstype = post.split(' ').next()?;
        let root = pre.split(' ').nth(3)?;
        let point = pre.split(' ').nth(4)?;
        (fstype == "cgroup2" && root == "/").then(|| PathBuf::from(point))
    })?;
    let dir = mount.join(rel.trim_start_matches('/'));
    let probe = dir.join(format!("review-probe-{}", std::process::id()));
    std::fs::create_dir(&probe).ok()?;
    std::fs::remove_dir(&probe).ok()?;
    Some(dir)
}

fn private_dir(path: &Path) -> PathBuf {
    std::fs::create_dir_all(path).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).unwrap();
    path.to_path_buf()
}

/// A journal of an owner `pid` (start time 1, this boot) that is dead: no process has
/// the pid in this namespace.
fn write_dead_journal(state: &Path, pid: u32) {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    let mut p = vec![1];
    p.extend(pid.to_le_bytes());
    p.extend(1u64.to_le_bytes());
    p.extend(boot.trim().as_bytes());
    let path = state.join(format!("{pid}-1-0123456789abcdef.journal"));
    std::fs::write(&path, frame(&p)).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// Killed (with its namespace) and reaped when dropped.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_live_supervisors_empty_cgroup_in_another_pid_namespace_is_not_removed() {
    let _s = serial();
    let Some(own) = own_cgroup_dir() else {
        eprintln!("skipped: no writable cgroup2");
        return;
    };
    // A pid no process has in this namespace now, above what a fresh namespace uses.
    let dead = loop {
        let mut c = Command::new("true").spawn().unwrap();
        let pid = c.id();
        c.wait().unwrap();
        if pid > 100 && !Path::new(&format!("/proc/{pid}")).exists() {
            break pid;
        }
    };
    let name = format!("custodian-{dead}-0123456789abcdef");
    let theirs = own.join(&name);
    // The "live supervisor": pid `dead` in a new pid namespace, its empty cgroup made by
    // it in the shared directory, then waiting (as a supervisor between children does).
    let script = format!(
        "echo {} > /proc/sys/kernel/ns_last_pid && sh -c '[ $$ = {dead} ] && mkdir {} && echo ready && exec sleep 1000'",
        dead - 1,
        theirs.display()
    );
    let spawned = Command::new("unshare")
        .args([
            "-p",
            "-f",
            "--kill-child",
            "--mount-proc",
            "sh",
            "-c",
            &script,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = spawned else {
        eprintln!("skipped: no unshare");
        return;
    };
    let mut out = child.stdout.take().unwrap();
    let live = Reaped(child);
    let mut ready = String::new();
    let _ = std::io::Read::read_to_string(&mut std::io::Read::take(&mut out, 6), &mut ready);
    if ready.trim() != "ready" {
        eprintln!("skipped: cannot make a pid namespace with a chosen pid here");
        return;
    }
    assert!(!Path::new(&format!("/proc/{dead}")).exists());
    assert!(theirs.exists());

    let scratch = scratch_dir("review-unrecorded-cg");
    let state = private_dir(&scratch.join("state"));
    write_dead_journal(&state, dead);
    let report = tokio_custodian::Recovery::new()
        .state_dir(&state)
        .grace(Duration::from_millis(100))
        .run()
        .unwrap()
        .journals
        .unwrap();
    let kept = theirs.exists();
    drop(live);
    poll_until(Duration::from_secs(5), || {
        std::fs::remove_dir(&theirs).is_ok() || !theirs.exists()
    });
    std::fs::remove_dir_all(&scratch).unwrap();
    assert_eq!(report.dead_owners.len(), 1, "{report}");
    assert!(
        kept,
        "a live supervisor's cgroup (pid {dead} in its own pid namespace) was removed: {report}"
    );
}
