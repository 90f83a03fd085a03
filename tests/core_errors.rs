//! Bad input and exhausted resources give typed errors naming the operation and the path;
//! nothing is left registered, open or on disk. EMFILE is provoked in a child process
//! (this binary re-run with a lowered `RLIMIT_NOFILE`), ENOSPC on a tiny tmpfs.

use std::path::{Path, PathBuf};
use std::process::Command;

use custodian_suite::{Rt, entries, exists, open_fds, scenario};
use tokio::io::AsyncWriteExt;
use tokio_custodian::{Error, Operation, ResourceKind, Supervisor};

/// The raw OS error behind a custodian error.
fn errno(e: &Error) -> Option<i32> {
    std::error::Error::source(e)?
        .downcast_ref::<std::io::Error>()?
        .raw_os_error()
}

/// Asserts that `e` is an I/O error of `op` naming `path`, and that nothing was
/// registered.
fn assert_typed(sup: &Supervisor, e: &Error, op: Operation, path: &Path) {
    assert!(matches!(e, Error::Io { .. }), "{e:?}");
    assert_eq!(e.operation(), op, "{e}");
    assert_eq!(e.path(), Some(path), "{e}");
    assert!(e.to_string().contains(&*path.to_string_lossy()), "{e}");
    assert!(!e.is_cancellation());
    assert!(sup.live().is_empty(), "{e}: nothing registered");
    assert!(sup.stats().is_consistent());
}

#[test]
fn opening_bad_paths_gives_typed_errors_and_leaves_nothing() {
    scenario(Rt::Current, "bad-open", async |base| {
        let sup = Supervisor::builder().temp_base(&base).start().unwrap();
        // The start-up reap runs on the blocking pool: let it close its fds first.
        sup.reaped_at_start().await;
        let fds = open_fds();
        let missing = base.join("missing/file");
        let e = sup.open(&missing).await.unwrap_err();
        assert_typed(&sup, &e, Operation::OpenFile, &missing);
        assert_eq!(e.io_kind(), Some(std::io::ErrorKind::NotFound));

        let dir = base.join("a-dir");
        std::fs::create_dir(&dir).unwrap();
        for e in [
            sup.open(&dir).await.unwrap_err(),
            sup.create(&dir).await.unwrap_err(),
        ] {
            assert_typed(&sup, &e, Operation::OpenFile, &dir);
            assert_eq!(e.io_kind(), Some(std::io::ErrorKind::IsADirectory), "{e}");
        }
        std::fs::remove_dir(&dir).unwrap();

        // Root ignores permission bits, not sysfs: creating a file there fails for root.
        let sys = PathBuf::from("/sys/kernel/custodian-suite-cannot-create");
        let e = sup.create(&sys).await.unwrap_err();
        assert_typed(&sup, &e, Operation::OpenFile, &sys);
        assert!(
            matches!(
                e.io_kind(),
                Some(std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem)
            ),
            "{e}"
        );
        assert!(!exists(&sys));

        // A file that exists, opened with create_new.
        let e = sup
            .file_options()
            .write(true)
            .create_new(true)
            .open("/dev/null")
            .await
            .unwrap_err();
        assert_typed(&sup, &e, Operation::OpenFile, Path::new("/dev/null"));
        assert_eq!(e.io_kind(), Some(std::io::ErrorKind::AlreadyExists));

        // A temp name with a path separator in it.
        let e = sup.temp().prefix("../escape-").file().await.unwrap_err();
        assert_typed(&sup, &e, Operation::CreateTempFile, sup.temp_root());
        assert_eq!(e.io_kind(), Some(std::io::ErrorKind::InvalidInput));
        assert!(entries(&base).len() == 1 && entries(sup.temp_root()).is_empty());

        assert_eq!(
            open_fds(),
            fds,
            "no fd left behind\n{:?}",
            custodian_suite::fd_targets()
        );
        assert_eq!(sup.stats().kind(ResourceKind::File).created, 0);
        assert!(sup.shutdown().await.is_clean());
    });
}

