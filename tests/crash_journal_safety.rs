//! What the crash sweep refuses to do (issue 10), on fabricated journals: a reused pid
//! is never signalled, another boot's children are assumed gone, a torn or flipped
//! record is never acted on (nor panics), and symlinks or forged paths never get
//! anything outside the recorded temp root removed. Each refusal has a positive control
//! showing that the same journal, made honest, is acted on.

use std::os::unix::fs::{PermissionsExt, symlink};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use custodian_suite::journal::{
    child_record, dead_owner, fake_root, owner_record, root_record, root_record_with_id, sleeper,
    start_time, sweep, write_journal,
};
use custodian_suite::{pid_running, scratch_dir, serial};
use tokio_custodian::{SkipReason, SweepReport};

/// A state dir (0700) and a temp base in a fresh scratch dir.
fn dirs(tag: &str) -> (PathBuf, PathBuf, PathBuf) {
    let scratch = scratch_dir(tag);
    let (state, base) = (scratch.join("state"), scratch.join("tmp"));
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::create_dir(&base).unwrap();
    (scratch, state, base)
}

fn has(report: &SweepReport, f: impl Fn(&SkipReason) -> bool) -> bool {
    report.skipped.iter().any(|s| f(&s.reason))
}

#[test]
fn a_reused_pid_is_never_signalled_and_a_proven_one_is() {
    let _s = serial();
    let (scratch, state, _) = dirs("journal-reuse");
    let mut other = sleeper();
    let pid = other.0.id();
    // Recorded with another start time: the pid now belongs to an unrelated process.
    let journal = write_journal(
        &state,
        &[dead_owner(), child_record(pid, start_time(pid) + 1)].concat(),
    );
    let report = sweep(&state);
    assert!(
        pid_running(pid),
        "an unrelated process was signalled: {report}"
    );
    assert!(has(&report, |r| *r == SkipReason::PidReused), "{report}");
    assert!(report.stopped.is_empty());
    assert!(!journal.exists(), "{report}");
    // Control: the same record with the right start time is acted on.
    write_journal(
        &state,
        &[dead_owner(), child_record(pid, start_time(pid))].concat(),
    );
    let report = sweep(&state);
    assert_eq!(report.stopped.len(), 1, "{report}");
    assert!(!report.stopped[0].kill_needed, "sleep honours SIGTERM");
    assert!(
        other.0.wait().unwrap().code().is_none(),
        "killed by a signal"
    );
    std::fs::remove_dir_all(&scratch).unwrap();
}

#[test]
fn after_a_reboot_children_are_assumed_gone_and_files_are_cleaned() {
    let _s = serial();
    let (scratch, state, base) = dirs("journal-reboot");
    let mut proc_ = sleeper();
    let pid = proc_.0.id();
    let dir = fake_root(&base, 'a');
    let other_boot = "00000000-0000-4000-8000-000000000000";
    write_journal(
        &state,
        &[
            owner_record(
                std::process::id(),
                start_time(std::process::id()),
                other_boot,
            ),
            root_record(&dir),
            child_record(pid, start_time(pid)),
        ]
        .concat(),
    );
    let report = sweep(&state);
    assert_eq!(report.dead_owners.len(), 1, "{report}");
    assert_eq!(
        report.dead_owners[0].proof,
        tokio_custodian::DeathProof::OtherBoot
    );
    assert!(
        pid_running(pid),
        "a process of this boot was signalled: {report}"
    );
    assert!(has(&report, |r| *r == SkipReason::OtherBoot), "{report}");
    assert!(!dir.exists(), "{report}");
    assert_eq!(report.removed, vec![dir]);
    assert!(report.is_clean(), "{report}");
    proc_.0.kill().unwrap();
    proc_.0.wait().unwrap();
    std::fs::remove_dir_all(&scratch).unwrap();
}

