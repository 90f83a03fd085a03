//! Safe removal at the edges, on real mounts and real deep trees.
//!
//! - A bind mount inside a managed directory (same file system as the temp base, so the
//!   same `st_dev`) is never entered or emptied, whether the removal comes from
//!   `TempDir::close`, the temp root's removal at shutdown or the abandoned-root reaper at
//!   start; a file bind-mounted onto a file is left alone too. Everything around the mount
//!   point is removed and the removal reports it.
//! - A tree 10,000 levels deep is removed through `TempDir` close and drop without
//!   overflowing a blocking-pool thread's stack, and with only a handful of fds free.
//!
//! Every scenario runs in a child process (this test binary run again on one ignored
//! test): a crash (stack overflow) fails the test instead of killing the suite, and the
//! mount scenarios run in a private mount namespace (`unshare -m --propagation private`)
//! so that a failure can never leak a mount into the host.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use custodian_suite::{LineChild, entries, exists, open_fds, scratch_dir};
use rustix::fs::{AtFlags, Mode, OFlags, StatxAttributes, StatxFlags};
use tokio_custodian::Supervisor;

const CHILD: &str = "CUSTODIAN_HARDENING_REMOVE_CHILD";
const OWNER: &str = env!("CARGO_BIN_EXE_custodian-test-owner");
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

// ---------------------------------------------------------------------------------------
// Mounts

/// A bind mount, unmounted on drop (the private namespace dies with the child anyway).
struct Bind(PathBuf);

impl Bind {
    fn new(src: &Path, dst: &Path) -> Bind {
        let st = Command::new("mount")
            .arg("--bind")
            .arg(src)
            .arg(dst)
            .status()
            .expect("run mount");
        assert!(
            st.success(),
            "mount --bind {} {}",
            src.display(),
            dst.display()
        );
        assert!(is_mount_root(dst), "{} is not a mount point", dst.display());
        Bind(dst.to_path_buf())
    }
}

impl Drop for Bind {
    fn drop(&mut self) {
        let st = Command::new("umount").arg(&self.0).status();
        if !std::thread::panicking() {
            assert!(st.is_ok_and(|s| s.success()), "umount {}", self.0.display());
        }
    }
}

/// Whether `path` is the root of a mount (kernel 5.8+: `STATX_ATTR_MOUNT_ROOT`).
fn is_mount_root(path: &Path) -> bool {
    let x = rustix::fs::statx(
        rustix::fs::CWD,
        path,
        AtFlags::SYMLINK_NOFOLLOW | AtFlags::NO_AUTOMOUNT,
        StatxFlags::empty(),
    )
    .expect("statx");
    assert!(
        x.stx_attributes_mask.contains(StatxAttributes::MOUNT_ROOT),
        "the kernel does not report mount roots (Linux < 5.8)"
    );
    x.stx_attributes.contains(StatxAttributes::MOUNT_ROOT)
}

/// A source directory a user cares about: a canary and a small tree.
fn user_tree(tag: &str) -> PathBuf {
    let src = scratch_dir(tag);
    std::fs::write(src.join("canary"), b"still here").unwrap();
    std::fs::create_dir_all(src.join("inner/deeper")).unwrap();
    std::fs::write(src.join("inner/deeper/data"), b"precious").unwrap();
    src
}

fn assert_user_tree_intact(src: &Path) {
    assert_eq!(std::fs::read(src.join("canary")).unwrap(), b"still here");
    assert_eq!(
        std::fs::read(src.join("inner/deeper/data")).unwrap(),
        b"precious"
    );
    assert_eq!(entries(src), ["canary", "inner"]);
}

/// Files and directories around where the mount point will be: `a`, `b/c/d`,
/// `deep/x`, `deep/er/y`, `deep/er/z/w` and the empty mount point `deep/er/mnt`.
fn populate(dir: &Path) -> PathBuf {
    std::fs::write(dir.join("a"), b"1").unwrap();
    std::fs::create_dir_all(dir.join("b/c")).unwrap();
    std::fs::write(dir.join("b/c/d"), b"2").unwrap();
    std::fs::create_dir_all(dir.join("deep/er/z")).unwrap();
    std::fs::write(dir.join("deep/x"), b"3").unwrap();
    std::fs::write(dir.join("deep/er/y"), b"4").unwrap();
    std::fs::write(dir.join("deep/er/z/w"), b"5").unwrap();
    std::os::unix::fs::symlink("/", dir.join("deep/er/link")).unwrap();
    let mnt = dir.join("deep/er/mnt");
    std::fs::create_dir(&mnt).unwrap();
    mnt
}

