//! Safe removal at the edges, on real deep trees: a tree 10,000 levels deep is removed
//! through `TempDir` close and drop without overflowing a blocking-pool thread's stack,
//! and with only a handful of fds free. Mounts are in `hardening_remove.rs`.
//!
//! Every scenario runs in a child process (this test binary run again on one ignored
//! test): a crash (stack overflow) fails the test instead of killing the suite, and the
//! tmpfs the trees live on is mounted in a private mount namespace.

use std::path::{Path, PathBuf};
use std::process::Command;

use custodian_suite::{entries, exists, open_fds, scratch_dir};
use rustix::fs::{Mode, OFlags};
use tokio_custodian::Supervisor;

const CHILD: &str = "CUSTODIAN_HARDENING_REMOVE_CHILD";
/// Deeper than any recursion on a 2 MiB stack survives, shallower than the fd limit
/// (so that a removal holding one fd per level would get deep enough to overflow).
const DEPTH: usize = 10_000;

// ---------------------------------------------------------------------------------------
// Running a scenario in a child process

/// Runs the ignored test `name` of this binary alone in a child process.
fn in_child(name: &str, private_mounts: bool) {
    custodian_suite::run_isolated(name, CHILD, private_mounts);
}

/// Whether this process is the child run of a scenario (run by hand with `--ignored`,
/// the scenarios do nothing).
fn is_child() -> bool {
    std::env::var_os(CHILD).is_some()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// A fresh tmpfs on a scratch dir, unmounted (and the dir removed) on drop.
///
/// The deep trees live there, not on the shared `/tmp`: mass deletion on an ext4 without a
/// journal makes file creation there ~45× slower for a minute (for the next test run and
/// for everyone else on the machine).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn new(tag: &str) -> Tmpfs {
        let dir = scratch_dir(tag);
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "mode=0700,size=512m", "tmpfs"])
            .arg(&dir)
            .status()
            .expect("run mount");
        assert!(st.success(), "mount tmpfs on {}", dir.display());
        Tmpfs(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Makes a chain `d/d/.../d` of `depth` levels in `dir`, relative to fds (the path is far
/// longer than `PATH_MAX`), with a file every 100 levels. Holds two fds at most.
fn chain(dir: &Path, depth: usize) {
    let dir_flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut at = rustix::fs::open(dir, dir_flags, Mode::empty()).unwrap();
    for level in 0..depth {
        rustix::fs::mkdirat(&at, "d", Mode::RWXU).unwrap();
        if level % 100 == 0 {
            let flags = OFlags::CREATE | OFlags::WRONLY | OFlags::CLOEXEC;
            drop(rustix::fs::openat(&at, "f", flags, Mode::RUSR).unwrap());
        }
        at = rustix::fs::openat(&at, "d", dir_flags, Mode::empty()).unwrap();
    }
}

/// Lowers the soft `RLIMIT_NOFILE` so that exactly `free` fd numbers are unused below it;
/// returns the previous limit.
fn leave_free_fds(free: usize) -> rustix::process::Rlimit {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut open: Vec<u64> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    open.sort_unstable();
    // The listing's own fd is closed by now: it is one of the free ones.
    let mut limit = 0u64;
    let mut unused = 0;
    while unused < free {
        if open.binary_search(&limit).is_err() {
            unused += 1;
        }
        limit += 1;
    }
    let old = getrlimit(Resource::Nofile);
    let new = rustix::process::Rlimit {
        current: Some(limit),
        maximum: old.maximum,
    };
    setrlimit(Resource::Nofile, new).unwrap();
    old
}

fn restore_fd_limit(old: rustix::process::Rlimit) {
    rustix::process::setrlimit(rustix::process::Resource::Nofile, old).unwrap();
}

#[test]
fn a_tree_ten_thousand_levels_deep_is_removed_by_close_and_drop() {
    in_child("scenario_deep_tree", true);
}

#[test]
#[ignore = "a scenario: run in a private mount namespace by the test without the prefix"]
fn scenario_deep_tree() {
    if !is_child() {
        return;
    }
    use rustix::process::{Resource, getrlimit, setrlimit};
    // Room for one fd per level: a removal that recursed would get deep enough to
    // overflow its stack rather than stop at EMFILE.
    let lim = getrlimit(Resource::Nofile);
    let want = (DEPTH as u64 + 1000).min(lim.maximum.unwrap_or(u64::MAX));
    setrlimit(
        Resource::Nofile,
        rustix::process::Rlimit {
            current: Some(want),
            maximum: lim.maximum,
        },
    )
    .unwrap();
    let tmpfs = Tmpfs::new("deep");
    let base = tmpfs.0.clone();
    runtime().block_on(async {
        let sup = Supervisor::builder().temp_base(&base).start().unwrap();
        // The start-up reap runs on the blocking pool: let it close its fds first.
        sup.reaped_at_start().await;
        let fds = open_fds();
        // close(): the removal runs on a blocking-pool thread (2 MiB stack).
        let d = sup.temp_dir().await.unwrap();
        let path = d.path().to_path_buf();
        chain(&path, DEPTH);
        let t = std::time::Instant::now();
        d.close().await.unwrap();
        eprintln!("removed {DEPTH} levels in {:?}", t.elapsed());
        assert!(!exists(&path));
        // drop: the same removal, handed to the blocking pool by the scope's end.
        let path = sup
            .scope("unpack", async |s| {
                let d = s.temp_dir().await.unwrap();
                chain(d.path(), DEPTH);
                d.path().to_path_buf()
            })
            .await
            .unwrap();
        assert!(!exists(&path));
        assert!(entries(sup.temp_root()).is_empty());
        assert_eq!(open_fds(), fds, "{:#?}", custodian_suite::fd_targets());
        let report = sup.shutdown().await;
        assert!(report.failures.is_empty(), "{report}");
        assert_eq!(report.temp_root_error, None);
    });
    assert!(entries(&base).is_empty());
}

#[test]
fn a_deep_tree_is_removed_with_few_fds_free() {
    in_child("scenario_deep_tree_low_fd_limit", true);
}

#[test]
#[ignore = "a scenario: run in a private mount namespace by the test without the prefix"]
fn scenario_deep_tree_low_fd_limit() {
    if !is_child() {
        return;
    }
    let tmpfs = Tmpfs::new("deep-low-fd");
    let base = tmpfs.0.clone();
    runtime().block_on(async {
        let sup = Supervisor::builder().temp_base(&base).start().unwrap();
        // The start-up reap runs on the blocking pool: let it close its fds first.
        sup.reaped_at_start().await;
        let fds = open_fds();
        let d = sup.temp_dir().await.unwrap();
        let path = d.path().to_path_buf();
        chain(&path, DEPTH);
        // 20 free: more than the walk keeps open (16 levels and one to reopen a parent).
        let old = leave_free_fds(20);
        let closed = d.close().await;
        restore_fd_limit(old);
        closed.unwrap();
        assert!(!exists(&path));
        // 4 free: fewer than the walk would like; it closes shallower levels instead of
        // failing with EMFILE.
        let d = sup.temp_dir().await.unwrap();
        let path = d.path().to_path_buf();
        chain(&path, 300);
        let old = leave_free_fds(4);
        let closed = d.close().await;
        restore_fd_limit(old);
        closed.unwrap();
        assert!(!exists(&path));
        assert_eq!(open_fds(), fds, "{:#?}", custodian_suite::fd_targets());
        let report = sup.shutdown().await;
        assert_eq!(report.temp_root_error, None);
    });
    assert!(entries(&base).is_empty());
}