#[test]
fn torn_and_flipped_records_are_reported_never_acted_on() {
    let _s = serial();
    let (scratch, state, base) = dirs("journal-torn");
    let mut proc_ = sleeper();
    let pid = proc_.0.id();
    let dir = fake_root(&base, 'b');
    let (o, r, c) = (
        dead_owner(),
        root_record(&dir),
        child_record(pid, start_time(pid)),
    );
    let bounds = [0, o.len(), o.len() + r.len()];
    let whole = [o.clone(), r.clone(), c.clone()].concat();
    let root_end = o.len() + r.len();
    let mut sweeps = 0;
    // `edit` cuts or flips the journal, made afresh each time: the recorded identity
    // of the dir changes whenever a sweep removed it and it was made again.
    let mut check =
        |edit: &dyn Fn(&mut Vec<u8>), root_valid: bool, torn_at: Option<usize>, what: &str| {
            if !dir.exists() {
                assert_eq!(fake_root(&base, 'b'), dir);
            }
            let mut bytes = [o.clone(), root_record(&dir), c.clone()].concat();
            edit(&mut bytes);
            write_journal(&state, &bytes);
            let report = sweep(&state);
            sweeps += 1;
            assert!(
                pid_running(pid),
                "{what}: a torn child record was acted on: {report}"
            );
            assert_eq!(!dir.exists(), root_valid, "{what}: {report}");
            if let Some(at) = torn_at {
                assert!(
                    has(
                        &report,
                        |r| matches!(r, SkipReason::Corrupt { offset, .. } if *offset == at)
                    ),
                    "{what}: not reported at {at}: {report}"
                );
            }
        };
    for cut in 0..whole.len() {
        let torn_at = bounds
            .iter()
            .rev()
            .find(|&&b| b <= cut)
            .copied()
            .filter(|&b| b != cut);
        check(
            &|b| b.truncate(cut),
            cut >= root_end,
            torn_at,
            &format!("cut at {cut}"),
        );
    }
    for i in 0..whole.len() {
        let at = *bounds.iter().rev().find(|&&b| b <= i).unwrap();
        check(
            &|b| b[i] ^= 1 << (i % 8),
            i >= root_end,
            Some(at),
            &format!("bit {} of byte {i} flipped", i % 8),
        );
    }
    assert_eq!(sweeps, 2 * whole.len());
    proc_.0.kill().unwrap();
    proc_.0.wait().unwrap();
    std::fs::remove_dir_all(&scratch).unwrap();
}

#[test]
fn a_symlinked_state_dir_is_refused() {
    let _s = serial();
    let (scratch, state, _) = dirs("journal-statelink");
    std::fs::write(state.join("canary"), b"keep").unwrap();
    let link = scratch.join("link");
    symlink(&state, &link).unwrap();
    let err = tokio_custodian::Recovery::new()
        .state_dir(&link)
        .run()
        .unwrap_err();
    assert_eq!(err.operation(), tokio_custodian::Operation::Sweep);
    assert_eq!(err.path(), Some(link.as_path()));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let err = rt.block_on(async {
        tokio_custodian::Supervisor::builder()
            .state_dir(&link)
            .temp_base(&scratch)
            .start()
            .unwrap_err()
    });
    assert_eq!(err.operation(), tokio_custodian::Operation::OpenJournal);
    // A state dir others can enter is refused too.
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();
    let err = tokio_custodian::Recovery::new()
        .state_dir(&state)
        .run()
        .unwrap_err();
    assert_eq!(err.io_kind(), Some(std::io::ErrorKind::PermissionDenied));
    assert_eq!(std::fs::read(state.join("canary")).unwrap(), b"keep");
    assert_eq!(
        std::fs::read_dir(&state).unwrap().count(),
        1,
        "nothing was created there"
    );
    std::fs::remove_dir_all(&scratch).unwrap();
}

