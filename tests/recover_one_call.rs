//! One `recover()` call deals with every kind of leftover: a SIGKILLed owner's journal (its
//! children stopped, its root removed, the journal dropped) and, in the same temp base, a
//! root whose owner kept no journal (SIGKILLed too), removed by the temp base's sweep.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use custodian_suite::LineChild;
use tokio_custodian::{AgeSweep, Recovery};

const JOURNAL_OWNER: &str = env!("CARGO_BIN_EXE_journal-owner");
const OWNER: &str = env!("CARGO_BIN_EXE_custodian-test-owner");

fn private_dir(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).unwrap();
}

#[test]
fn one_call_recovers_a_journalled_owner_and_an_abandoned_root() {
    let scratch = custodian_suite::scratch_dir("recover-one-call");
    let (state, base) = (scratch.join("state"), scratch.join("base"));
    private_dir(&state);
    private_dir(&base);
    let slow = Duration::from_secs(30);

    let mut journalled = LineChild::spawn(
        Command::new(JOURNAL_OWNER)
            .args([
                state.to_str().unwrap(),
                base.to_str().unwrap(),
                "312.25",
                "2",
            ])
            .stdin(Stdio::null()),
    );
    let root1 = PathBuf::from(journalled.wait_line("root ", slow).unwrap());
    journalled.wait_line("ready", slow).unwrap();
    let mut plain = LineChild::spawn(
        Command::new(OWNER)
            .arg("term")
            .env("TMPDIR", &base)
            .stdin(Stdio::null()),
    );
    let root2 = PathBuf::from(plain.wait_line("ROOT ", slow).unwrap());
    plain.wait_line("READY", slow).unwrap();
    journalled.kill();
    plain.kill();
    assert!(journalled.wait_exit(slow).is_some() && plain.wait_exit(slow).is_some());
    assert_eq!(
        custodian_suite::sleeps("312.25").len(),
        2,
        "the journalled children run"
    );
    assert!(root1.exists() && root2.exists());
    std::thread::sleep(Duration::from_millis(20));

    let report = Recovery::new()
        .state_dir(&state)
        .grace(Duration::from_secs(1))
        .temp_base(AgeSweep::new(&base, Duration::ZERO))
        .run()
        .unwrap();
    let journals = report.journals.as_ref().unwrap();
    assert_eq!(journals.dead_owners.len(), 1, "{report}");
    assert_eq!(journals.removed, vec![root1.clone()], "{report}");
    assert_eq!(journals.dropped.len(), 1, "{report}");
    let age = report.age.as_ref().unwrap();
    // Inside an abandoned root every entry is judged on its own, the root last.
    assert_eq!(age.removed.last(), Some(&root2), "{report}");
    assert!(
        age.removed.iter().all(|p| p.starts_with(&root2)),
        "{report}"
    );
    assert!(report.is_clean(), "{report}");
    assert!(!root1.exists() && !root2.exists());
    assert!(
        custodian_suite::sleeps("312.25").is_empty(),
        "children left"
    );
    assert!(custodian_suite::entries(&state).is_empty());
    assert!(custodian_suite::entries(&base).is_empty());

    // Run again: nothing left to do, nothing signalled, still clean.
    let again = Recovery::new()
        .state_dir(&state)
        .temp_base(AgeSweep::new(&base, Duration::ZERO))
        .run()
        .unwrap();
    assert_eq!(again.journals.as_ref().unwrap().found, 0, "{again}");
    assert!(again.age.as_ref().unwrap().removed.is_empty(), "{again}");
    assert!(again.is_clean(), "{again}");
    std::fs::remove_dir_all(&scratch).unwrap();
}
