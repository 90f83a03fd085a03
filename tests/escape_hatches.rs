//! The escape hatches of temp files and temp dirs, one model for both (tempfile's):
//! `keep()` moves the entry out of custodian's reach (into the temp base) so that it
//! survives shutdown; `persist(path)` replaces like `rename(2)`; `persist_noclobber(path)`
//! refuses an existing target atomically; every failure hands the guard back, still
//! managed. Also: the named creation futures do nothing before their first poll.

use std::io::ErrorKind;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::task::Poll;

use custodian_suite::{Rt, entries, exists, scenario};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio_custodian::{
    CreateTempDir, CreateTempFile, PersistError, ResourceKind, Supervisor, TempDir, TempFile,
};

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

/// The live entry with `id`: its scope and path.
fn live(sup: &Supervisor, id: tokio_custodian::ResourceId) -> Option<(String, Option<PathBuf>)> {
    sup.live()
        .into_iter()
        .find(|r| r.id() == id)
        .map(|r| (r.scope().to_owned(), r.path().map(Path::to_path_buf)))
}

#[test]
fn keep_moves_file_and_dir_out_of_the_root_and_they_survive_shutdown() {
    scenario(Rt::Multi(2), "keep-survives", async |base| {
        let sup = Supervisor::builder().temp_base(&base).start().unwrap();
        let root = sup.temp_root().to_path_buf();
        let mut t = sup.temp().suffix(".bin").file().await.unwrap();
        let t_name = t.path().file_name().unwrap().to_owned();
        t.write_all(b"kept bytes").await.unwrap();
        let d = sup.temp_dir().await.unwrap();
        let d_name = d.path().file_name().unwrap().to_owned();
        std::fs::write(d.path().join("inside"), b"1").unwrap();

        let (mut file, fpath) = t.keep().await.unwrap();
        let dpath = d.keep().await.unwrap();
        // Into the base (the root's parent), under the same name.
        assert_eq!(fpath, base.join(&t_name));
        assert_eq!(dpath, base.join(&d_name));
        assert_eq!(mode(&fpath), 0o600, "kept file");
        assert_eq!(mode(&dpath), 0o700, "kept dir");
        assert_eq!(sup.stats().live(), 0, "no longer tracked");
        assert!(entries(&root).is_empty(), "{:?}", entries(&root));
        // The open file still works, at its new place.
        file.rewind().await.unwrap();
        let mut s = String::new();
        file.read_to_string(&mut s).await.unwrap();
        assert_eq!(s, "kept bytes");
        drop(file);

        let report = sup.shutdown().await;
        assert!(report.stats.is_consistent(), "{report}");
        assert!(report.is_clean(), "{report}");
        assert!(!exists(&root), "the root is removed");
        assert_eq!(std::fs::read(&fpath).unwrap(), b"kept bytes");
        assert_eq!(std::fs::read(dpath.join("inside")).unwrap(), b"1");
        // Out of custodian's reach: ours to delete.
        std::fs::remove_file(&fpath).unwrap();
        std::fs::remove_dir_all(&dpath).unwrap();
    });
}