#[test]
fn forged_root_paths_are_refused_and_canaries_survive() {
    let _s = serial();
    let (scratch, state, base) = dirs("journal-paths");
    let outside = scratch.join("outside");
    std::fs::create_dir(&outside).unwrap();
    // Each case: the recorded path and identity, and the canary that must survive.
    let canary = fake_root(&outside, 'c');
    let real = base.join("real");
    std::fs::create_dir(&real).unwrap();
    let behind_link = fake_root(&real, 'd');
    symlink(&real, base.join("link")).unwrap();
    let sibling = base.join(format!("custodian-{}0", "e".repeat(32)));
    std::fs::create_dir(&sibling).unwrap();
    std::fs::set_permissions(&sibling, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(sibling.join("canary"), b"keep").unwrap();
    let named_link = base.join(format!("custodian-{}", "f".repeat(32)));
    symlink(&canary, &named_link).unwrap();
    let important = outside.join("important");
    std::fs::create_dir(&important).unwrap();
    std::fs::set_permissions(&important, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(important.join("canary"), b"keep").unwrap();
    let id = |p: &Path| {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::symlink_metadata(p).unwrap();
        (m.dev(), m.ino())
    };
    let dotdot = base
        .join("..")
        .join("outside")
        .join(canary.file_name().unwrap());
    let cases: Vec<(&str, PathBuf, (u64, u64), bool)> = vec![
        ("`..` in the path", dotdot, id(&canary), true),
        (
            "relative path",
            PathBuf::from("outside").join(canary.file_name().unwrap()),
            id(&canary),
            true,
        ),
        (
            "a symlinked parent",
            base.join("link").join(behind_link.file_name().unwrap()),
            id(&behind_link),
            true,
        ),
        (
            "the root's name a symlink",
            named_link.clone(),
            id(&canary),
            true,
        ),
        (
            "a sibling sharing the prefix, by its identity",
            base.join(format!("custodian-{}", "e".repeat(32))),
            id(&sibling),
            false,
        ),
        (
            "outside the base, another object at the path",
            outside.join(canary.file_name().unwrap()),
            id(&important),
            true,
        ),
        (
            "outside the base, not a root's name",
            important.clone(),
            id(&important),
            true,
        ),
    ];
    for (what, path, (dev, ino), refused) in cases {
        let journal = write_journal(
            &state,
            &[dead_owner(), root_record_with_id(&path, dev, ino)].concat(),
        );
        let report = sweep(&state);
        assert!(report.removed.is_empty(), "{what}: {report}");
        if refused {
            assert!(
                has(&report, |r| matches!(r, SkipReason::UnsafePath { .. })),
                "{what}: {report}"
            );
            std::fs::remove_file(&journal).unwrap(); // kept for a person to look at
        } else {
            assert!(
                !journal.exists(),
                "{what}: nothing there, journal dropped: {report}"
            );
        }
        for c in [&canary, &behind_link, &sibling, &important] {
            assert_eq!(
                std::fs::read(c.join("canary")).unwrap(),
                b"keep",
                "{what}: {}",
                c.display()
            );
        }
    }
    // Control: the honest record of a root is acted on.
    write_journal(&state, &[dead_owner(), root_record(&canary)].concat());
    let report = sweep(&state);
    assert_eq!(report.removed, vec![canary.clone()], "{report}");
    std::fs::remove_dir_all(&scratch).unwrap();
}

#[test]
fn unrecorded_descendants_are_found_by_the_marker_and_only_they() {
    let _s = serial();
    let (scratch, state, _) = dirs("journal-marker");
    let journal = write_journal(&state, &dead_owner());
    let id = journal.file_stem().unwrap().to_str().unwrap().to_owned();
    // Left its group (its own), unrecorded: only the marker in its environment says whose.
    let mut escaped = Command::new("sleep")
        .arg("1000")
        .process_group(0)
        .env("CUSTODIAN_JOURNAL", &id)
        .spawn()
        .unwrap();
    let mut stranger = Command::new("sleep")
        .arg("1000")
        .process_group(0)
        .env("CUSTODIAN_JOURNAL", format!("{id}0"))
        .spawn()
        .unwrap();
    let report = sweep(&state);
    assert_eq!(report.stopped.len(), 1, "{report}");
    assert_eq!(report.stopped[0].pgid, None);
    assert!(
        escaped.wait().unwrap().code().is_none(),
        "stopped by a signal"
    );
    assert!(
        pid_running(stranger.id()),
        "another marker's process was signalled: {report}"
    );
    stranger.kill().unwrap();
    stranger.wait().unwrap();
    std::fs::remove_dir_all(&scratch).unwrap();
}
