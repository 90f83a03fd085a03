//! A security review of the age sweep (issue 18), as an attacker and a careless user
//! would try it, on real files, sockets and mounts. Each test broke the sweep before its
//! fix: another user's socket or file name stopped every sweep or its report, a report
//! line could be forged by a file name, exclusions written the usual ways excluded
//! nothing, the default mode removed other users' files when `other_users` was set, and
//! `--all` on `/` would have removed the operating system's old files.
//!
//! An age of zero makes everything made before the sweep old (its times are all in the
//! past), so no test waits.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use custodian_suite::{is_isolated, run_isolated, scratch_dir};
use rustix::fs::OFlags;
use tokio_custodian::{AgeKeptReason as Why, AgeReport, AgeSweep, BaseRefusal};

const ISOLATED: &str = "CUSTODIAN_REVIEW_AGE_ISOLATED";

fn base_in(tag: &str) -> (PathBuf, PathBuf) {
    let scratch = scratch_dir(tag);
    let base = scratch.join("base");
    std::fs::create_dir(&base).unwrap();
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o700)).unwrap();
    (scratch, base)
}

fn kept(report: &AgeReport, path: &Path) -> Option<Why> {
    report
        .kept
        .iter()
        .find(|k| k.path == path)
        .map(|k| k.reason.clone())
}

/// Any local user can bind a unix socket to a name that is not UTF-8; `/proc/net/unix`
/// then lists it, and the sweep failed to read the list: every sweep on the machine
/// stopped with "stream did not contain valid UTF-8".
#[test]
fn a_listening_socket_with_a_non_utf8_name_does_not_stop_the_sweep() {
    let (scratch, base) = base_in("review-age-sock");
    let sock = scratch.join(OsStr::from_bytes(b"sock-\xff\xfe"));
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    std::fs::write(base.join("old"), b"x").unwrap();
    let report = AgeSweep::new(&base, Duration::ZERO)
        .all(true)
        .dry_run(true)
        .run()
        .expect("a socket elsewhere must not stop the sweep");
    assert_eq!(report.removed, vec![base.join("old")]);
    // A listening socket inside the base with such a name is still seen as listening.
    let inside = base.join(OsStr::from_bytes(b"live-\xff.sock"));
    let _live = std::os::unix::net::UnixListener::bind(&inside).unwrap();
    let report = AgeSweep::new(&base, Duration::ZERO)
        .all(true)
        .run()
        .unwrap();
    assert_eq!(
        kept(&report, &inside),
        Some(Why::ListeningSocket),
        "{report}"
    );
    assert!(inside.exists());
    std::fs::remove_dir_all(&scratch).unwrap();
}

/// A file name that is not UTF-8 (any user can make one in /tmp) made the report fail
/// to serialize: `custodian sweep --json` exited 2 without a report, after removing.
#[test]
fn a_non_utf8_name_does_not_stop_the_json_report() {
    let (scratch, base) = base_in("review-age-json");
    std::fs::write(base.join(OsStr::from_bytes(b"bad-\xffname")), b"x").unwrap();
    std::fs::create_dir(base.join(OsStr::from_bytes(b"dir-\xfe"))).unwrap();
    std::fs::write(base.join(OsStr::from_bytes(b"dir-\xfe/in")), b"x").unwrap();
    for all in [false, true] {
        let report = AgeSweep::new(&base, Duration::ZERO)
            .all(all)
            .dry_run(true)
            .run()
            .unwrap();
        let json = serde_json::to_string(&report).expect("the report serializes");
        assert!(json.contains("bad-\u{FFFD}name"), "{json}");
        let back: AgeReport = serde_json::from_str(&json).unwrap();
        // The default mode does not enter `dir-\xfe`; `all` removes its file too.
        let entries = if all { 3 } else { 2 };
        assert_eq!(back.removed.len() + back.kept.len(), entries, "{json}");
    }
    std::fs::remove_dir_all(&scratch).unwrap();
}

