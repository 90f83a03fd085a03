//! Atomic writes under faults: a full file system, a read-only mount, a target that is a
//! mount point, and `umask 000`. Each changes process-wide state (a mount, the umask), so
//! each runs alone in a child process of this test binary (`run_isolated`), the mount
//! ones in a private mount namespace (we run as root: permission bits would not stop us,
//! a read-only mount does).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use custodian_suite::{entries, scratch_dir};
use tokio::io::AsyncWriteExt;
use tokio_custodian::{Operation, Supervisor};

const CHILD: &str = "CUSTODIAN_ATOMIC_FAULTS_CHILD";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn run(cmd: &str, args: &[&str], path: &Path) {
    let ok = Command::new(cmd).args(args).arg(path).status().unwrap();
    assert!(ok.success(), "{cmd} {args:?} {}", path.display());
}

/// Unmounts (lazily) and removes the test's directory whatever happens.
struct Tidy(PathBuf);

impl Drop for Tidy {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.0.join("mnt"))
            .status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn free_bytes(dir: &Path) -> u64 {
    let st = rustix::fs::statvfs(dir).unwrap();
    st.f_bfree * st.f_frsize
}

#[test]
fn full_disk_read_only_and_mount_point_targets_are_typed_and_leave_the_target() {
    custodian_suite::run_isolated("mount_faults_child", CHILD, true);
}

#[test]
#[ignore = "runs in a private mount namespace, started by full_disk_read_only_..."]
fn mount_faults_child() {
    if !custodian_suite::is_isolated(CHILD, "mount_faults_child") {
        return;
    }
    let base = scratch_dir("atomic-faults");
    let _tidy = Tidy(base.clone());
    let mnt = base.join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    run("mount", &["-t", "tmpfs", "-o", "size=256k", "tmpfs"], &mnt);
    let target = mnt.join("target");
    std::fs::write(&target, b"old").unwrap();
    runtime().block_on(async {
        let sup = Supervisor::builder().start().unwrap();
        let free = free_bytes(&mnt);
        // The one-liner: the write fails inside the commit.
        let err = sup
            .atomic_write(&target, vec![1u8; 1 << 20])
            .await
            .unwrap_err();
        assert_eq!(
            err.io_kind(),
            Some(std::io::ErrorKind::StorageFull),
            "{err}"
        );
        assert_eq!(
            (err.operation(), err.path()),
            (Operation::AtomicCommit, Some(target.as_path()))
        );
        // The writer: the error surfaces at a write or at the commit's flush.
        let mut f = sup.atomic_file(&target).await.unwrap();
        let wrote = f.write_all(&vec![2u8; 1 << 20]).await;
        let committed = f.commit().await;
        assert!(wrote.is_err() || committed.is_err(), "1 MiB fit in 256 KiB");
        if let Err(e) = committed {
            assert_eq!(e.io_kind(), Some(std::io::ErrorKind::StorageFull), "{e}");
        }
        assert_eq!(std::fs::read(&target).unwrap(), b"old");
        assert_eq!(entries(&mnt), ["target"]);
        assert_eq!(
            free_bytes(&mnt),
            free,
            "the discarded temp files' space came back"
        );
        assert_eq!(sup.stats().live(), 0);
        // A target that is a mount point (a bind-mounted file): `EBUSY`, not a copy.
        let outside = base.join("outside");
        std::fs::write(&outside, b"bound").unwrap();
        let bound = mnt.join("bound");
        std::fs::write(&bound, b"").unwrap();
        let ok = Command::new("mount")
            .arg("--bind")
            .arg(&outside)
            .arg(&bound)
            .status();
        assert!(ok.unwrap().success());
        let err = sup.atomic_write(&bound, "new").await.unwrap_err();
        assert_eq!(
            err.io_kind(),
            Some(std::io::ErrorKind::ResourceBusy),
            "{err}"
        );
        assert_eq!(std::fs::read(&outside).unwrap(), b"bound");
        run("umount", &[], &bound);
        std::fs::remove_file(&bound).unwrap();
        // A read-only mount: refused before anything is written.
        run("mount", &["-o", "remount,ro"], &mnt);
        let err = sup.atomic_write(&target, "new").await.unwrap_err();
        assert_eq!(
            err.io_kind(),
            Some(std::io::ErrorKind::ReadOnlyFilesystem),
            "{err}"
        );
        assert_eq!(err.operation(), Operation::AtomicWrite);
        assert_eq!(std::fs::read(&target).unwrap(), b"old");
        assert!(sup.shutdown().await.is_clean());
    });
    run("umount", &[], &mnt);
}

#[test]
fn umask_decides_only_a_new_targets_mode_never_the_temp_files() {
    custodian_suite::run_isolated("umask_child", CHILD, false);
}

/// The modes of this process's open files under `dir` (the temp files; not the
/// writer's fd of `dir` itself).
fn open_modes_under(dir: &Path) -> Vec<u32> {
    let mut modes = Vec::new();
    for e in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let Ok(to) = std::fs::read_link(e.path()) else {
            continue;
        };
        if to.starts_with(dir) && to != dir {
            modes.push(mode(&e.path()));
        }
    }
    modes
}

#[test]
#[ignore = "runs in its own process, started by umask_decides_only_..."]
fn umask_child() {
    if !custodian_suite::is_isolated(CHILD, "umask_child") {
        return;
    }
    let dir = scratch_dir("atomic-umask");
    let _tidy = Tidy(dir.clone());
    runtime().block_on(async {
        let sup = Supervisor::builder().start().unwrap();
        for (umask, expect) in [(0o000, 0o666), (0o027, 0o640), (0o277, 0o400)] {
            rustix::process::umask(rustix::fs::Mode::from_raw_mode(umask));
            let target = dir.join(format!("new-{umask:o}"));
            let mut f = sup.atomic_file(&target).await.unwrap();
            f.write_all(b"x").await.unwrap();
            f.flush().await.unwrap();
            assert_eq!(
                open_modes_under(&dir),
                [0o600],
                "the temp file, umask {umask:o}"
            );
            f.commit().await.unwrap();
            assert_eq!(mode(&target), expect, "a new target under umask {umask:o}");
            // An existing target keeps its mode whatever the umask.
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o604)).unwrap();
            sup.atomic_write(&target, "y").await.unwrap();
            assert_eq!(mode(&target), 0o604);
        }
        assert!(sup.shutdown().await.is_clean());
    });
}