#[test]
fn a_missing_temp_base_is_a_typed_error() {
    scenario(Rt::Current, "bad-base", async |base| {
        let missing = base.join("nope");
        let e = Supervisor::builder()
            .temp_base(&missing)
            .start()
            .unwrap_err();
        assert_eq!(e.operation(), Operation::CreateTempRoot);
        assert_eq!(e.path(), Some(missing.as_path()));
        assert_eq!(e.io_kind(), Some(std::io::ErrorKind::NotFound));
    });
}

#[test]
fn acquiring_after_shutdown_or_scope_end_is_refused() {
    scenario(Rt::Current, "refused", async |base| {
        let sup = Supervisor::builder().temp_base(&base).start().unwrap();
        let escaped = sup.scope("s", async |s| s).await.unwrap();
        let e = escaped.temp_file().await.unwrap_err();
        assert!(
            matches!(e, Error::ScopeClosed { ref scope, .. } if scope == "s"),
            "{e:?}"
        );
        assert!(e.is_cancellation());
        assert!(escaped.open("/dev/null").await.is_err());
        sup.shutdown().await;
        for e in [
            sup.temp_file().await.map(drop).unwrap_err(),
            sup.temp_dir().await.map(drop).unwrap_err(),
            sup.open("/dev/null").await.map(drop).unwrap_err(),
            sup.scope("late", async |_| ()).await.unwrap_err(),
        ] {
            assert!(matches!(e, Error::ShuttingDown { .. }), "{e:?}");
        }
        assert_eq!(sup.stats().live(), 0);
        assert!(sup.stats().kinds.values().all(|k| k.created == 0));
    });
}

const EMFILE_CHILD: &str = "CUSTODIAN_SUITE_EMFILE_CHILD";

/// Runs [`emfile_child`] alone in a child process (it lowers its own fd limit).
#[test]
fn too_many_open_files_is_a_typed_error() {
    custodian_suite::run_isolated("emfile_child", EMFILE_CHILD, false);
}

/// The body of [`too_many_open_files_is_a_typed_error`]; does nothing unless run as its
/// child.
#[test]
#[ignore = "run by too_many_open_files_is_a_typed_error"]
fn emfile_child() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    if !custodian_suite::is_isolated(EMFILE_CHILD, "emfile_child") {
        return;
    }
    scenario(Rt::Current, "emfile-child", async |base| {
        let sup = Supervisor::builder().temp_base(&base).start().unwrap();
        // The start-up reap runs on the blocking pool: let it close its fds first.
        sup.reaped_at_start().await;
        let fds = open_fds();
        let old = getrlimit(Resource::Nofile);
        let mut low = old;
        low.current = Some(64);
        setrlimit(Resource::Nofile, low).unwrap();
        // Fill every free slot below the limit.
        let mut fillers = Vec::new();
        loop {
            match rustix::fs::open(
                "/dev/null",
                rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
            ) {
                Ok(fd) => fillers.push(fd),
                Err(rustix::io::Errno::MFILE) => break,
                Err(e) => panic!("{e}"),
            }
        }
        let emfile = Some(rustix::io::Errno::MFILE.raw_os_error());

        let e = sup.temp_file().await.unwrap_err();
        assert_typed(&sup, &e, Operation::CreateTempFile, sup.temp_root());
        assert_eq!(errno(&e), emfile, "{e}");
        let e = sup.open("/dev/null").await.unwrap_err();
        assert_typed(&sup, &e, Operation::OpenFile, Path::new("/dev/null"));
        assert_eq!(errno(&e), emfile, "{e}");

        let e = Supervisor::builder().temp_base(&base).start().unwrap_err();
        assert_eq!(e.operation(), Operation::CreateTempRoot);
        assert_eq!((e.path(), errno(&e)), (Some(base.as_path()), emfile));

        drop(fillers);
        setrlimit(Resource::Nofile, old).unwrap();
        assert_eq!(entries(&base).len(), 1, "no second temp root");
        assert!(
            entries(sup.temp_root()).is_empty(),
            "no half-created temp file"
        );
        assert_eq!(open_fds(), fds, "{:?}", custodian_suite::fd_targets());
        // Nothing is wedged: acquisition works again.
        let t = sup.temp_file().await.unwrap();
        t.close().await.unwrap();
        let report = sup.shutdown().await;
        assert!(report.is_clean(), "{report}");
    });
}

