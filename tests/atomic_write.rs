//! `AtomicFile` and `atomic_write` on real files: the target is untouched until commit,
//! every other path discards the temp file (no name left, no fd left), the existing
//! target's mode is kept, a symlink is replaced and never followed, a create-only commit
//! refuses an existing target, and a device such as `/dev/full` is refused before
//! anything is written. Full disks, read-only mounts and `umask 000` are in
//! `atomic_faults.rs`.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use custodian_suite::{Rt, entries, scenario};
use tokio::io::AsyncWriteExt;
use tokio_custodian::{AtomicFile, Durability, Operation, ReleasePath, ResourceKind, Supervisor};

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

/// Names in `dir` that an atomic write may leave (it must leave none).
fn temps(dir: &Path) -> Vec<String> {
    entries(dir)
        .into_iter()
        .filter(|n| n.starts_with(tokio_custodian::ATOMIC_TEMP_PREFIX))
        .collect()
}

#[test]
fn commit_replaces_the_target_only_at_commit_and_leaves_nothing() {
    scenario(Rt::Multi(2), "atomic-commit", async |dir| {
        let sup = Supervisor::builder().start().unwrap();
        let target = dir.join("state.json");
        std::fs::write(&target, b"old").unwrap();
        let mut f = sup.atomic_file(&target).await.unwrap();
        f.write_all(b"new content").await.unwrap();
        f.flush().await.unwrap();
        assert_eq!(
            std::fs::read(&target).unwrap(),
            b"old",
            "untouched before commit"
        );
        let live = sup.live();
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].kind(), ResourceKind::TempFile);
        assert_eq!(live[0].label(), "atomic state.json");
        f.commit().await.unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"new content");
        assert_eq!(entries(&dir), vec!["state.json".to_owned()]);
        let stats = sup.stats();
        assert_eq!(stats.live(), 0);
        assert_eq!(
            stats
                .kind(ResourceKind::TempFile)
                .released(ReleasePath::Close),
            1
        );
        // The one-liner, twice (a new target, then over it).
        let other = dir.join("other");
        sup.atomic_write(&other, "one").await.unwrap();
        sup.atomic_write(&other, vec![b'x'; 100_000]).await.unwrap();
        assert_eq!(std::fs::read(&other).unwrap(), vec![b'x'; 100_000]);
        assert!(temps(&dir).is_empty());
        assert!(sup.shutdown().await.is_clean());
        std::fs::remove_file(&target).unwrap();
        std::fs::remove_file(&other).unwrap();
    });
}

#[test]
fn drop_error_and_cancellation_discard_the_temp_file() {
    scenario(Rt::Multi(2), "atomic-discard", async |dir| {
        let sup = Supervisor::builder().start().unwrap();
        let target = dir.join("t");
        std::fs::write(&target, b"old").unwrap();
        // Drop.
        let mut f = sup.atomic_file(&target).await.unwrap();
        f.write_all(b"lost").await.unwrap();
        drop(f);
        // Explicit discard.
        sup.atomic_file(&target)
            .await
            .unwrap()
            .discard()
            .await
            .unwrap();
        // A scope that fails, one that panics, one that is cancelled mid-write.
        let t = target.clone();
        let r = sup
            .scope("fails", async move |s| {
                let mut f = s.atomic_file(&t).await.unwrap();
                f.write_all(b"half").await.unwrap();
                Err::<(), _>(std::io::Error::other("the body failed"))
            })
            .await
            .unwrap();
        assert!(r.is_err());
        let t = target.clone();
        let s2 = sup.clone();
        let panicked = tokio::spawn(async move {
            s2.scope("panics", async move |s| {
                let mut f = s.atomic_file(&t).await.unwrap();
                f.write_all(b"half").await.unwrap();
                panic!("boom");
            })
            .await
        })
        .await;
        assert!(panicked.is_err());
        let t = target.clone();
        let cut = tokio::time::timeout(Duration::from_millis(50), async {
            let mut f = sup.atomic_file(&t).await.unwrap();
            loop {
                f.write_all(&[7u8; 4096]).await.unwrap();
            }
        })
        .await;
        assert!(cut.is_err());
        // Acquisition futures dropped at every point.
        for _ in 0..20 {
            let fut = sup.atomic_file(&target);
            drop(tokio::time::timeout(Duration::from_micros(1), fut).await);
        }
        custodian_suite::eventually("every writer released", || sup.stats().live() == 0).await;
        assert_eq!(std::fs::read(&target).unwrap(), b"old");
        assert_eq!(entries(&dir), vec!["t".to_owned()], "no temp file is left");
        assert!(sup.shutdown().await.is_clean());
        std::fs::remove_file(&target).unwrap();
    });
}

