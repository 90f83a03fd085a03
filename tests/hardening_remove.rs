//! Safe removal at the edges, on real mounts: a bind mount inside a managed directory
//! (same file system as the temp base, so the same `st_dev`) is never entered or
//! emptied, whether the removal comes from `TempDir::close`, the temp root's removal at
//! shutdown or the abandoned-root reaper at start; a file bind-mounted onto a file is
//! left alone too. Everything around the mount point is removed and the removal reports
//! it. Deep trees are in `hardening_remove_deep.rs`.
//!
//! Every scenario runs in a child process (this test binary run again on one ignored
//! test), in a private mount namespace (`unshare -m --propagation private`) so that a
//! failure can never leak a mount into the host.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use custodian_suite::{LineChild, entries, exists, scratch_dir};
use rustix::fs::{AtFlags, StatxAttributes, StatxFlags};
use tokio_custodian::Supervisor;

const CHILD: &str = "CUSTODIAN_HARDENING_REMOVE_CHILD";
const OWNER: &str = env!("CARGO_BIN_EXE_custodian-test-owner");

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
