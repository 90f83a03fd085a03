//! Review of crash recovery's kill of a dead owner's cgroup (journal tag 11) and of
//! `recover`'s dry run, with real cgroups, processes and forged journals: a recorded
//! cgroup is killed only when it is the one recorded, on cgroup2, this boot, not holding
//! the sweeper, and never on a dry run.
//!
//! Needs root and a writable cgroup2 mount; each test says so and returns otherwise.

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use custodian_suite::journal::{
    boot_id, child_record, owner_record, private_dir, start_time, write_journal,
};
use custodian_suite::journal_frame as frame;
use custodian_suite::{pid_running, poll_until, scratch_dir, serial};
use tokio_custodian::SweepReport;

const ROLE: &str = "CUSTODIAN_REVIEW_REC_ROLE";
const STATE: &str = "CUSTODIAN_REVIEW_REC_STATE";

/// An owner record of a dead owner: this process's pid, start time 1, of `boot`.
fn dead_owner(boot: &str) -> Vec<u8> {
    owner_record(std::process::id(), 1, boot)
}

/// A record with `tag` of `path`'s current identity (2: a root, 11: a cgroup).
fn path_record(tag: u8, path: &Path) -> Vec<u8> {
    let md = std::fs::symlink_metadata(path).unwrap();
    path_record_as(tag, path, (md.dev(), md.ino()))
}

fn path_record_as(tag: u8, path: &Path, (dev, ino): (u64, u64)) -> Vec<u8> {
    let mut p = vec![tag];
    p.extend(dev.to_le_bytes());
    p.extend(ino.to_le_bytes());
    p.extend(path.as_os_str().as_encoded_bytes());
    frame(&p)
}

/// This process's cgroup2 directory, if it can make cgroups in it (root, cgroup2).
fn own_cgroup() -> Option<PathBuf> {
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
    let probe = dir.join(format!("review-rec-probe-{}", std::process::id()));
    std::fs::create_dir(&probe).ok()?;
    std::fs::remove_dir(&probe).ok()?;
    Some(dir)
}

macro_rules! need_cgroup {
    () => {
        match own_cgroup() {
            Some(dir) => dir,
            None => {
                eprintln!("skipped: needs root and a writable cgroup2 mount");
                return;
            }
        }
    };
}

/// A supervisor cgroup's name as the cgroup tier makes it, `custodian-<pid>-<16 hex>`,
/// with this process's pid (the forged journals' owner) and 64 bits derived from `tag`.
fn supervisor_name(tag: &str) -> String {
    let h = tag.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    format!("custodian-{}-{h:016x}", std::process::id())
}

/// A dead owner's cgroup as the cgroup tier makes it: `custodian-<pid>-<hex>` with a
/// `child-1` below, and a member in it that ignores SIGTERM.
struct DeadTree {
    sup: PathBuf,
    member: std::process::Child,
    grandchild: u32,
}

impl DeadTree {
    fn new(own: &Path, tag: &str) -> Self {
        let sup = own.join(supervisor_name(tag));
        let child = sup.join("child-1");
        std::fs::create_dir_all(&child).unwrap();
        let procs = child.join("cgroup.procs");
        // SIGTERM ignored across the `exec`: only the cgroup's kill ends it.
        let member = Command::new("sh")
            .args([
                "-c",
                "echo $$ > \"$1\" && trap '' TERM && exec sleep 1000",
                "sh",
            ])
            .arg(&procs)
            .spawn()
            .unwrap();
        let grandchild = member.id();
        assert!(
            poll_until(Duration::from_secs(5), || {
                std::fs::read_to_string(&procs)
                    .unwrap()
                    .lines()
                    .any(|l| l == grandchild.to_string())
            }),
            "the member did not enter its cgroup"
        );
        Self {
            sup,
            member,
            grandchild,
        }
    }

    fn alive(&mut self) -> bool {
        self.member.try_wait().unwrap().is_none() && pid_running(self.grandchild)
    }
}

impl Drop for DeadTree {
    fn drop(&mut self) {
        if self.sup.exists() {
            let _ = std::fs::write(self.sup.join("cgroup.kill"), b"1");
        }
        let _ = self.member.kill();
        let _ = self.member.wait();
        let _ = poll_until(Duration::from_secs(5), || {
            std::fs::read_to_string(self.sup.join("cgroup.events"))
                .map_or(true, |e| e.contains("populated 0"))
        });
        let _ = std::fs::remove_dir(self.sup.join("child-1"));
        let _ = std::fs::remove_dir(&self.sup);
    }
}