/// A file name with a newline wrote a line of its own into the report, so anyone able
/// to name a file in the base could forge what a person reads ("removed: ...", "kept:
/// ... (locked)").
#[test]
fn a_name_cannot_forge_a_line_of_the_report() {
    let (scratch, base) = base_in("review-age-forge");
    // A name cannot hold a `/`; a line of the report can be forged without one.
    let forged = "x\n  kept: etc-passwd (locked)\r\u{1b}[2K";
    std::fs::write(base.join(forged), b"x").unwrap();
    std::fs::write(base.join("plain"), b"x").unwrap();
    for all in [false, true] {
        let report = AgeSweep::new(&base, Duration::ZERO)
            .all(all)
            .dry_run(true)
            .run()
            .unwrap();
        let text = report.to_string();
        assert_eq!(text.lines().count(), 3, "one line per entry:\n{text}");
        assert!(
            !text.lines().any(|l| l.starts_with("  kept: etc-passwd")),
            "{text}"
        );
        assert!(!text.contains('\r') && !text.contains('\u{1b}'), "{text:?}");
        assert!(text.contains(r"x\n  kept: etc-passwd (locked)\r"), "{text}");
    }
    std::fs::remove_dir_all(&scratch).unwrap();
}

/// Exclusions written the ways people write them (a trailing `/` for a directory, a
/// leading `./`, the absolute path as `systemd-tmpfiles` takes it) matched nothing, and
/// what they named was removed.
#[test]
fn exclusions_written_as_people_write_them_exclude() {
    let (scratch, base) = base_in("review-age-exclude");
    for d in ["keep-a", "keep-b", "keep-c", "x/keep-d", "x/keep-e", "gone"] {
        std::fs::create_dir_all(base.join(d)).unwrap();
        std::fs::write(base.join(d).join("f"), b"x").unwrap();
    }
    let abs = |rel: &str| format!("{}/{rel}", base.display());
    let patterns = [
        "keep-a/".to_owned(),
        "./keep-b".to_owned(),
        abs("keep-c"),
        "x/keep-d/".to_owned(),
        format!("{}/", abs("x/keep-e")),
    ];
    for dry_run in [true, false] {
        let report = patterns
            .iter()
            .fold(AgeSweep::new(&base, Duration::ZERO).all(true), |s, p| {
                s.exclude(p.as_str())
            })
            .dry_run(dry_run)
            .run()
            .unwrap();
        for (d, p) in ["keep-a", "keep-b", "keep-c", "x/keep-d", "x/keep-e"]
            .iter()
            .zip(&patterns)
        {
            assert_eq!(
                kept(&report, &base.join(d)),
                Some(Why::Excluded { pattern: p.clone() }),
                "{d} by {p}:\n{report}"
            );
        }
        assert!(report.removed.contains(&base.join("gone")), "{report}");
    }
    for d in ["keep-a", "keep-b", "keep-c", "x/keep-d", "x/keep-e"] {
        assert!(base.join(d).join("f").exists(), "{d}");
    }
    // An invalid path pattern is still an error.
    assert!(
        AgeSweep::new(&base, Duration::ZERO)
            .exclude("[/")
            .run()
            .is_err()
    );
    std::fs::remove_dir_all(&scratch).unwrap();
}

/// `other_users` is documented as a switch of `all`; set without it, the default mode
/// removed another user's files inside a root of custodian's shape.
#[test]
fn other_users_does_not_widen_the_default_mode() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: making another user's file needs root");
        return;
    }
    let (scratch, base) = base_in("review-age-others");
    let root = base.join("custodian-0123456789abcdef0123456789abcdef");
    std::fs::create_dir(&root).unwrap();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700)).unwrap();
    let theirs = root.join("theirs");
    std::fs::write(&theirs, b"x").unwrap();
    rustix::fs::chown(
        &theirs,
        Some(rustix::fs::Uid::from_raw(65534)),
        Some(rustix::fs::Gid::from_raw(65534)),
    )
    .unwrap();
    std::fs::write(root.join("mine"), b"x").unwrap();
    let report = AgeSweep::new(&base, Duration::ZERO)
        .other_users(true)
        .symlinks(true)
        .run()
        .unwrap();
    assert!(theirs.exists(), "{report}");
    assert_eq!(
        kept(&report, &theirs),
        Some(Why::OtherUser { uid: 65534 }),
        "{report}"
    );
    assert_eq!(report.removed, vec![root.join("mine")], "{report}");
    std::fs::remove_dir_all(&scratch).unwrap();
}

