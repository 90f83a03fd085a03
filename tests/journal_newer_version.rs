//! A whole, checksummed journal record of a tag this version does not know was written
//! by a newer version: the journal is left whole for that version (acted on not at all,
//! never set aside as corrupt), and the report says so.

use std::os::unix::fs::PermissionsExt;

use custodian_suite::journal_frame as frame;
use custodian_suite::{entries, scratch_dir};
use tokio_custodian::SkipReason;

#[test]
fn a_newer_versions_journal_is_left_whole() {
    let scratch = scratch_dir("journal-newer");
    let state = scratch.join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    // A dead owner (this pid, another start time), then a record of tag 200.
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    let mut owner = vec![1];
    owner.extend(std::process::id().to_le_bytes());
    owner.extend(1u64.to_le_bytes());
    owner.extend(boot.trim().as_bytes());
    let name = format!("{}-1-0123456789abcdef.journal", std::process::id());
    let bytes = [frame(&owner), frame(&[200, 1, 2, 3])].concat();
    std::fs::write(state.join(&name), &bytes).unwrap();
    std::fs::set_permissions(state.join(&name), std::fs::Permissions::from_mode(0o600)).unwrap();
    let report = tokio_custodian::Recovery::new()
        .state_dir(&state)
        .run()
        .unwrap()
        .journals
        .unwrap();
    let left = entries(&state);
    let kept = std::fs::read(state.join(&name)).ok();
    std::fs::remove_dir_all(&scratch).unwrap();
    assert_eq!(left, vec![name], "{report}");
    assert_eq!(kept.as_deref(), Some(&bytes[..]), "changed: {report}");
    assert!(report.dead_owners.is_empty(), "{report}");
    assert!(
        matches!(
            report.skipped[0].reason,
            SkipReason::NewerVersion { tag: 200, .. }
        ),
        "{report}"
    );
}
