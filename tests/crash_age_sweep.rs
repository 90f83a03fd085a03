//! The age sweep (`tokio_custodian::AgeSweep`, issues 10 and 18), on real files: the
//! default mode removes only custodian's own abandoned leftovers; `all` judges every
//! entry at every depth and keeps whatever is live (young, locked by another process,
//! listening, a fifo, another user's, a live supervisor's state); a symlinked or
//! world-writable base is refused; a dry run takes no lock.
//!
//! "Old" means all three times older than the age, and ctime cannot be set back: each
//! scenario makes its old entries, waits past a 2 s age, then makes its young ones.
//! The edges (dry runs, deep trees, mounts) are in `crash_age_sweep_edges.rs`.

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use custodian_suite::{LineChild, scratch_dir};
use tokio_custodian::{AgeKeptReason as Why, AgeSweep, BaseRefusal};

#[path = "support/age_sweep.rs"]
mod common;
use common::{AGE, HEX32, abandoned_root, age_past, chown_nobody, is_root, kept};

const LOCK: &str = "CUSTODIAN_AGE_SWEEP_LOCK";
/// A lock held by another process: `kind` is `flock` or `posix` (`fcntl` `F_SETLK`).
/// The process runs [`lock_holder`] and is killed when the guard drops.
struct Holder(LineChild);

impl Holder {
    fn new(file: &Path, kind: &str) -> Holder {
        let mut c = Command::new(std::env::current_exe().unwrap());
        c.args(["--exact", "lock_holder", "--ignored", "--nocapture"])
            .env(LOCK, format!("{kind}:{}", file.display()))
            .stdin(Stdio::null());
        let mut child = LineChild::spawn(&mut c);
        child
            .wait_line("LOCKED", Duration::from_secs(20))
            .expect("the lock holder");
        Holder(child)
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        self.0.kill();
        let _ = self.0.wait_exit(Duration::from_secs(10));
    }
}

/// Run by [`Holder`]: takes the lock named by `LOCK`, says so, and waits to be killed.
#[test]
#[ignore = "run by Holder"]
fn lock_holder() {
    let Ok(spec) = std::env::var(LOCK) else {
        return;
    };
    let (kind, path) = spec.split_once(':').unwrap();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    match kind {
        "flock" => rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive).unwrap(),
        _ => rustix::fs::fcntl_lock(&file, rustix::fs::FlockOperation::LockExclusive).unwrap(),
    }
    println!("\nLOCKED");
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
#[allow(deprecated)] // `clean_older_than` is the default mode: run on the old code too.
fn the_default_mode_removes_only_custodians_own_abandoned_leftovers() {
    let scratch = scratch_dir("age-own");
    let base = scratch.join("base");
    std::fs::create_dir(&base).unwrap();
    let canary = scratch.join("canary");
    std::fs::write(&canary, b"keep").unwrap();
    let root = abandoned_root(&base, HEX32);
    // Inside custodian's own root a symlink is ours too: the link goes, never its target.
    symlink(&canary, root.join("link")).unwrap();
    let temp = base.join(".custodian-atomic-0123456789abcdef");
    std::fs::write(&temp, b"torn").unwrap();
    // Other programs' old things, and the live data inside an old directory.
    std::fs::write(base.join("old-file"), b"x").unwrap();
    std::fs::create_dir_all(base.join("old-dir/nested")).unwrap();
    std::fs::write(base.join("old-dir/nested/file"), b"x").unwrap();
    std::fs::write(base.join("old-dir/written-later"), b"x").unwrap();
    symlink(&canary, base.join("old-link")).unwrap();
    // Named like a root, but 0755: not ours.
    let lookalike = base.join(format!("custodian-{}", "a".repeat(32)));
    std::fs::create_dir(&lookalike).unwrap();
    std::fs::set_permissions(&lookalike, std::fs::Permissions::from_mode(0o755)).unwrap();
    // Another user's root-shaped dir and file.
    let theirs = base.join(format!("custodian-{}", "b".repeat(32)));
    if is_root() {
        abandoned_root(&base, &"b".repeat(32));
        chown_nobody(&theirs.join("left-behind"));
        chown_nobody(&theirs);
    }
    // A live supervisor's root (locked for its life), made before the wait so it is old.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let sup = rt.block_on(async {
        tokio_custodian::Supervisor::builder()
            .temp_base(&base)
            .reap_abandoned(false)
            .handle_signals(false)
            .start()
            .unwrap()
    });
    let live_root = sup.temp_root().to_path_buf();
    age_past();
    std::fs::write(base.join("old-dir/written-later"), b"fresh").unwrap();

    let dry = tokio_custodian::clean_older_than(&base, AGE, true).unwrap();
    assert_eq!(dry.removed.len(), 4, "{dry:?}");
    assert!(root.exists() && temp.exists(), "a dry run removes nothing");
    let report = tokio_custodian::clean_older_than(&base, AGE, false).unwrap();
    let mut removed = report.removed.clone();
    removed.sort();
    let mut want = vec![
        root.join("left-behind"),
        root.join("link"),
        root.clone(),
        temp.clone(),
    ];
    want.sort();
    assert_eq!(removed, want, "{report}");
    assert_eq!(dry.removed.len(), report.removed.len());
    assert!(!root.exists() && !temp.exists());
    for p in ["old-file", "old-dir/nested/file", "old-dir/written-later"] {
        assert!(base.join(p).exists(), "{p} kept");
    }
    assert_eq!(kept(&report, &base.join("old-file")), Some(Why::NotOurs));
    assert!(base.join("old-link").symlink_metadata().is_ok());
    assert_eq!(std::fs::read(&canary).unwrap(), b"keep");
    assert_eq!(kept(&report, &lookalike), Some(Why::NotARoot));
    assert_eq!(kept(&report, &live_root), Some(Why::Locked));
    if is_root() {
        assert_eq!(kept(&report, &theirs), Some(Why::OtherUser { uid: 65534 }));
        assert!(theirs.join("left-behind").exists());
    }
    assert!(report.is_clean(), "{report}");
    // The live supervisor is untouched and still works.
    rt.block_on(async {
        drop(sup.temp_file().await.unwrap());
        sup.shutdown().await;
    });
    std::fs::remove_dir_all(&scratch).unwrap();
}

