//! Temp files and dirs at the edges, in process-wide conditions: a `umask 000` process,
//! and `keep` with a write in flight on a full file system. Cancellations and `persist`
//! races are in `hardening_temp_races.rs`.
//!
//! Both scenarios change process-wide state (the umask, a mount): they run alone in a
//! child process of this test binary (`run_isolated`), the mount one inside a private
//! mount namespace (`unshare -m --propagation private`, we run as root).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use custodian_suite::{entries, exists, scratch_dir};
use tokio::io::AsyncWriteExt;
use tokio_custodian::{Operation, Supervisor};

/// Set (to the test's name) in the child process that runs one isolated test.
const CHILD: &str = "CUSTODIAN_HARDENING_TEMP_CHILD";

fn run_isolated(name: &str, private_mounts: bool) {
    custodian_suite::run_isolated(name, CHILD, private_mounts);
}

fn in_child(name: &str) -> bool {
    custodian_suite::is_isolated(CHILD, name)
}

/// Removes an isolated test's directories if it fails (unmounting first), so that a
/// failure does not litter the temp dir. A passing test removes them itself.
struct TidyOnPanic(Vec<PathBuf>);

impl Drop for TidyOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for dir in &self.0 {
                let _ = Command::new("umount").arg("-l").arg(dir).status();
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

// ---------------------------------------------------------------------------------------
// Item 3: the umask does not decide the modes.

#[test]
fn umask_000_still_makes_0600_files_and_0700_dirs_also_after_persist() {
    run_isolated("umask_000_child", false);
}

#[test]
#[ignore = "runs in its own process, started by umask_000_still_makes_0600_files_..."]
fn umask_000_child() {
    if !in_child("umask_000_child") {
        return;
    }
    rustix::process::umask(rustix::fs::Mode::empty());
    let base = scratch_dir("umask");
    let out = scratch_dir("umask-out");
    let _tidy = TidyOnPanic(vec![base.clone(), out.clone()]);
    // The control: in this process a plain new file is world-writable.
    std::fs::write(out.join("control"), b"").unwrap();
    assert_eq!(mode(&out.join("control")), 0o666, "umask 000 is in effect");
    runtime().block_on(async {
        let sup = Supervisor::builder().temp_base(&base).start().unwrap();
        assert_eq!(mode(sup.temp_root()), 0o700);
        let mut f = sup.temp_file().await.unwrap();
        let named = sup
            .temp()
            .prefix("up-")
            .suffix(".wav")
            .file()
            .await
            .unwrap();
        let d = sup.temp_dir().await.unwrap();
        let named_dir = sup.temp().prefix("work-").dir().await.unwrap();
        assert_eq!(mode(f.path()), 0o600, "temp file");
        assert_eq!(mode(named.path()), 0o600, "temp file with affixes");
        assert_eq!(mode(d.path()), 0o700, "temp dir");
        assert_eq!(mode(named_dir.path()), 0o700, "temp dir with a prefix");

        // Outside the private root the modes are all that protects them.
        f.write_all(b"secret").await.unwrap();
        let kept = f
            .persist(out.join("file"))
            .await
            .map_err(|e| e.error)
            .unwrap();
        assert_eq!(mode(&out.join("file")), 0o600, "persisted file");
        drop(kept);
        let dir = d
            .persist(out.join("dir"))
            .await
            .map_err(|e| e.error)
            .unwrap();
        assert_eq!(mode(&dir), 0o700, "persisted dir");
        let (file, path) = named.keep().await.map_err(|e| e.error).unwrap();
        assert_eq!(mode(&path), 0o600, "kept file");
        drop(file);
        // Kept out of custodian's reach (in the base): ours to delete.
        std::fs::remove_file(&path).unwrap();
        drop(named_dir);
        assert!(sup.shutdown().await.stats.is_consistent());
    });
    std::fs::remove_dir_all(&out).unwrap();
    assert!(entries(&base).is_empty(), "{:?}", entries(&base));
    std::fs::remove_dir(&base).unwrap();
}

// ---------------------------------------------------------------------------------------
// Item 14a: keep() flushes, so a write still in flight reports its error.

#[test]
fn keep_reports_the_error_of_a_write_still_in_flight() {
    run_isolated("keep_on_a_full_tmpfs_child", true);
}

#[test]
#[ignore = "runs in a private mount namespace, started by keep_reports_the_error_..."]
fn keep_on_a_full_tmpfs_child() {
    if !in_child("keep_on_a_full_tmpfs_child") {
        return;
    }
    let mnt = scratch_dir("keep-tmpfs");
    let _tidy = TidyOnPanic(vec![mnt.clone()]);
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(mounted.success(), "mount a 64 KiB tmpfs");
    runtime().block_on(async {
        let sup = Supervisor::builder().temp_base(&mnt).start().unwrap();
        let mut t = sup.temp_file().await.unwrap();
        let path = t.path().to_path_buf();
        // Accepted at once: tokio's file buffers it and writes on the blocking pool.
        t.write_all(&vec![7u8; 256 * 1024]).await.unwrap();
        let e = t.keep().await.expect_err("the failed write must surface");
        assert_eq!(
            e.error.io_kind(),
            Some(std::io::ErrorKind::StorageFull),
            "{}",
            e.error
        );
        assert_eq!(e.error.operation(), Operation::Persist);
        assert_eq!(e.error.path(), Some(path.as_path()));
        let t = e.guard.expect("the temp file is handed back");
        assert!(t.registration().is_live());
        t.close().await.unwrap();
        assert!(!exists(&path));
        assert!(sup.shutdown().await.is_clean());
    });
    let unmounted = Command::new("umount").arg(&mnt).status().unwrap();
    assert!(unmounted.success());
    std::fs::remove_dir(&mnt).unwrap();
}
