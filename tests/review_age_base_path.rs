//! Review: the age sweep opened its base without following a symlink in the *last*
//! component only. Any other component was resolved by the kernel, so a user owning a
//! directory on the path could swap an entry for a symlink and have the sweeper (root,
//! say, cleaning `/home/alice/cache/tmp` with `--all`) sweep a directory of its own
//! instead: root's old files under the link's target were removed. Now the path is
//! resolved one component at a time through fds, and a step out of something another user
//! owns into something not theirs is refused (`BaseRefusal::ForeignPath`), as systemd's
//! `CHASE_SAFE` does; links in directories only root and the sweeper control are still
//! followed.
//!
//! Needs root (to make another user's directory); says so and returns otherwise.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use custodian_suite::scratch_dir;
use tokio_custodian::{AgeSweep, BaseRefusal};

const NOBODY: u32 = 65534;

fn chown(path: &Path, uid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(uid)).unwrap();
}

const ROLE: &str = "CUSTODIAN_REVIEW_AGE_BASE_ROLE";

/// An age sweep of the base in `ROLE`, from the working directory it was started in;
/// does nothing otherwise.
#[test]
#[ignore = "run by the other test, in another process"]
fn role() {
    let Some(base) = std::env::var_os(ROLE) else {
        return;
    };
    match AgeSweep::new(base, Duration::ZERO).all(true).run() {
        Ok(report) => println!("SWEPT {}", report.removed.len()),
        Err(e) => println!("FAILED {e}"),
    }
}

#[test]
fn a_base_reached_through_another_users_symlink_is_refused() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: needs root to make another user's directory");
        return;
    }
    let scratch = scratch_dir("review-age-base-path");
    std::fs::set_permissions(&scratch, std::fs::Permissions::from_mode(0o755)).unwrap();
    // Root's own directory with an old file, which no sweep of the user's was meant for.
    let victim = scratch.join("victim");
    std::fs::create_dir_all(victim.join("tmp")).unwrap();
    std::fs::set_permissions(victim.join("tmp"), std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(victim.join("tmp/precious"), b"keep").unwrap();
    // The user's home, where `cache` was a directory and is now the user's symlink.
    let home = scratch.join("home");
    std::fs::create_dir(&home).unwrap();
    chown(&home, NOBODY);
    let cache = home.join("cache");
    std::os::unix::fs::symlink(&victim, &cache).unwrap();
    chown(&cache, NOBODY);
    // A relative link too, and one that climbs out with `..`.
    let rel = home.join("rel");
    std::os::unix::fs::symlink("../victim", &rel).unwrap();
    chown(&rel, NOBODY);

    for base in [
        cache.join("tmp"),
        rel.join("tmp"),
        home.join("..").join("victim").join("tmp"),
    ] {
        for all in [true, false] {
            let got = AgeSweep::new(&base, Duration::ZERO).all(all).run();
            let err = got.expect_err(&format!("{} was swept", base.display()));
            assert!(
                matches!(
                    BaseRefusal::of(&err),
                    Some(BaseRefusal::ForeignPath { uid: NOBODY, .. })
                ),
                "{}: {err}",
                base.display()
            );
            assert_eq!(err.io_kind(), Some(std::io::ErrorKind::PermissionDenied));
        }
        assert_eq!(
            std::fs::read(victim.join("tmp/precious")).unwrap(),
            b"keep",
            "root's file was removed through {}",
            base.display()
        );
    }

    // An absolute base is judged from `/`, whoever owns the working directory.
    let plain = scratch.join("plain");
    std::fs::create_dir(&plain).unwrap();
    std::fs::write(plain.join("old"), b"x").unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "role", "--ignored", "--nocapture"])
        .current_dir(&home)
        .env(ROLE, &plain)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("SWEPT 1"), "{text}");
    assert!(!plain.join("old").exists());
    // A link that only root controls is followed as before, and the base is swept.
    let trusted = scratch.join("trusted");
    std::os::unix::fs::symlink("victim", &trusted).unwrap();
    let report = AgeSweep::new(trusted.join("tmp"), Duration::ZERO)
        .all(true)
        .run()
        .unwrap();
    assert_eq!(report.removed.len(), 1, "{report}");
    assert!(!victim.join("tmp/precious").exists());
    // A missing base is still `NotFound`, an empty one too.
    for missing in [scratch.join("nothing"), "".into()] {
        let err = AgeSweep::new(&missing, Duration::ZERO).run().unwrap_err();
        assert_eq!(err.io_kind(), Some(std::io::ErrorKind::NotFound), "{err}");
    }
    std::fs::remove_dir_all(&scratch).unwrap();
}