fn sweep(state: &Path) -> SweepReport {
    let recovery = tokio_custodian::Recovery::new().state_dir(state);
    let report = recovery.grace(Duration::from_secs(1)).run().unwrap();
    report.journals.expect("a state dir was given")
}

/// The parts run in another process; does nothing otherwise.
#[test]
#[ignore = "run by the other tests, in another process"]
fn role() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    match role.as_str() {
        "sweep" => {
            let report = sweep(Path::new(&std::env::var(STATE).unwrap()));
            println!("REPORT {}", serde_json::to_string(&report).unwrap());
        }
        other => panic!("unknown role {other}"),
    }
}

/// A dry run in the presence of a dead owner whose cgroup, recorded child and root all
/// still exist: nothing is signalled or removed; the real run then does it all.
#[test]
fn a_dry_run_signals_and_removes_nothing_of_a_dead_owner() {
    let own = need_cgroup!();
    let _s = serial();
    let scratch = scratch_dir("review-rec-dry");
    let state = private_dir(&scratch.join("state"));
    let root = private_dir(&scratch.join(format!("custodian-{}", "d".repeat(32))));
    std::fs::write(root.join("inside"), b"x").unwrap();
    let mut tree = DeadTree::new(&own, "dry");
    let mut leader = Command::new("sleep")
        .arg("1000")
        .process_group(0)
        .spawn()
        .unwrap();
    let lp = leader.id();
    let journal = write_journal(
        &state,
        &[
            dead_owner(&boot_id()),
            path_record(2, &root),
            path_record(11, &tree.sup),
            child_record(lp, start_time(lp)),
        ]
        .concat(),
    );
    for dry in [
        tokio_custodian::Recovery::new()
            .state_dir(&state)
            .dry_run(true),
        tokio_custodian::Recovery::new()
            .state_dir(&state)
            .temp_base(tokio_custodian::AgeSweep::new(&scratch, Duration::ZERO))
            .dry_run(true),
    ] {
        let report = dry.run().unwrap();
        assert!(report.dry_run && report.journals.is_none(), "{report}");
        assert!(tree.alive(), "a dry run killed the dead owner's cgroup");
        assert!(leader.try_wait().unwrap().is_none(), "a dry run signalled");
        assert!(tree.sup.exists() && root.join("inside").exists() && journal.exists());
    }
    let report = sweep(&state);
    assert_eq!(report.cgroups, vec![tree.sup.clone()], "{report}");
    assert!(
        !tree.sup.exists() && !root.exists() && !journal.exists(),
        "{report}"
    );
    assert!(leader.wait().is_ok());
    tree.member.wait().unwrap();
    assert!(!pid_running(tree.grandchild), "{report}");
    std::fs::remove_dir_all(&scratch).unwrap();
}

/// Another boot's journal recording a live cgroup with its right inode: cgroups do not
/// outlive a boot, so the record is ignored and nothing is killed.
#[test]
fn another_boots_cgroup_record_kills_nothing() {
    let own = need_cgroup!();
    let _s = serial();
    let scratch = scratch_dir("review-rec-boot");
    let state = private_dir(&scratch.join("state"));
    let mut tree = DeadTree::new(&own, "boot");
    let other = "00000000-0000-4000-8000-000000000000";
    let journal = write_journal(
        &state,
        &[dead_owner(other), path_record(11, &tree.sup)].concat(),
    );
    let report = sweep(&state);
    assert!(
        tree.alive(),
        "another boot's record killed a live cgroup: {report}"
    );
    assert!(report.cgroups.is_empty() && tree.sup.exists(), "{report}");
    assert!(!journal.exists(), "{report}");
    std::fs::remove_dir_all(&scratch).unwrap();
}

