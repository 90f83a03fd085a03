//! The crash journal's roots and state dir (issue 18): the journal outlives the root it
//! records, a root on a symlinked base is recorded resolved, a relative temp base is
//! refused, a lock inherited by a child before its `exec` is waited for, and the default
//! state dir trusts `$XDG_RUNTIME_DIR` only when it is the user's own.
//!
//! The `$XDG_RUNTIME_DIR` test starts supervisors as root and as nobody: it runs this
//! test binary again (its `role` test), under `setpriv` for nobody, with the part named
//! in `CUSTODIAN_LIFECYCLE_ROLE`. The journal acted on at most once is in
//! `crash_journal_acts_once.rs`; what the sweep makes of each record in
//! `crash_journal_records.rs`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use custodian_suite::journal::{
    as_nobody, chown, dead_owner, fake_root, line_of, private_dir, role_cmd, root_record, sweep,
    write_journal,
};
use custodian_suite::{LineChild, scratch_dir, serial};

const ROLE: &str = "CUSTODIAN_LIFECYCLE_ROLE";
const OWNER: &str = env!("CARGO_BIN_EXE_journal-owner");

/// The part run in another process (see the module docs); does nothing otherwise.
#[test]
#[ignore = "run by the other tests, in another process"]
fn role() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    match role.as_str() {
        "start" => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                match tokio_custodian::Supervisor::builder()
                    .default_state_dir()
                    .reap_abandoned(false)
                    .start()
                {
                    Ok(sup) => {
                        let j = sup.journal_path().map(Path::to_path_buf);
                        println!("JOURNAL {}", j.unwrap_or_default().display());
                        sup.shutdown().await;
                    }
                    Err(e) => println!("JOURNAL error: {e}"),
                }
            });
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn the_journal_outlives_the_root_when_the_last_handle_is_dropped() {
    let _s = serial();
    let scratch = scratch_dir("lifecycle-outlives");
    let state = scratch.join("state");
    let base = private_dir(&scratch.join("tmp"));
    // Enough files that the root's removal, in the background, is still running when
    // the owner is killed right after its last handle's drop.
    let mut owner = LineChild::spawn(
        Command::new(OWNER)
            .args([&state, &base])
            .args(["1", "0", "40000"])
            .stdin(Stdio::null()),
    );
    let slow = Duration::from_secs(60);
    let root = PathBuf::from(owner.wait_line("root ", slow).unwrap());
    owner.wait_line("ready", slow).unwrap();
    owner.wait_line("dropped", slow).unwrap();
    owner.kill();
    assert!(owner.wait_exit(slow).is_some());
    assert!(
        root.exists(),
        "inconclusive: the root was removed before the kill (raise the file count)"
    );
    let journals: Vec<_> = std::fs::read_dir(&state).unwrap().flatten().collect();
    assert_eq!(journals.len(), 1, "the journal was dropped before its root");
    let report = sweep(&state);
    assert_eq!(report.removed, vec![root.clone()], "{report}");
    assert!(!root.exists());
    assert_eq!(std::fs::read_dir(&state).unwrap().count(), 0, "{report}");
    std::fs::remove_dir_all(&scratch).unwrap();
}

#[test]
fn a_root_on_a_symlinked_base_is_recorded_resolved_and_recovered() {
    let _s = serial();
    let scratch = scratch_dir("lifecycle-symlinked-base");
    let state = scratch.join("state");
    let real = private_dir(&scratch.join("var-home"));
    // `/home -> var/home`: a base reached through a symlink.
    let link = scratch.join("home");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let mut owner = LineChild::spawn(
        Command::new(OWNER)
            .args([&state, &link])
            .args(["1000", "1"])
            .stdin(Stdio::null()),
    );
    let slow = Duration::from_secs(30);
    let root = PathBuf::from(owner.wait_line("root ", slow).unwrap());
    owner.wait_line("ready", slow).unwrap();
    assert!(
        root.starts_with(&real),
        "recorded resolved: {}",
        root.display()
    );
    owner.kill();
    assert!(owner.wait_exit(slow).is_some());
    let report = sweep(&state);
    assert_eq!(report.removed, vec![root.clone()], "{report}");
    assert!(report.is_clean() && !root.exists(), "{report}");
    assert_eq!(std::fs::read_dir(&state).unwrap().count(), 0, "{report}");
    owner.drain(Duration::from_millis(100));
    std::fs::remove_dir_all(&scratch).unwrap();
}

