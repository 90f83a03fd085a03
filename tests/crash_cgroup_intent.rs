//! A dead owner's cgroup that its journal never recorded as created (the owner was
//! killed between the `mkdir` and the record) is found by the intent record written
//! right before the `mkdir`, never by its name and a pid alone: an empty cgroup named
//! `custodian-<a dead owner's pid>-...` that no record names may be a live supervisor's of
//! another pid namespace sharing the cgroup directory, and is left alone.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use custodian_suite::journal_frame as frame;
use custodian_suite::scratch_dir;

/// A pid no process has now: a child that has exited and been reaped.
fn dead_pid() -> u32 {
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let pid = gone.id();
    gone.wait().unwrap();
    pid
}

/// A journal of a dead owner `pid` (start time 1, this boot) with `records` after it.
fn write_journal(state: &Path, pid: u32, records: &[Vec<u8>]) -> PathBuf {
    std::fs::create_dir_all(state).unwrap();
    std::fs::set_permissions(state, std::fs::Permissions::from_mode(0o700)).unwrap();
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    let mut owner = vec![1];
    owner.extend(pid.to_le_bytes());
    owner.extend(1u64.to_le_bytes());
    owner.extend(boot.trim().as_bytes());
    let path = state.join(format!("{pid}-1-0123456789abcdef.journal"));
    std::fs::write(
        &path,
        [vec![frame(&owner)], records.to_vec()].concat().concat(),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// The intent record (tag 12) of `path`.
fn intent(path: &Path) -> Vec<u8> {
    let mut p = vec![12];
    p.extend(path.as_os_str().as_encoded_bytes());
    frame(&p)
}

/// This process's cgroup2 directory, if it can make cgroups in it (root, cgroup2).
fn own_cgroup() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mount = mounts.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        post.starts_with("cgroup2 ")
            .then(|| pre.split(' ').nth(4).map(PathBuf::from))?
    })?;
    let cg = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let rel = cg.lines().find_map(|l| l.strip_prefix("0::"))?;
    let dir = mount.join(rel.trim_start_matches('/'));
    let probe = dir.join(format!("intent-probe-{}", std::process::id()));
    std::fs::create_dir(&probe).ok()?;
    std::fs::remove_dir(&probe).ok()?;
    Some(dir)
}

fn recover(state: &Path) -> tokio_custodian::SweepReport {
    let recovery = tokio_custodian::Recovery::new().state_dir(state);
    recovery.run().unwrap().journals.unwrap()
}

#[test]
fn only_the_intended_cgroup_is_removed_and_only_if_empty() {
    let Some(own) = own_cgroup() else {
        eprintln!("skipped: needs a writable cgroup2 mount");
        return;
    };
    let pid = dead_pid();
    let name = |tag: &str| own.join(format!("custodian-{pid}-{tag:0>16}"));
    // A live supervisor's cgroup of another pid namespace, whose pid number is the dead
    // owner's: named like the dead owner's, empty, and named by no record.
    let other = name("a1");
    let intended = name("b2");
    let busy = name("c3");
    for d in [&other, &intended, &busy] {
        std::fs::create_dir(d).unwrap();
    }
    let mut member = std::process::Command::new("sleep")
        .arg("1000")
        .spawn()
        .unwrap();
    std::fs::write(busy.join("cgroup.procs"), member.id().to_string()).unwrap();
    let scratch = scratch_dir("cgroup-intent");
    let (one, two) = (scratch.join("one"), scratch.join("two"));
    let j1 = write_journal(&one, pid, &[intent(&intended)]);
    let report = recover(&one);
    // A forged (or impossible) intent naming a populated cgroup: left alone.
    let j2 = write_journal(&two, pid, &[intent(&busy)]);
    let report2 = recover(&two);
    let (other_left, busy_left) = (other.exists(), busy.exists());
    let intended_left = intended.exists();
    let alive = member.try_wait().unwrap().is_none();
    let _ = member.kill();
    let _ = member.wait();
    for d in [&other, &intended, &busy] {
        let _ = std::fs::remove_dir(d);
    }
    std::fs::remove_dir_all(&scratch).unwrap();
    assert_eq!(report.cgroups, vec![intended.clone()], "{report}");
    assert!(!intended_left, "{report}");
    assert!(other_left, "a cgroup no record names was removed: {report}");
    assert!(!j1.exists() && !j2.exists());
    assert!(report2.cgroups.is_empty(), "{report2}");
    assert!(
        busy_left && alive,
        "a populated cgroup was touched: {report2}"
    );
}
