//! A security review of the age sweep (issue 18), as an attacker and a careless user
//! would try it, on real files, sockets and mounts. Each test broke the sweep before its
//! fix, or is kept as a regression test of what held.
//!
//! The walk against a tree changed under it: entries swapped for symlinks and a directory
//! renamed out of the base mid-walk never lead outside it, and a base reached through a
//! symlink is refused however it is written. Names and options are in
//! `review_age_names.rs`, mounts and locks in `review_age_mounts.rs`.
//!
//! An age of zero makes everything made before the sweep old (its times are all in the
//! past), so no test waits.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use custodian_suite::age::base_in;
use custodian_suite::scratch_dir;
use rustix::fs::OFlags;
use tokio_custodian::{AgeSweep, BaseRefusal};

/// Writes `x` to `name` in `dir`, creating it, never through a symlink.
fn write_nofollow(dir: &std::os::fd::OwnedFd, name: &str) -> rustix::io::Result<()> {
    let f = rustix::fs::openat(
        dir,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::NOFOLLOW,
        rustix::fs::Mode::from_raw_mode(0o600),
    )?;
    rustix::io::write(&f, b"x").map(drop)
}

/// What held, kept as a regression test: a directory and a file swapped for symlinks to
/// old files of the sweeper's own outside the base, atomically and over and over while
/// sweeps run (both modes, real and dry). Only the base's own entries may go; nothing
/// outside, and never the link's target.
#[test]
fn entries_swapped_for_symlinks_mid_walk_never_lead_outside() {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    use std::sync::atomic::{AtomicBool, Ordering};
    let (scratch, base) = base_in("review-age-swap");
    let outside = scratch.join("outside");
    std::fs::create_dir(&outside).unwrap();
    let mut precious = Vec::new();
    for i in 0..50 {
        let f = outside.join(format!("precious-{i}"));
        std::fs::write(&f, b"keep").unwrap();
        precious.push(f);
    }
    let root = "custodian-0123456789abcdef0123456789abcdef";
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let swapper = {
        let (base, outside, stop) = (base.clone(), outside.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut swaps = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // Refill what a sweep removed, then swap each real entry with a link.
                // The refills never follow a link: the swaps below turn these names into
                // symlinks to `outside` at any moment.
                for name in ["dir", root] {
                    let d = base.join(name);
                    let _ = rustix::fs::mkdir(&d, rustix::fs::Mode::from_raw_mode(0o700));
                    if let Ok(fd) = rustix::fs::open(
                        &d,
                        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW,
                        rustix::fs::Mode::empty(),
                    ) {
                        let _ = rustix::fs::fchmod(&fd, rustix::fs::Mode::from_raw_mode(0o700));
                        let _ = write_nofollow(&fd, "inside");
                    }
                    let link = base.join(format!("{name}.link"));
                    let _ = std::os::unix::fs::symlink(&outside, &link);
                }
                if let Ok(fd) = rustix::fs::open(
                    &base,
                    OFlags::RDONLY | OFlags::DIRECTORY,
                    rustix::fs::Mode::empty(),
                ) {
                    let _ = write_nofollow(&fd, "file");
                }
                let _ =
                    std::os::unix::fs::symlink(outside.join("precious-0"), base.join("file.link"));
                for name in ["dir", root, "file"] {
                    let (a, b) = (base.join(name), base.join(format!("{name}.link")));
                    for _ in 0..20 {
                        if renameat_with(CWD, &a, CWD, &b, RenameFlags::EXCHANGE).is_ok() {
                            swaps += 1;
                        }
                    }
                }
            }
            swaps
        })
    };
    let start = std::time::Instant::now();
    let (mut sweeps, mut removed) = (0, 0);
    while start.elapsed() < Duration::from_secs(3) {
        for (all, dry_run) in [(true, false), (false, false), (true, true)] {
            let report = AgeSweep::new(&base, Duration::ZERO)
                .all(all)
                .symlinks(true)
                .dry_run(dry_run)
                .run()
                .unwrap();
            for p in &report.removed {
                assert!(p.starts_with(&base), "{}", p.display());
            }
            removed += usize::from(!dry_run) * report.removed.len();
            sweeps += 1;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    for f in &precious {
        assert_eq!(std::fs::read(f).unwrap(), b"keep", "{}", f.display());
    }
    assert!(removed > 0 && swaps > 100, "{sweeps} sweeps, {swaps} swaps");
    println!("{sweeps} sweeps removed {removed} entries during {swaps} swaps; outside intact");
    std::fs::remove_dir_all(&scratch).unwrap();
}

/// A directory renamed out of the base while the sweep walked it: the walk holds its fd,
/// and went on removing there, outside the base (a user moving a project out of the
/// way of a running sweep lost it all). The walk now stops below a directory that left
/// the base: at most the entry being judged at the rename may still go.
#[test]
fn a_directory_renamed_out_of_the_base_mid_walk_is_not_followed() {
    let (scratch, base) = base_in("review-age-renamed");
    let sub = base.join("project/sub");
    std::fs::create_dir_all(&sub).unwrap();
    const FILES: usize = 20_000;
    for i in 0..FILES {
        std::fs::write(sub.join(format!("f{i:05}")), b"x").unwrap();
    }
    let saved = scratch.join("saved");
    let mover = {
        let (base, saved) = (base.clone(), saved.clone());
        std::thread::spawn(move || {
            // The walk judges names in order: once the first is gone, it is in there.
            let first = base.join("project/sub/f00000");
            let start = std::time::Instant::now();
            while first.exists() && start.elapsed() < Duration::from_secs(60) {
                std::hint::spin_loop();
            }
            std::fs::rename(base.join("project"), &saved).unwrap();
        })
    };
    let report = AgeSweep::new(&base, Duration::ZERO)
        .all(true)
        .run()
        .unwrap();
    mover.join().unwrap();
    let left = std::fs::read_dir(saved.join("sub")).map_or(0, Iterator::count);
    assert!(
        left > FILES / 2,
        "the sweep went on outside the base: {left} of {FILES} files left, {} removed",
        report.removed.len()
    );
    assert!(!report.is_clean(), "a walk cut short is reported");
    std::fs::remove_dir_all(&scratch).unwrap();
}

/// A symlinked base is refused, but a trailing `/` (as a shell completes a directory's
/// name) or `/.` made the kernel follow the link whatever `O_NOFOLLOW` said: the sweep
/// ran where the link pointed.
#[test]
fn a_symlinked_base_is_refused_however_it_is_written() {
    let scratch = scratch_dir("review-age-link");
    let target = scratch.join("elsewhere");
    std::fs::create_dir(&target).unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(target.join("precious"), b"keep").unwrap();
    let link = scratch.join("link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let written = |tail: &str| PathBuf::from(format!("{}{tail}", link.display()));
    for base in [
        written(""),
        written("/"),
        written("//"),
        written("/."),
        written("/./"),
    ] {
        for all in [false, true] {
            let got = AgeSweep::new(&base, Duration::ZERO).all(all).run();
            let err = got.expect_err(&format!("{} must be refused", base.display()));
            assert_eq!(BaseRefusal::of(&err), Some(&BaseRefusal::Symlink), "{err}");
        }
    }
    assert_eq!(std::fs::read(target.join("precious")).unwrap(), b"keep");
    // A real directory written with a trailing `/` is swept as before.
    let real = PathBuf::from(format!("{}/", target.display()));
    let report = AgeSweep::new(&real, Duration::ZERO)
        .all(true)
        .run()
        .unwrap();
    assert_eq!(report.removed.len(), 1, "{report}");
    std::fs::remove_dir_all(&scratch).unwrap();
}