#[tokio::test]
async fn a_relative_temp_base_is_refused() {
    let err = tokio_custodian::Supervisor::builder()
        .temp_base("relative/base")
        .start()
        .unwrap_err();
    assert_eq!(err.operation(), tokio_custodian::Operation::CreateTempRoot);
    assert_eq!(err.io_kind(), Some(std::io::ErrorKind::InvalidInput));
    assert!(!Path::new("relative").exists());
}

#[test]
fn a_lock_inherited_by_a_child_before_its_exec_is_waited_for() {
    let _s = serial();
    let scratch = scratch_dir("lifecycle-inherited-lock");
    let state = private_dir(&scratch.join("state"));
    let base = private_dir(&scratch.join("tmp"));
    let dir = fake_root(&base, 'c');
    let journal = write_journal(&state, &[dead_owner(), root_record(&dir)].concat());
    // A child forked by the dead owner holds the journal's lock until its `exec`: here
    // another open file description, released 100 ms later.
    let held = std::fs::File::open(&journal).unwrap();
    rustix::fs::flock(&held, rustix::fs::FlockOperation::LockExclusive).unwrap();
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        drop(held);
    });
    let report = sweep(&state);
    release.join().unwrap();
    assert_eq!(report.removed, vec![dir.clone()], "{report}");
    assert!(!journal.exists() && report.is_clean(), "{report}");
    std::fs::remove_dir_all(&scratch).unwrap();
}

/// `Supervisor::builder().default_state_dir().start()` as `who`, with `xdg` as
/// `$XDG_RUNTIME_DIR`: the journal's path (or the error).
fn start_as(nobody: bool, xdg: &Path) -> String {
    let mut cmd = role_cmd("role", ROLE, "start");
    cmd.env("XDG_RUNTIME_DIR", xdg);
    let cmd = if nobody { as_nobody(&cmd) } else { cmd };
    line_of(cmd, "JOURNAL ")
}

#[test]
fn an_inherited_xdg_runtime_dir_locks_nobody_out_in_either_order() {
    let _s = serial();
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: needs root (a root start, a user start with setpriv)");
        return;
    }
    for root_first in [true, false] {
        let scratch = scratch_dir("lifecycle-xdg");
        std::fs::set_permissions(&scratch, std::fs::Permissions::from_mode(0o755)).unwrap();
        // The user's runtime dir, inherited by a root start (`sudo -E`, `su` without `-`).
        let xdg = private_dir(&scratch.join("run-user"));
        chown(&xdg, 65534);
        let order: &[bool] = if root_first {
            &[false, true]
        } else {
            &[true, false]
        };
        for &nobody in order {
            let journal = start_as(nobody, &xdg);
            let expected = if nobody {
                xdg.join("custodian")
            } else {
                PathBuf::from("/run/custodian")
            };
            assert!(
                Path::new(&journal).starts_with(&expected),
                "root first: {root_first}, nobody: {nobody}: {journal}"
            );
        }
        std::fs::remove_dir_all(&scratch).unwrap();
    }
    // A runtime dir that is not the user's own (another owner, or open to others) is
    // not trusted.
    let scratch = scratch_dir("lifecycle-xdg-other");
    std::fs::set_permissions(&scratch, std::fs::Permissions::from_mode(0o755)).unwrap();
    let open = scratch.join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    chown(&open, 65534);
    let journal = start_as(true, &open);
    assert!(
        journal.starts_with("error") || journal.is_empty(),
        "{journal}"
    );
    assert!(!open.join("custodian").exists());
    std::fs::remove_dir_all(&scratch).unwrap();
}