/// Only the path down to the mount point is left.
fn assert_only_the_mount_point_left(dir: &Path) {
    assert_eq!(entries(dir), ["deep"]);
    assert_eq!(entries(&dir.join("deep")), ["er"]);
    assert_eq!(entries(&dir.join("deep/er")), ["mnt"]);
}

fn assert_mount_point_error(e: &dyn std::fmt::Display, kind: Option<std::io::ErrorKind>) {
    assert_eq!(kind, Some(std::io::ErrorKind::ResourceBusy), "{e}");
    let text = e.to_string();
    assert!(
        text.contains("a mount point inside a managed directory was left in place: deep/er/mnt"),
        "{text}"
    );
}

#[test]
fn a_bind_mounted_dir_in_a_temp_dir_is_not_emptied_by_close() {
    in_child("scenario_bind_mount_close", true);
}

#[test]
#[ignore = "a scenario: run in a private mount namespace by the test without the prefix"]
fn scenario_bind_mount_close() {
    if !is_child() {
        return;
    }
    let base = scratch_dir("bind-close");
    let src = user_tree("bind-close-src");
    runtime().block_on(async {
        let sup = Supervisor::builder().temp_base(&base).start().unwrap();
        let d = sup.temp_dir().await.unwrap();
        let path = d.path().to_path_buf();
        let mnt = populate(&path);
        let bind = Bind::new(&src, &mnt);
        let closed = d.close().await;
        assert_user_tree_intact(&src);
        assert_only_the_mount_point_left(&path);
        let err = closed.unwrap_err();
        assert_mount_point_error(&err, err.io_kind());
        assert_eq!(err.path(), Some(path.as_path()));
        assert!(is_mount_root(&mnt), "the mount is still in place");
        assert_eq!(entries(&mnt), ["canary", "inner"]);
        drop(bind);
        let report = sup.shutdown().await;
        assert_eq!(report.temp_root_error, None);
        assert!(!exists(sup.temp_root()));
    });
    assert_user_tree_intact(&src);
    std::fs::remove_dir(&base).unwrap();
    std::fs::remove_dir_all(&src).unwrap();
}

#[test]
fn a_file_bind_mounted_onto_a_file_in_a_temp_dir_is_left_alone() {
    in_child("scenario_file_bind_mount_close", true);
}

#[test]
#[ignore = "a scenario: run in a private mount namespace by the test without the prefix"]
fn scenario_file_bind_mount_close() {
    if !is_child() {
        return;
    }
    let base = scratch_dir("file-bind");
    let src = user_tree("file-bind-src");
    runtime().block_on(async {
        let sup = Supervisor::builder().temp_base(&base).start().unwrap();
        let d = sup.temp_dir().await.unwrap();
        let path = d.path().to_path_buf();
        let mnt = populate(&path);
        std::fs::remove_dir(&mnt).unwrap();
        std::fs::write(&mnt, b"a file of the temp dir").unwrap();
        let bind = Bind::new(&src.join("canary"), &mnt);
        let closed = d.close().await;
        assert_user_tree_intact(&src);
        assert_only_the_mount_point_left(&path);
        let err = closed.unwrap_err();
        assert_mount_point_error(&err, err.io_kind());
        assert_eq!(std::fs::read(&mnt).unwrap(), b"still here");
        drop(bind);
        let report = sup.shutdown().await;
        assert_eq!(report.temp_root_error, None);
        assert!(!exists(sup.temp_root()));
    });
    assert_user_tree_intact(&src);
    std::fs::remove_dir(&base).unwrap();
    std::fs::remove_dir_all(&src).unwrap();
}

#[test]
fn a_bind_mount_in_the_temp_root_is_not_emptied_at_shutdown() {
    in_child("scenario_bind_mount_shutdown", true);
}