#[test]
fn persist_replaces_a_file_and_an_empty_dir_like_rename() {
    scenario(Rt::Multi(2), "persist-replaces", async |base| {
        let sup = Supervisor::builder().temp_base(&base).start().unwrap();
        let out = base.join("out");
        std::fs::create_dir(&out).unwrap();
        let target = out.join("report.txt");
        std::fs::write(&target, b"old").unwrap();
        let mut t = sup.temp_file().await.unwrap();
        t.write_all(b"new").await.unwrap();
        let kept = t.persist(&target).await.unwrap();
        assert_eq!(kept.path(), target);
        drop(kept);
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
        assert_eq!(mode(&target), 0o600);

        // A dir replaces an empty dir...
        let empty = out.join("empty");
        std::fs::create_dir(&empty).unwrap();
        let d = sup.temp_dir().await.unwrap();
        std::fs::write(d.path().join("a"), b"1").unwrap();
        assert_eq!(d.persist(&empty).await.unwrap(), empty);
        assert!(exists(&empty.join("a")));
        assert_eq!(mode(&empty), 0o700);
        // ... but not a full one: the guard comes back, the target is untouched.
        let d = sup.temp_dir().await.unwrap();
        let e = d.persist(&empty).await.unwrap_err();
        assert_eq!(
            e.error.io_kind(),
            Some(ErrorKind::DirectoryNotEmpty),
            "{}",
            e.error
        );
        let d = e.into_guard().expect("handed back");
        assert!(d.registration().is_live());
        assert_eq!(entries(&empty), ["a"]);
        let dpath = d.path().to_path_buf();
        d.close().await.unwrap();
        assert!(!exists(&dpath));

        let report = sup.shutdown().await;
        assert!(report.stats.is_consistent(), "{report}");
        std::fs::remove_dir_all(&out).unwrap();
    });
}

#[test]
fn persist_noclobber_refuses_an_existing_target_and_hands_the_guard_back() {
    scenario(Rt::Multi(2), "noclobber", async |base| {
        let sup = Supervisor::builder().temp_base(&base).start().unwrap();
        let root = sup.temp_root().to_path_buf();
        let out = base.join("out");
        std::fs::create_dir(&out).unwrap();
        let file_target = out.join("taken.txt");
        std::fs::write(&file_target, b"precious").unwrap();
        let dir_target = out.join("empty-dir");
        std::fs::create_dir(&dir_target).unwrap();
        let link_target = out.join("dangling");
        std::os::unix::fs::symlink(out.join("nowhere"), &link_target).unwrap();

        let paths = sup
            .scope("job", async |s| {
                let mut f = s.temp().label("report").file().await?;
                f.write_all(b"mine").await.unwrap();
                // Refused by a file, then by a dangling symlink (never followed).
                let mut guard = f;
                for target in [&file_target, &link_target] {
                    let e: PersistError<TempFile> =
                        guard.persist_noclobber(target).await.unwrap_err();
                    assert_eq!(e.error.io_kind(), Some(ErrorKind::AlreadyExists));
                    assert_eq!(e.error.path(), Some(target.as_path()));
                    guard = e.into_guard().expect("the temp file is handed back");
                }
                let f = guard;
                // Even an empty dir is not replaced.
                let d = s.temp_dir().await?;
                std::fs::write(d.path().join("a"), b"1").unwrap();
                let e: PersistError<TempDir> = d.persist_noclobber(&dir_target).await.unwrap_err();
                assert_eq!(e.error.io_kind(), Some(ErrorKind::AlreadyExists));
                let d = e.guard.expect("the temp dir is handed back");
                for (id, path) in [(f.id(), f.path()), (d.id(), d.path())] {
                    let (scope, at) = live(&sup, id).expect("still registered");
                    assert_eq!(scope, "job");
                    assert_eq!(at.as_deref(), Some(path));
                    assert!(exists(path));
                }
                assert_eq!(std::fs::read(f.path()).unwrap(), b"mine");
                Ok::<_, tokio_custodian::Error>((f.path().to_path_buf(), d.path().to_path_buf()))
            })
            .await
            .unwrap()
            .unwrap();
        // Targets unchanged.
        assert_eq!(std::fs::read(&file_target).unwrap(), b"precious");
        assert!(entries(&dir_target).is_empty());
        assert_eq!(
            std::fs::read_link(&link_target).unwrap(),
            out.join("nowhere")
        );
        assert!(!exists(&out.join("nowhere")));
        // The guards, dropped with the scope's body, were removed at scope end.
        assert!(!exists(&paths.0) && !exists(&paths.1));
        assert!(entries(&root).is_empty(), "{:?}", entries(&root));
        let s = sup.stats();
        assert!(s.is_consistent(), "{s:?}");
        assert_eq!(s.live(), 0);

        // And a free target takes it.
        let t = sup.temp_file().await.unwrap();
        let free = out.join("free.txt");
        drop(t.persist_noclobber(&free).await.unwrap());
        assert!(exists(&free));
        let report = sup.shutdown().await;
        assert!(report.stats.is_consistent(), "{report}");
        std::fs::remove_dir_all(&out).unwrap();
    });
}