/// A tiny tmpfs, unmounted (lazily) when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: PathBuf, options: &str) -> Result<Self, String> {
        std::fs::create_dir(&at).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(&at)
            .output();
        match out {
            Ok(o) if o.status.success() => Ok(Tmpfs(at)),
            other => {
                std::fs::remove_dir(&at).unwrap();
                Err(match other {
                    Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_owned(),
                    Err(e) => e.to_string(),
                })
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[test]
fn a_full_file_system_gives_typed_errors_and_leaves_nothing() {
    scenario(Rt::Current, "enospc", async |base| {
        let fs = match Tmpfs::mount(base.join("tiny"), "size=64k,nr_inodes=16,mode=0755") {
            Ok(fs) => fs,
            Err(why) => {
                eprintln!("SKIPPED the ENOSPC test: cannot mount a tmpfs ({why})");
                return;
            }
        };
        let sup = Supervisor::builder().temp_base(&fs.0).start().unwrap();
        // The start-up reap runs on the blocking pool: let it close its fds first.
        sup.reaped_at_start().await;
        let fds = open_fds();

        // Data: writing past the size fails, and close reports it naming the file. The
        // file is removed anyway and its space returned.
        let mut t = sup.temp_file().await.unwrap();
        let path = t.path().to_path_buf();
        let wrote = t.write_all(&vec![7u8; 256 * 1024]).await;
        let closed = t.close().await;
        match (wrote, closed) {
            (Err(w), _) => assert_eq!(w.kind(), std::io::ErrorKind::StorageFull),
            (Ok(()), Err(e)) => {
                assert_eq!(e.io_kind(), Some(std::io::ErrorKind::StorageFull), "{e}");
                assert_eq!(
                    (e.operation(), e.path()),
                    (Operation::CloseFile, Some(&*path))
                );
            }
            (Ok(()), Ok(())) => panic!("256 KiB fit in a 64 KiB tmpfs"),
        }
        assert!(!exists(&path));
        assert_eq!(open_fds(), fds);

        // Inodes: create until the file system is full; the failing call is a typed
        // error and leaves nothing behind.
        let mut held = Vec::new();
        let e = loop {
            match sup.temp_file().await {
                Ok(t) => held.push(t),
                Err(e) => break e,
            }
            assert!(held.len() < 64, "nr_inodes=16 was not enforced");
        };
        assert_eq!(e.operation(), Operation::CreateTempFile);
        assert_eq!(e.path(), Some(sup.temp_root()));
        assert_eq!(e.io_kind(), Some(std::io::ErrorKind::StorageFull), "{e}");
        assert_eq!(entries(sup.temp_root()).len(), held.len());
        assert_eq!(sup.live().len(), held.len());
        let e = sup.temp_dir().await.unwrap_err();
        assert_eq!(e.operation(), Operation::CreateTempDir);
        assert_eq!(e.io_kind(), Some(std::io::ErrorKind::StorageFull), "{e}");
        // A second supervisor cannot even create its root there.
        let e = Supervisor::builder().temp_base(&fs.0).start().unwrap_err();
        assert_eq!(
            (e.operation(), e.path()),
            (Operation::CreateTempRoot, Some(&*fs.0))
        );
        assert_eq!(e.io_kind(), Some(std::io::ErrorKind::StorageFull), "{e}");

        drop(held);
        assert!(entries(sup.temp_root()).is_empty());
        assert_eq!(open_fds(), fds);
        let report = sup.shutdown().await;
        assert!(report.is_clean(), "{report}");
        assert!(entries(&fs.0).is_empty());
        drop(sup);
        drop(fs);
    });
}