#[test]
#[ignore = "a scenario: run in a private mount namespace by the test without the prefix"]
fn scenario_bind_mount_shutdown() {
    if !is_child() {
        return;
    }
    let base = scratch_dir("bind-shutdown");
    let src = user_tree("bind-shutdown-src");
    runtime().block_on(async {
        let sup = Supervisor::builder().temp_base(&base).start().unwrap();
        let root = sup.temp_root().to_path_buf();
        // Not managed (made behind custodian's back, as `keep` no longer leaves one in
        // the root), so only the root's removal at shutdown meets it.
        let kept = root.join("unmanaged-dir");
        std::fs::create_dir(&kept).unwrap();
        let mnt = populate(&kept);
        let _held = sup.temp_file().await.unwrap();
        let bind = Bind::new(&src, &mnt);
        let report = sup.shutdown().await;
        assert_user_tree_intact(&src);
        let kept_name = kept.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(entries(&root), [kept_name]);
        assert_only_the_mount_point_left(&kept);
        let err = report
            .temp_root_error
            .clone()
            .expect("the root's removal fails");
        assert!(
            err.contains("a mount point inside a managed directory was left in place"),
            "{err}"
        );
        assert!(is_mount_root(&mnt));
        drop(bind);
        std::fs::remove_dir_all(&root).unwrap();
    });
    assert_user_tree_intact(&src);
    std::fs::remove_dir(&base).unwrap();
    std::fs::remove_dir_all(&src).unwrap();
}

#[test]
fn a_bind_mount_in_an_abandoned_root_is_not_emptied_by_the_reaper() {
    in_child("scenario_bind_mount_abandoned", true);
}

#[test]
#[ignore = "a scenario: run in a private mount namespace by the test without the prefix"]
fn scenario_bind_mount_abandoned() {
    if !is_child() {
        return;
    }
    let base = scratch_dir("bind-abandoned");
    let src = user_tree("bind-abandoned-src");
    // An owner SIGKILLed while holding temp files and a temp dir leaves its root behind.
    let mut owner = LineChild::spawn(
        Command::new(OWNER)
            .arg("term")
            .env("TMPDIR", &base)
            .stdin(Stdio::null()),
    );
    let slow = Duration::from_secs(30);
    let root = PathBuf::from(owner.wait_line("ROOT ", slow).unwrap());
    owner.wait_line("READY", slow).unwrap();
    owner.kill();
    assert!(owner.wait_exit(slow).is_some());
    assert!(entries(&root).len() >= 2, "{:?}", entries(&root));
    let mnt = populate(&root);
    let bind = Bind::new(&src, &mnt);
    runtime().block_on(async {
        let next = Supervisor::builder()
            .temp_base(&base)
            .abandoned_min_age(Duration::ZERO)
            .start()
            .unwrap();
        let reaped = next.reaped_at_start().await;
        assert!(reaped.is_empty(), "{reaped:?}");
        assert_user_tree_intact(&src);
        assert_only_the_mount_point_left(&root);
        assert!(is_mount_root(&mnt));
        let report = next.shutdown().await;
        assert_eq!(report.temp_root_error, None);
    });
    drop(bind);
    std::fs::remove_dir_all(&root).unwrap();
    assert_user_tree_intact(&src);
    std::fs::remove_dir(&base).unwrap();
    std::fs::remove_dir_all(&src).unwrap();
}

#[test]
fn a_private_dir_mounted_over_a_root_name_is_not_taken_by_the_reaper() {
    in_child("scenario_mounted_over_root_name", true);
}

#[test]
#[ignore = "a scenario: run in a private mount namespace by the test without the prefix"]
fn scenario_mounted_over_root_name() {
    if !is_child() {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let base = scratch_dir("over-root-name");
    // Private, ours, unlocked, of the generated name's shape: only the mount tells it
    // from an abandoned root.
    let src = user_tree("over-root-name-src");
    std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o700)).unwrap();
    let name = base.join("custodian-0123456789abcdef0123456789abcdef");
    std::fs::create_dir(&name).unwrap();
    let bind = Bind::new(&src, &name);
    runtime().block_on(async {
        let next = Supervisor::builder()
            .temp_base(&base)
            .abandoned_min_age(Duration::ZERO)
            .start()
            .unwrap();
        let reaped = next.reaped_at_start().await;
        assert!(reaped.is_empty(), "{reaped:?}");
        assert_user_tree_intact(&src);
        next.shutdown().await;
    });
    drop(bind);
    std::fs::remove_dir(&name).unwrap();
    assert_user_tree_intact(&src);
    std::fs::remove_dir(&base).unwrap();
    std::fs::remove_dir_all(&src).unwrap();
}

// ---------------------------------------------------------------------------------------
// Deep trees

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