/// A directory on another file system than `base`: `/dev/shm` (a tmpfs here).
fn other_fs_dir(base: &Path) -> Option<PathBuf> {
    let shm = Path::new("/dev/shm");
    let other = std::fs::metadata(shm).ok()?.dev() != std::fs::metadata(base).ok()?.dev();
    other.then(|| {
        let dir = shm.join(format!("custodian-escape-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    })
}

#[test]
fn a_move_across_file_systems_hands_the_guard_back_still_managed() {
    scenario(Rt::Multi(2), "exdev", async |base| {
        let Some(shm) = other_fs_dir(&base) else {
            eprintln!("skipped: /dev/shm is on the same file system as the temp base");
            return;
        };
        let sup = Supervisor::builder().temp_base(&base).start().unwrap();
        let root = sup.temp_root().to_path_buf();
        let created = sup
            .scope("job", async |s| {
                let mut f = s.temp().file().await?;
                f.write_all(b"data").await.unwrap();
                let d = s.temp_dir().await?;
                std::fs::write(d.path().join("a"), b"1").unwrap();
                let mut f = Some(f);
                let mut d = Some(d);
                for noclobber in [false, true] {
                    let (t, old) = (shm.join("f"), f.take().unwrap());
                    let e = if noclobber {
                        old.persist_noclobber(&t).await.unwrap_err()
                    } else {
                        old.persist(&t).await.unwrap_err()
                    };
                    assert_eq!(e.error.io_kind(), Some(ErrorKind::CrossesDevices));
                    assert_eq!(e.error.path(), Some(t.as_path()));
                    f = e.guard;
                    let (t, old) = (shm.join("d"), d.take().unwrap());
                    let e = if noclobber {
                        old.persist_noclobber(&t).await.unwrap_err()
                    } else {
                        old.persist(&t).await.unwrap_err()
                    };
                    assert_eq!(e.error.io_kind(), Some(ErrorKind::CrossesDevices));
                    d = e.guard;
                }
                let (f, d) = (f.expect("file handed back"), d.expect("dir handed back"));
                assert!(f.registration().is_live() && d.registration().is_live());
                assert_eq!(live(&sup, f.id()).unwrap().0, "job");
                assert_eq!(std::fs::read(f.path()).unwrap(), b"data");
                assert!(exists(&d.path().join("a")));
                assert!(entries(&shm).is_empty(), "nothing half-copied");
                Ok::<_, tokio_custodian::Error>(sup.stats())
            })
            .await
            .unwrap()
            .unwrap();
        assert!(created.is_consistent(), "{created:?}");
        assert_eq!(created.live(), 2);
        let s = sup.stats();
        assert!(s.is_consistent(), "{s:?}");
        assert_eq!(s.live(), 0);
        assert!(entries(&root).is_empty(), "{:?}", entries(&root));
        let report = sup.shutdown().await;
        assert!(report.is_clean(), "{report}");
        assert!(entries(&shm).is_empty());
        std::fs::remove_dir(&shm).unwrap();
    });
}

#[test]
fn creation_futures_are_named_lazy_and_debug() {
    fn assert_traits<F: std::future::Future + Send + Unpin + std::fmt::Debug>(_: &F) {}
    scenario(Rt::Current, "named-futures", async |base| {
        let sup = Supervisor::builder().temp_base(&base).start().unwrap();
        let root = sup.temp_root().to_path_buf();
        let f: CreateTempFile = sup.root().temp().prefix("lazy-").file();
        let d: CreateTempDir = sup.root().temp_dir();
        assert_traits(&f);
        assert_traits(&d);
        assert!(format!("{f:?}").contains("lazy-"), "{f:?}");
        // Not polled: nothing created, nothing counted.
        tokio::task::yield_now().await;
        assert!(entries(&root).is_empty());
        drop((f, d));
        let s = sup.stats();
        let created =
            s.kind(ResourceKind::TempFile).created + s.kind(ResourceKind::TempDir).created;
        assert_eq!(created, 0, "{s:?}");
        // Polled, they create and register.
        let t = sup.root().temp_file().await.unwrap();
        assert!(t.registration().is_live());
        drop(t);
        assert!(sup.shutdown().await.stats.is_consistent());
    });
}

#[test]
fn keep_never_replaces_a_name_taken_in_the_base() {
    scenario(Rt::Multi(2), "keep-noclobber", async |base| {
        let sup = Supervisor::builder().temp_base(&base).start().unwrap();
        let t = sup.temp_file().await.unwrap();
        let d = sup.temp_dir().await.unwrap();
        // Someone else's entries at the names `keep` would take.
        let (ft, dt) = (
            base.join(t.path().file_name().unwrap()),
            base.join(d.path().file_name().unwrap()),
        );
        std::fs::write(&ft, b"theirs").unwrap();
        std::fs::create_dir(&dt).unwrap();
        let e = t.keep().await.unwrap_err();
        assert_eq!(e.error.io_kind(), Some(ErrorKind::AlreadyExists));
        let t = e.into_guard().expect("file handed back");
        let e = d.keep().await.unwrap_err();
        assert_eq!(e.error.io_kind(), Some(ErrorKind::AlreadyExists));
        let d = e.into_guard().expect("dir handed back");
        assert!(t.registration().is_live() && d.registration().is_live());
        assert_eq!(std::fs::read(&ft).unwrap(), b"theirs");
        assert!(entries(&dt).is_empty());
        let report = sup.shutdown().await;
        assert!(report.stats.is_consistent(), "{report}");
        assert!(!t.registration().is_live() && !exists(t.path()) && !exists(d.path()));
        std::fs::remove_file(&ft).unwrap();
        std::fs::remove_dir(&dt).unwrap();
    });
}

#[test]
fn keep_dropped_at_any_point_leaves_it_kept_or_removed_never_half_managed() {
    scenario(Rt::Multi(2), "keep-cancel", async |base| {
        let (mut kept, mut removed) = (0, 0);
        for round in 0..60u64 {
            let sup = Supervisor::builder()
                .temp_base(&base)
                .reap_abandoned(false)
                .start()
                .unwrap();
            let root = sup.temp_root().to_path_buf();
            let mut t = sup.temp_file().await.unwrap();
            t.write_all(b"x").await.unwrap();
            let d = sup.temp_dir().await.unwrap();
            let names = [t.path(), d.path()].map(|p| base.join(p.file_name().unwrap()));
            // Polled `n` times (0: never), then dropped, wherever it is.
            let n = (round % 5) as usize;
            poll_then_drop(t.keep(), n).await;
            poll_then_drop(d.keep(), n).await;
            let report = sup.shutdown().await;
            assert!(report.stats.is_consistent(), "{report}");
            assert_eq!(report.stats.live(), 0, "{report}");
            assert!(!exists(&root), "round {round}: the root is gone");
            for name in &names {
                if exists(name) {
                    kept += 1;
                    std::fs::remove_dir_all(name)
                        .or_else(|_| std::fs::remove_file(name))
                        .unwrap();
                } else {
                    removed += 1;
                }
            }
            assert!(entries(&base).is_empty(), "{:?}", entries(&base));
        }
        println!("kept {kept}, removed {removed}");
    });
}

/// Polls `fut` up to `n` times, yielding to the runtime in between, then drops it.
async fn poll_then_drop<F: std::future::Future>(fut: F, n: usize) {
    let mut fut = std::pin::pin!(fut);
    for _ in 0..n {
        let ready = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx).is_ready())).await;
        if ready {
            return;
        }
        tokio::task::yield_now().await;
    }
}