#[test]
fn all_judges_every_entry_and_keeps_whatever_is_live() {
    let scratch = scratch_dir("age-all");
    let base = scratch.join("base");
    let old = base.join("old");
    std::fs::create_dir_all(old.join("nest/deeper")).unwrap();
    std::fs::write(old.join("nest/deeper/file"), b"x").unwrap();
    std::fs::create_dir(old.join("empty")).unwrap();
    for name in ["plain", "fresh", "flocked", "posix"] {
        std::fs::write(old.join(name), b"x").unwrap();
    }
    let _flock = Holder::new(&old.join("flocked"), "flock");
    let _posix = Holder::new(&old.join("posix"), "posix");
    let _listener = std::os::unix::net::UnixListener::bind(old.join("sock")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        old.join("fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    if is_root() {
        std::fs::write(old.join("other"), b"x").unwrap();
        chown_nobody(&old.join("other"));
    }
    // A live supervisor's state dir (its journal locked) and temp root, both old.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    std::fs::create_dir(old.join("tmp")).unwrap();
    let sup = rt.block_on(async {
        tokio_custodian::Supervisor::builder()
            .temp_base(old.join("tmp"))
            .state_dir(old.join("state"))
            .handle_signals(false)
            .start()
            .unwrap()
    });
    let journals: Vec<PathBuf> = std::fs::read_dir(old.join("state"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(journals.len(), 1, "{journals:?}");
    age_past();
    // Written 2 s after its directory last changed: the "34 ms old" file.
    std::fs::write(old.join("fresh"), b"still being written").unwrap();
    std::fs::create_dir(base.join("young-dir")).unwrap();

    let sweep = AgeSweep::new(&base, AGE).all(true);
    let dry = sweep.clone().dry_run(true).run().unwrap();
    assert!(old.join("plain").exists(), "a dry run removes nothing");
    let report = sweep.run().unwrap();
    let mut want = vec![
        old.join("plain"),
        old.join("empty"),
        old.join("nest/deeper/file"),
        old.join("nest/deeper"),
        old.join("nest"),
    ];
    want.sort();
    let mut removed = report.removed.clone();
    removed.sort();
    assert_eq!(removed, want, "{report}");
    let mut dry_removed = dry.removed.clone();
    dry_removed.sort();
    assert_eq!(dry_removed, want, "the dry run says the same: {dry}");
    for p in &want {
        assert!(p.symlink_metadata().is_err(), "{} removed", p.display());
    }
    let expect = [
        ("fresh", Why::Young),
        ("flocked", Why::Locked),
        ("posix", Why::Locked),
        ("sock", Why::ListeningSocket),
        ("fifo", Why::Fifo),
        ("state", Why::NotEmpty),
        ("tmp", Why::NotEmpty),
    ];
    for (name, why) in expect {
        assert_eq!(
            kept(&report, &old.join(name)),
            Some(why),
            "{name}: {report}"
        );
        assert!(old.join(name).exists(), "{name} survives");
    }
    assert_eq!(kept(&report, &journals[0]), Some(Why::Locked), "{report}");
    assert_eq!(
        kept(&report, sup.temp_root()),
        Some(Why::Locked),
        "{report}"
    );
    assert_eq!(kept(&report, &old), Some(Why::NotEmpty));
    assert_eq!(kept(&report, &base.join("young-dir")), Some(Why::Young));
    if is_root() {
        assert_eq!(
            kept(&report, &old.join("other")),
            Some(Why::OtherUser { uid: 65534 })
        );
    }
    assert_eq!(
        std::fs::read(old.join("fresh")).unwrap(),
        b"still being written"
    );
    assert!(journals[0].exists());
    assert!(report.is_clean(), "{report}");
    // The reasons read as words, and the JSON says its unit.
    let text = report.to_string();
    assert!(
        text.contains("(listening socket)") && text.contains("(locked)"),
        "{text}"
    );
    let json = serde_json::to_value(&report).unwrap();
    assert!(
        json["took_ms"].is_number() && json.get("took").is_none(),
        "{json}"
    );
    rt.block_on(async {
        drop(sup.temp_file().await.unwrap());
        sup.shutdown().await;
    });
    std::fs::remove_dir_all(&scratch).unwrap();
}

#[test]
fn exclusions_other_users_and_symlinks_are_opt_in() {
    let scratch = scratch_dir("age-opts");
    let base = scratch.join("base");
    std::fs::create_dir_all(base.join("tmux-0")).unwrap();
    std::fs::write(base.join("tmux-0/default"), b"x").unwrap();
    std::fs::create_dir_all(base.join("keep/sub")).unwrap();
    std::fs::write(base.join("keep/sub/a.pid"), b"x").unwrap();
    std::fs::write(base.join("keep/sub/b.log"), b"x").unwrap();
    std::fs::write(base.join("data.csv"), b"x").unwrap();
    let canary = scratch.join("canary");
    std::fs::write(&canary, b"keep").unwrap();
    symlink(&canary, base.join("link")).unwrap();
    if is_root() {
        std::fs::write(base.join("theirs"), b"x").unwrap();
        chown_nobody(&base.join("theirs"));
    }
    age_past();
    let report = AgeSweep::new(&base, AGE)
        .all(true)
        .exclude("*.pid")
        .exclude("/data.csv")
        .run()
        .unwrap();
    let why = |p: &str| kept(&report, &base.join(p));
    assert_eq!(
        why("tmux-0"),
        Some(Why::Excluded {
            pattern: "tmux-*".into()
        })
    );
    assert_eq!(
        why("keep/sub/a.pid"),
        Some(Why::Excluded {
            pattern: "*.pid".into()
        })
    );
    assert!(!base.join("keep/sub/b.log").exists());
    assert!(base.join("data.csv").exists() && base.join("tmux-0/default").exists());
    assert_eq!(why("link"), Some(Why::Symlink));
    if is_root() {
        assert_eq!(why("theirs"), Some(Why::OtherUser { uid: 65534 }));
    }
    let report = AgeSweep::new(&base, AGE)
        .all(true)
        .symlinks(true)
        .other_users(true)
        .exclude("*.pid")
        .run()
        .unwrap();
    assert!(base.join("link").symlink_metadata().is_err(), "{report}");
    assert!(report.is_clean(), "{report}");
    assert_eq!(
        std::fs::read(&canary).unwrap(),
        b"keep",
        "the link's target"
    );
    assert!(!base.join("theirs").exists() && !base.join("data.csv").exists());
    let err = AgeSweep::new(&base, AGE)
        .exclude("[unclosed")
        .run()
        .unwrap_err();
    assert_eq!(
        err.io_kind(),
        Some(std::io::ErrorKind::InvalidInput),
        "{err}"
    );
    std::fs::remove_dir_all(&scratch).unwrap();
}

#[test]
#[allow(deprecated)]
fn a_symlinked_or_world_writable_base_is_refused() {
    let scratch = scratch_dir("age-base");
    let real = scratch.join("real");
    std::fs::create_dir(&real).unwrap();
    std::fs::write(real.join("old"), b"x").unwrap();
    let link = scratch.join("link");
    symlink(&real, &link).unwrap();
    let err = tokio_custodian::clean_older_than(&link, Duration::ZERO, false).unwrap_err();
    assert_eq!(err.operation(), tokio_custodian::Operation::AgeSweep);
    assert_eq!(BaseRefusal::of(&err), Some(&BaseRefusal::Symlink), "{err}");
    assert!(err.to_string().contains("symlink"), "{err}");

    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o777)).unwrap();
    let err = tokio_custodian::clean_older_than(&real, Duration::ZERO, false).unwrap_err();
    assert_eq!(err.io_kind(), Some(std::io::ErrorKind::PermissionDenied));
    assert!(
        matches!(
            BaseRefusal::of(&err),
            Some(BaseRefusal::WritableByOthers { mode: 0o777, .. })
        ),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains(&format!("chmod 700 {}", real.display())) && text.contains("chmod +t"),
        "{text}"
    );
    if is_root() {
        // Sticky but another user's: still refused. Root-owned and sticky (like /tmp): swept.
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o1777)).unwrap();
        chown_nobody(&real);
        assert!(tokio_custodian::clean_older_than(&real, Duration::ZERO, false).is_err());
        rustix::fs::chown(&real, Some(rustix::fs::Uid::ROOT), None).unwrap();
        tokio_custodian::clean_older_than(&real, Duration::ZERO, false).unwrap();
    }
    assert!(real.join("old").exists());
    std::fs::remove_dir_all(&scratch).unwrap();
}
