//! A security review of the age sweep (issue 18), as an attacker and a careless user
//! would try it, on real files, sockets and mounts. Each test broke the sweep before its
//! fix, or is kept as a regression test of what held.
//!
//! Names and options: another user's socket or file name stopped every sweep or its
//! report, a report line could be forged by a file name, exclusions written the usual
//! ways excluded nothing, the default mode removed other users' files when `other_users`
//! was set, and `--all` on `/` would have removed the operating system's old files. The
//! walk's races are in `review_age_walk.rs`, mounts and locks in `review_age_mounts.rs`.
//!
//! An age of zero makes everything made before the sweep old (its times are all in the
//! past), so no test waits.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use custodian_suite::age::{base_in, kept};
use tokio_custodian::{AgeKeptReason as Why, AgeReport, AgeSweep, BaseRefusal};

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