/// `custodian sweep --base / --all --older-than 1d` as root listed 370,000 entries of
/// the operating system (`/etc`, `/usr`...) to remove. The file system's root is refused
/// with `all`; the default mode (custodian's own only) may still look there.
#[test]
fn all_refuses_the_file_system_root() {
    let err = AgeSweep::new("/", Duration::from_secs(86400))
        .all(true)
        .dry_run(true)
        .run()
        .expect_err("`/` with all");
    assert_eq!(
        BaseRefusal::of(&err),
        Some(&BaseRefusal::FileSystemRoot),
        "{err}"
    );
    assert_eq!(err.io_kind(), Some(std::io::ErrorKind::PermissionDenied));
    assert!(err.to_string().contains("root"), "{err}");
    // Also when named another way.
    let err = AgeSweep::new("/tmp/..", Duration::from_secs(86400))
        .all(true)
        .dry_run(true)
        .run()
        .unwrap_err();
    assert_eq!(BaseRefusal::of(&err), Some(&BaseRefusal::FileSystemRoot));
    // The default mode only ever takes custodian's own abandoned roots: allowed.
    let report = AgeSweep::new("/", Duration::from_secs(86400))
        .dry_run(true)
        .run()
        .unwrap();
    assert!(
        report.removed.is_empty()
            || report.removed.iter().all(|p| {
                p.components().nth(1).is_some_and(|c| {
                    c.as_os_str().as_bytes().starts_with(b"custodian-")
                        || c.as_os_str().as_bytes().starts_with(b".custodian-atomic-")
                })
            })
    );
}

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

/// What held, kept as a regression test: bind mounts of the same file system (same
/// `st_dev` as everything around them) of a file and of a directory, inside an old
/// directory, inside a root of custodian's shape, over a root-shaped name and over an
/// atomic temp's name: never entered, never removed, in both modes.
#[test]
fn same_device_bind_mounts_are_never_entered() {
    run_isolated("bind_isolated", ISOLATED, true);
}