#[test]
fn keeps_the_mode_replaces_symlinks_and_refuses_devices() {
    scenario(Rt::Current, "atomic-mode", async |dir| {
        let sup = Supervisor::builder().start().unwrap();
        // An existing 0640 target keeps 0640 (and its owner).
        let target = dir.join("secret");
        std::fs::write(&target, b"old").unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o640)).unwrap();
        sup.atomic_write(&target, "new").await.unwrap();
        assert_eq!(mode(&target), 0o640);
        // A symlink is replaced by a regular file; what it pointed to is untouched.
        let pointee = dir.join("pointee");
        std::fs::write(&pointee, b"keep me").unwrap();
        let link = dir.join("link");
        std::os::unix::fs::symlink(&pointee, &link).unwrap();
        sup.atomic_write(&link, "replaced the link").await.unwrap();
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_file()
        );
        assert_eq!(std::fs::read(&pointee).unwrap(), b"keep me");
        assert_eq!(std::fs::read(&link).unwrap(), b"replaced the link");
        // A create-only commit refuses an existing target and leaves it alone.
        let err = sup
            .atomic_file(&target)
            .await
            .unwrap()
            .commit_noclobber()
            .await
            .unwrap_err();
        assert_eq!(err.io_kind(), Some(std::io::ErrorKind::AlreadyExists));
        assert_eq!(err.operation(), Operation::AtomicCommit);
        assert_eq!(err.path(), Some(target.as_path()));
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
        let fresh = dir.join("fresh");
        let mut f = sup.atomic_file(&fresh).await.unwrap();
        f.write_all(b"created").await.unwrap();
        f.commit_noclobber().await.unwrap();
        assert_eq!(std::fs::read(&fresh).unwrap(), b"created");
        // `Durability::Atomic` commits without fsyncs.
        let mut f = sup.atomic_file(&fresh).await.unwrap();
        f.write_all(b"fast").await.unwrap();
        f.commit_with(Durability::Atomic).await.unwrap();
        assert_eq!(std::fs::read(&fresh).unwrap(), b"fast");
        // A directory and a device are refused before anything is created.
        std::fs::create_dir(dir.join("d")).unwrap();
        let err = sup.atomic_write(dir.join("d"), "x").await.unwrap_err();
        assert_eq!(err.io_kind(), Some(std::io::ErrorKind::IsADirectory));
        let err = sup.atomic_write("/dev/full", "x").await.unwrap_err();
        assert_eq!(
            err.io_kind(),
            Some(std::io::ErrorKind::InvalidInput),
            "{err}"
        );
        assert_eq!(err.operation(), Operation::AtomicWrite);
        assert!(
            std::fs::metadata("/dev/full")
                .unwrap()
                .file_type()
                .is_char_device()
        );
        // A missing directory names the target.
        let err = sup
            .atomic_write(dir.join("no/such/x"), "x")
            .await
            .unwrap_err();
        assert_eq!(err.io_kind(), Some(std::io::ErrorKind::NotFound));
        assert!(err.to_string().contains("no/such/x"), "{err}");
        let mut names = entries(&dir);
        names.sort();
        assert_eq!(names, ["d", "fresh", "link", "pointee", "secret"]);
        assert!(!AtomicFile::is_fsync_failure(&err));
        assert!(sup.shutdown().await.is_clean());
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::create_dir(&dir).unwrap();
    });
}

#[test]
fn a_batch_renames_only_after_every_file_is_ready() {
    scenario(Rt::Multi(2), "atomic-batch", async |dir| {
        let sup = Supervisor::builder().start().unwrap();
        std::fs::create_dir(dir.join("sub")).unwrap();
        let names = ["a", "b", "sub/c"];
        for n in names {
            std::fs::write(dir.join(n), b"old").unwrap();
        }
        let open_all = async |tag: &str| {
            let mut files = Vec::new();
            for n in names {
                let mut f = sup.atomic_file(dir.join(n)).await.unwrap();
                f.write_all(format!("{tag} {n}").as_bytes()).await.unwrap();
                files.push(f);
            }
            files
        };
        // `b` turns into a directory before the commit: nothing is replaced.
        let files = open_all("first").await;
        std::fs::remove_file(dir.join("b")).unwrap();
        std::fs::create_dir(dir.join("b")).unwrap();
        let err = AtomicFile::commit_batch(files).await.unwrap_err();
        assert_eq!(
            err.io_kind(),
            Some(std::io::ErrorKind::IsADirectory),
            "{err}"
        );
        assert_eq!(err.path(), Some(dir.join("b").as_path()));
        assert_eq!(std::fs::read(dir.join("a")).unwrap(), b"old");
        assert_eq!(std::fs::read(dir.join("sub/c")).unwrap(), b"old");
        std::fs::remove_dir(dir.join("b")).unwrap();
        // Then the whole batch, two directories.
        let files = open_all("second").await;
        AtomicFile::commit_batch(files).await.unwrap();
        for n in names {
            assert_eq!(
                std::fs::read(dir.join(n)).unwrap(),
                format!("second {n}").as_bytes()
            );
        }
        assert!(temps(&dir).is_empty() && temps(&dir.join("sub")).is_empty());
        assert_eq!(sup.stats().live(), 0);
        assert!(sup.shutdown().await.is_clean());
        std::fs::remove_dir_all(dir.join("sub")).unwrap();
        std::fs::remove_file(dir.join("a")).unwrap();
        std::fs::remove_file(dir.join("b")).unwrap();
    });
}