/// A live cgroup recorded with a wrong inode, a symlink to a live cgroup recorded with
/// the cgroup's own inode, and a tmpfs directory with a regular `cgroup.kill` recorded
/// with its right inode: none is written to, none is removed.
#[test]
fn only_the_recorded_cgroup2_directory_is_killed() {
    let own = need_cgroup!();
    let _s = serial();
    let scratch = scratch_dir("review-rec-paths");
    let mut tree = DeadTree::new(&own, "paths");
    let md = std::fs::metadata(&tree.sup).unwrap();
    // Named as the cgroup is: only the symlink itself tells it apart.
    std::fs::create_dir(scratch.join("links")).unwrap();
    let link = scratch.join("links").join(tree.sup.file_name().unwrap());
    std::os::unix::fs::symlink(&tree.sup, &link).unwrap();
    let tmpfs = scratch.join("tmpfs");
    std::fs::create_dir(&tmpfs).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "review-rec", tmpfs.to_str().unwrap()])
        .status()
        .unwrap()
        .success();
    let fake = tmpfs.join(supervisor_name("fake"));
    std::fs::create_dir(&fake).unwrap();
    std::fs::write(fake.join("cgroup.kill"), b"").unwrap();
    std::fs::write(fake.join("cgroup.events"), b"populated 0\n").unwrap();
    let cases = [
        path_record_as(11, &tree.sup, (md.dev(), md.ino() + 1)),
        path_record_as(11, &link, (md.dev(), md.ino())),
        path_record(11, &fake),
    ];
    for (i, rec) in cases.iter().enumerate() {
        let state = private_dir(&scratch.join(format!("state-{i}")));
        write_journal(&state, &[dead_owner(&boot_id()), rec.clone()].concat());
        let report = sweep(&state);
        assert!(tree.alive(), "case {i} killed a live cgroup: {report}");
        assert!(report.cgroups.is_empty(), "case {i}: {report}");
        assert!(
            tree.sup.exists() && link.exists() && fake.exists(),
            "case {i}"
        );
        assert_eq!(std::fs::read(fake.join("cgroup.kill")).unwrap(), b"");
    }
    if mounted {
        let _ = Command::new("umount").arg(&tmpfs).status();
    }
    std::fs::remove_dir_all(&scratch).unwrap();
}

/// The sweeper runs inside a grandchild cgroup of the dead owner's: the cgroup is not
/// killed (it would kill the sweeper), the journal is kept; once the sweeper is gone a
/// later sweep kills and removes it.
#[test]
fn a_sweeper_inside_a_grandchild_cgroup_is_never_killed() {
    let own = need_cgroup!();
    let _s = serial();
    let scratch = scratch_dir("review-rec-inside");
    let state = private_dir(&scratch.join("state"));
    let mut tree = DeadTree::new(&own, "inside");
    let deep = tree.sup.join("child-1/nested");
    std::fs::create_dir(&deep).unwrap();
    let journal = write_journal(
        &state,
        &[dead_owner(&boot_id()), path_record(11, &tree.sup)].concat(),
    );
    let out = Command::new("sh")
        .args(["-c", "echo $$ > \"$1\" && shift && exec \"$@\"", "sh"])
        .arg(deep.join("cgroup.procs"))
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "role", "--ignored", "--nocapture"])
        .env(ROLE, "sweep")
        .env(STATE, &state)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the sweeper was killed ({}):\n{text}",
        out.status
    );
    let json = text
        .lines()
        .find_map(|l| l.split_once("REPORT ").map(|(_, r)| r))
        .unwrap_or_else(|| panic!("no report:\n{text}"));
    let report: SweepReport = serde_json::from_str(json).unwrap();
    assert!(tree.alive() && journal.exists(), "{report}");
    assert!(!report.is_clean() && report.cgroups.is_empty(), "{report}");
    let report = sweep(&state);
    assert_eq!(report.cgroups, vec![tree.sup.clone()], "{report}");
    assert!(!tree.sup.exists() && !journal.exists(), "{report}");
    std::fs::remove_dir_all(&scratch).unwrap();
}

/// `AgeSweep::root_prefix` is public: an empty, short or all-hex prefix made every
/// directory of this user named with 32 hex digits (mode 0700, unlocked, old) a "temp
/// root" to remove with its contents, which `Builder::temp_prefix` refuses for this very
/// reason. Now the sweep refuses such a prefix and removes nothing.
#[test]
fn an_age_sweep_refuses_a_root_prefix_that_names_other_programs_dirs() {
    let scratch = scratch_dir("review-rec-prefix");
    let base = private_dir(&scratch.join("base"));
    let theirs = private_dir(&base.join("0123456789abcdef0123456789abcdef"));
    std::fs::write(theirs.join("data"), b"not custodian's").unwrap();
    for prefix in ["", "ab", "0123"] {
        let err = tokio_custodian::AgeSweep::new(&base, Duration::ZERO)
            .root_prefix(prefix)
            .run()
            .map(|r| r.to_string());
        assert!(
            theirs.join("data").exists(),
            "prefix {prefix:?} removed another program's dir"
        );
        let err = err.unwrap_err();
        assert_eq!(err.operation(), tokio_custodian::Operation::AgeSweep);
        assert_eq!(err.io_kind(), Some(std::io::ErrorKind::InvalidInput));
    }
    std::fs::remove_dir_all(&scratch).unwrap();
}
