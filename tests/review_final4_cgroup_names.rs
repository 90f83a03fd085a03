//! Review of the supervisor cgroup's new name, `custodian-<pid>-<start>-<pidns>-<random>`,
//! on the intent record's path (`recovery/cgroup.rs` `remove_intended`): a dead owner's
//! intent leads only to an empty cgroup named with that owner's pid *and* start time and
//! this pid namespace, spelled as custodian spells them; another start time or namespace,
//! another spelling (a leading zero, a sign), an extra field, an overflow, or the old
//! shape with another pid are left alone. The old shape with the owner's pid
//! (`custodian-<pid>-<random>`, earlier versions) is still taken.

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

/// A journal of the dead owner `pid` with start time 7 (this boot) and one intent
/// record for `cgroup`.
fn write_journal(state: &Path, pid: u32, cgroup: &Path) {
    std::fs::create_dir_all(state).unwrap();
    std::fs::set_permissions(state, std::fs::Permissions::from_mode(0o700)).unwrap();
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    let mut owner = vec![1];
    owner.extend(pid.to_le_bytes());
    owner.extend(7u64.to_le_bytes());
    owner.extend(boot.trim().as_bytes());
    let mut intent = vec![12];
    intent.extend(cgroup.as_os_str().as_encoded_bytes());
    let path = state.join(format!("{pid}-7-0123456789abcdef.journal"));
    std::fs::write(&path, [frame(&owner), frame(&intent)].concat()).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
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
    let probe = dir.join(format!("names-probe-{}", std::process::id()));
    std::fs::create_dir(&probe).ok()?;
    std::fs::remove_dir(&probe).ok()?;
    Some(dir)
}

#[test]
fn an_intent_leads_only_to_the_owner_s_pid_and_start_as_custodian_spells_them() {
    let Some(own) = own_cgroup() else {
        eprintln!("skipped: needs a writable cgroup2 mount");
        return;
    };
    let pid = dead_pid();
    let hex = "00000000deadf4a0";
    // This pid namespace, as the name gives it: the inode of `/proc/self/ns/pid`.
    let ns = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/self/ns/pid").map_or(0, |m| m.ino())
    };
    // (name, removed?)
    let cases = [
        (format!("custodian-{pid}-7-{ns}-{hex}"), true),
        (format!("custodian-{pid}-{hex}"), true), // an earlier version's name
        (format!("custodian-{pid}-7-{hex}"), false), // no namespace (9264c5e's shape)
        (format!("custodian-{pid}-8-{ns}-{hex}"), false),
        (format!("custodian-{pid}-7-{}-{hex}", ns + 1), false), // another namespace
        (format!("custodian-{pid}-07-{ns}-{hex}"), false),
        (format!("custodian-{pid}-+7-{ns}-{hex}"), false),
        (format!("custodian-{pid}-7-0{ns}-{hex}"), false),
        (format!("custodian-{pid}-7-7-{ns}-{hex}"), false),
        (
            format!("custodian-{pid}-18446744073709551623-{ns}-{hex}"),
            false,
        ), // 7 + 2^64
        (
            format!("custodian-{}-7-{ns}-{hex}", u64::from(pid) + (1 << 32)),
            false,
        ),
        (format!("custodian-{}-{hex}", pid + 1), false),
    ];
    let scratch = scratch_dir("final4-cgroup-names");
    let mut failed = Vec::new();
    for (i, (name, removed)) in cases.iter().enumerate() {
        let cg = own.join(name);
        std::fs::create_dir(&cg).unwrap();
        let state = scratch.join(format!("state-{i}"));
        write_journal(&state, pid, &cg);
        let report = tokio_custodian::Recovery::new()
            .state_dir(&state)
            .run()
            .unwrap()
            .journals
            .unwrap();
        let gone = !cg.exists();
        let _ = std::fs::remove_dir(&cg);
        if gone != *removed {
            failed.push(format!("{name}: removed {gone}: {report}"));
        }
    }
    std::fs::remove_dir_all(&scratch).unwrap();
    assert!(failed.is_empty(), "{failed:#?}");
}