#[test]
#[ignore = "run isolated by same_device_bind_mounts_are_never_entered"]
fn bind_isolated() {
    if !is_isolated(ISOLATED, "bind_isolated") {
        return;
    }
    let (scratch, base) = base_in("review-age-bind");
    let outside = scratch.join("outside");
    std::fs::create_dir_all(outside.join("dir")).unwrap();
    std::fs::write(outside.join("file"), b"keep").unwrap();
    std::fs::write(outside.join("dir/inner"), b"keep").unwrap();
    std::fs::set_permissions(outside.join("dir"), std::fs::Permissions::from_mode(0o700)).unwrap();
    let root = base.join("custodian-0123456789abcdef0123456789abcdef");
    let over_root = base.join("custodian-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    let over_temp = base.join(".custodian-atomic-0123456789abcdef");
    for d in [base.join("old"), root.clone(), over_root.clone()] {
        std::fs::create_dir(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    std::fs::write(&over_temp, b"x").unwrap();
    let bind = |from: &Path, to: &Path| {
        if !to.exists() {
            if from.is_dir() {
                std::fs::create_dir(to).unwrap();
            } else {
                std::fs::write(to, b"").unwrap();
            }
        }
        let ok = std::process::Command::new("mount")
            .arg("--bind")
            .arg(from)
            .arg(to)
            .status()
            .unwrap();
        assert!(
            ok.success(),
            "mount --bind {} {}",
            from.display(),
            to.display()
        );
    };
    let mounts = [
        (outside.join("file"), base.join("old/file")),
        (outside.join("dir"), base.join("old/dir")),
        (outside.join("file"), root.join("file")),
        (outside.join("dir"), root.join("dir")),
        (outside.join("dir"), over_root.clone()),
        (outside.join("file"), over_temp.clone()),
    ];
    for (from, to) in &mounts {
        bind(from, to);
    }
    let same_dev = |p: &Path| {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(p).unwrap().dev() == std::fs::metadata(&base).unwrap().dev()
    };
    assert!(
        mounts.iter().all(|(_, to)| same_dev(to)),
        "bind mounts share st_dev"
    );
    for (all, dry_run) in [(false, true), (false, false), (true, true), (true, false)] {
        let report = AgeSweep::new(&base, Duration::ZERO)
            .all(all)
            .dry_run(dry_run)
            .run()
            .unwrap();
        for (_, to) in &mounts {
            assert!(!report.removed.contains(to), "{report}");
            assert!(
                !report.removed.iter().any(|p| p.starts_with(to)),
                "{report}"
            );
        }
        assert_eq!(std::fs::read(outside.join("file")).unwrap(), b"keep");
        assert_eq!(std::fs::read(outside.join("dir/inner")).unwrap(), b"keep");
    }
    for (_, to) in mounts.iter().rev() {
        let _ = std::process::Command::new("umount").arg(to).status();
    }
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

/// What held, kept as a regression test: a root whose `flock` was taken by a process
/// that exited and is now held only by a child that inherited the fd is live (the lock
/// belongs to the open file, not to a pid): kept in both modes, real and dry.
#[test]
fn a_root_locked_through_an_inherited_fd_is_kept() {
    let (scratch, base) = base_in("review-age-inherited");
    let root = base.join("custodian-0123456789abcdef0123456789abcdef");
    std::fs::create_dir(&root).unwrap();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(root.join("work"), b"x").unwrap();
    // The shell locks, starts a sleeper holding fd 9, prints its pid and exits.
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(r#"exec 9<"$1" && flock -x 9 && { sleep 60 9<&9 >/dev/null 2>&1 & echo $!; }"#)
        .arg("sh")
        .arg(&root)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let pid: i32 = String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    for (all, dry_run) in [(false, true), (false, false), (true, true), (true, false)] {
        let report = AgeSweep::new(&base, Duration::ZERO)
            .all(all)
            .dry_run(dry_run)
            .run()
            .unwrap();
        assert_eq!(kept(&report, &root), Some(Why::Locked), "{report}");
        assert!(report.removed.is_empty(), "{report}");
    }
    assert!(root.join("work").exists());
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    std::fs::remove_dir_all(&scratch).unwrap();
}

/// A real sweep took the `flock` of every directory it entered, young ones too, for as
/// long as it walked them: a live program locking its own young directory meanwhile (a
/// custodian temp root is made with `mkdir`, `open`, `flock`; a job's work dir, a
/// `flock -n DIR` guard) was refused. A young directory is never removed: its lock is not
/// the sweep's to take.
#[test]
fn a_real_sweep_does_not_lock_young_directories() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let (scratch, base) = base_in("review-age-young-lock");
    let work = base.join("work");
    std::fs::create_dir(&work).unwrap();
    for i in 0..20_000 {
        std::fs::write(work.join(format!("f{i:05}")), b"x").unwrap();
    }
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let locker = {
        let (work, stop) = (work.clone(), stop.clone());
        std::thread::spawn(move || {
            let (mut tries, mut refused) = (0u32, 0u32);
            let lock = rustix::fs::FlockOperation::NonBlockingLockExclusive;
            while !stop.load(Ordering::Relaxed) {
                let f = std::fs::File::open(&work).unwrap();
                tries += 1;
                if rustix::fs::flock(&f, lock).is_err() {
                    refused += 1;
                }
            }
            (tries, refused)
        })
    };
    // An hour: everything here is young, nothing is removed.
    let mut sweeps = 0;
    let start = std::time::Instant::now();
    while sweeps < 3 || start.elapsed() < Duration::from_secs(1) {
        let report = AgeSweep::new(&base, Duration::from_secs(3600))
            .all(true)
            .run()
            .unwrap();
        assert!(report.removed.is_empty(), "{report}");
        sweeps += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let (tries, refused) = locker.join().unwrap();
    // Each sweep still tests the lock (a locked directory is not entered): for an instant,
    // which a preempted sweeper on a loaded machine stretches a little. Holding it for the
    // walk, as before, refused 95% of the tries.
    assert!(
        u64::from(refused) * 100 < u64::from(tries),
        "{refused} of {tries} locks of a young directory refused during {sweeps} sweeps"
    );
    // And a young directory someone locks is still not entered: its old file stays.
    let held = base.join("held");
    std::fs::create_dir(&held).unwrap();
    std::fs::write(held.join("old"), b"x").unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    std::fs::write(held.join("young"), b"x").unwrap();
    let guard = std::fs::File::open(&held).unwrap();
    rustix::fs::flock(&guard, rustix::fs::FlockOperation::LockExclusive).unwrap();
    let report = AgeSweep::new(&base, Duration::from_secs(1))
        .all(true)
        .exclude("/work")
        .run()
        .unwrap();
    assert_eq!(kept(&report, &held), Some(Why::Locked), "{report}");
    assert!(held.join("old").exists());
    drop(guard);
    let report = AgeSweep::new(&base, Duration::from_secs(1))
        .all(true)
        .exclude("/work")
        .run()
        .unwrap();
    assert_eq!(report.removed, vec![held.join("old")], "{report}");
    std::fs::remove_dir_all(&scratch).unwrap();
}
