//! The temp root keeps other users out; removal never follows a symlink; a swapped temp
//! root is refused; a replaced entry is left alone and reported.

use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;
use std::process::Command;

use custodian_suite::{Rt, entries, exists, scenario};
use tokio_custodian::{Error, Operation, ReleasePath, ResourceKind, Supervisor};

/// Whether `nobody` (uid/gid 65534, no groups) can read `path`; `None` if `setpriv` is
/// missing.
fn nobody_can_read(path: &Path) -> Option<bool> {
    let tool = if path.is_dir() { "ls" } else { "cat" };
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", tool])
        .arg(path)
        .output();
    match out {
        Ok(out) => Some(out.status.success()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => panic!("setpriv: {e}"),
    }
}

#[test]
fn the_temp_root_is_private_to_its_owner() {
    scenario(Rt::Current, "private", async |base| {
        let sup = Supervisor::builder().temp_base(&base).start().unwrap();
        let root = sup.temp_root().to_path_buf();
        let md = std::fs::symlink_metadata(&root).unwrap();
        assert!(md.is_dir());
        assert_eq!(md.permissions().mode() & 0o7777, 0o700);
        assert_eq!(md.uid(), rustix::process::geteuid().as_raw());

        use tokio::io::AsyncWriteExt;
        let mut t = sup.temp_file().await.unwrap();
        t.write_all(b"secret").await.unwrap();
        t.flush().await.unwrap();
        let d = sup.temp_dir().await.unwrap();
        let inner = d.path().join("inner.txt");
        std::fs::write(&inner, b"secret").unwrap();
        std::fs::set_permissions(&inner, std::fs::Permissions::from_mode(0o644)).unwrap();
        // A world-readable file outside the root: the control that proves the check can
        // succeed, so that the failures below mean something.
        let control = base.join("control.txt");
        std::fs::write(&control, b"public").unwrap();
        std::fs::set_permissions(&control, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).unwrap();
        match nobody_can_read(&control) {
            None => eprintln!("SKIPPED the other-user check: setpriv is not installed"),
            Some(readable) => {
                assert!(readable, "control: nobody can read a 0644 file");
                for p in [&root, t.path(), d.path(), &inner] {
                    assert_eq!(
                        nobody_can_read(p),
                        Some(false),
                        "another user reached {}",
                        p.display()
                    );
                }
            }
        }
        std::fs::remove_file(&control).unwrap();
        drop((t, d));
        assert!(sup.shutdown().await.is_clean());
    });
}

#[test]
fn a_symlink_planted_at_a_temp_path_is_removed_not_followed() {
    scenario(Rt::Current, "planted", async |base| {
        let outside = base.join("outside");
        std::fs::create_dir(&outside).unwrap();
        let precious = outside.join("precious");
        std::fs::write(&precious, b"keep").unwrap();
        let elsewhere = base.join("elsewhere");
        let sup = Supervisor::builder().temp_base(&base).start().unwrap();

        // A temp file's name now points at a file outside.
        let t = sup.temp_file().await.unwrap();
        let tp = t.path().to_path_buf();
        std::fs::remove_file(&tp).unwrap();
        symlink(&precious, &tp).unwrap();
        t.close().await.unwrap();
        assert!(!exists(&tp), "the planted link is gone");

        // A temp dir's name now points at a directory outside (the real dir moved away).
        let d = sup.temp_dir().await.unwrap();
        let dp = d.path().to_path_buf();
        std::fs::rename(&dp, &elsewhere).unwrap();
        symlink(&outside, &dp).unwrap();
        d.close().await.unwrap();
        assert!(!exists(&dp));
        std::fs::remove_dir(&elsewhere).unwrap();

        // Links inside a temp dir, to a dir and to a file outside, removed by drop at
        // scope end.
        let path = sup
            .scope("links", async |s| {
                let d = s.temp_dir().await.unwrap();
                std::fs::create_dir(d.path().join("sub")).unwrap();
                symlink(&outside, d.path().join("sub/to-dir")).unwrap();
                symlink(&precious, d.path().join("to-file")).unwrap();
                d.path().to_path_buf()
            })
            .await
            .unwrap();
        assert!(!exists(&path));

        assert_eq!(std::fs::read(&precious).unwrap(), b"keep");
        assert_eq!(entries(&outside), ["precious"]);
        let report = sup.shutdown().await;
        assert!(report.is_clean(), "{report}");
        std::fs::remove_dir_all(&outside).unwrap();
    });
}

#[test]
fn a_temp_root_swapped_for_a_symlink_is_refused() {
    scenario(Rt::Current, "swapped-root", async |base| {
        let sup = Supervisor::builder().temp_base(&base).start().unwrap();
        let root = sup.temp_root().to_path_buf();
        let before = sup.temp_file().await.unwrap();
        let victim = base.join("victim");
        std::fs::create_dir(&victim).unwrap();
        std::fs::write(victim.join("precious"), b"keep").unwrap();
        let moved = base.join("moved");
        std::fs::rename(&root, &moved).unwrap();
        symlink(&victim, &root).unwrap();

        let errors = [
            sup.temp_file().await.map(drop).unwrap_err(),
            sup.temp_dir().await.map(drop).unwrap_err(),
            sup.scope("s", async |s| s.temp_file().await.map(drop))
                .await
                .unwrap()
                .unwrap_err(),
        ];
        for (e, op) in errors.iter().zip([
            Operation::CreateTempFile,
            Operation::CreateTempDir,
            Operation::CreateTempFile,
        ]) {
            assert!(matches!(e, Error::TempRootReplaced { .. }), "{e:?}");
            assert_eq!(e.operation(), op);
            assert_eq!(e.path(), Some(root.as_path()));
        }
        assert_eq!(
            entries(&victim),
            ["precious"],
            "nothing created through the link"
        );
        let s = sup.stats();
        assert_eq!(s.kind(ResourceKind::TempFile).created, 1);
        assert_eq!(s.kind(ResourceKind::TempDir).created, 0);

        // The file made before the swap is removed from the real root, through its fd.
        drop(before);
        assert!(entries(&moved).is_empty());
        let report = sup.shutdown().await;
        assert!(!exists(&root), "the planted link is removed at shutdown");
        assert_eq!(std::fs::read(victim.join("precious")).unwrap(), b"keep");
        assert!(report.stats.is_consistent());
        std::fs::remove_dir_all(&victim).unwrap();
        std::fs::remove_dir(&moved).unwrap();
    });
}

#[test]
fn an_entry_replaced_by_another_is_left_alone_and_reported() {
    scenario(Rt::Current, "replaced", async |base| {
        let sup = Supervisor::builder().temp_base(&base).start().unwrap();
        let elsewhere = base.join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();

        // close(): the error names the operation and the path.
        let t = sup.temp_file().await.unwrap();
        let tp = t.path().to_path_buf();
        // Moved away, not deleted: the inode stays in use, so the stranger cannot get it.
        std::fs::rename(&tp, elsewhere.join("orig-file")).unwrap();
        std::fs::write(&tp, b"stranger").unwrap();
        let e = t.close().await.unwrap_err();
        assert_eq!(e.operation(), Operation::RemoveTempFile);
        assert_eq!(e.path(), Some(tp.as_path()));
        assert_eq!(std::fs::read(&tp).unwrap(), b"stranger");

        // drop: recorded as a failure.
        let d = sup.temp_dir().await.unwrap();
        let dp = d.path().to_path_buf();
        std::fs::rename(&dp, elsewhere.join("orig-dir")).unwrap();
        std::fs::create_dir(&dp).unwrap();
        std::fs::write(dp.join("theirs"), b"stranger").unwrap();
        drop(d);
        // The removal runs on the blocking pool.
        custodian_suite::eventually("dir failure recorded", || sup.failures().len() == 2).await;
        assert_eq!(entries(&dp), ["theirs"]);

        let failures = sup.failures();
        assert_eq!(failures.len(), 2, "{failures:?}");
        assert_eq!(failures[0].path.as_deref(), Some(tp.as_path()));
        assert_eq!(failures[1].path.as_deref(), Some(dp.as_path()));
        let s = sup.stats();
        for (kind, by) in [
            (ResourceKind::TempFile, ReleasePath::Close),
            (ResourceKind::TempDir, ReleasePath::Drop),
        ] {
            let k = s.kind(kind);
            assert_eq!((k.failures, k.released(by), k.live), (1, 1, 0), "{kind}");
        }
        assert!(s.is_consistent());
        let report = sup.shutdown().await;
        assert_eq!(report.failures.len(), 2);
        assert!(!report.is_clean());
        std::fs::remove_dir_all(&elsewhere).unwrap();
    });
}
