//! A sweep run from a shell inside a dead owner's tree, in a pipeline
//! (`custodian sweep | tee log`): the pipeline's partners carry the dead owner's marker
//! too, and share the sweeper's process group. They are spared and reported, like the
//! sweeper and its ancestors; `tee` used to get SIGTERM and the report's write a broken
//! pipe. A marked process in another group is stopped as before.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use custodian_suite::journal_frame as frame;
use custodian_suite::{poll_until, scratch_dir, serial};
use tokio_custodian::SpareReason;

#[test]
fn the_sweepers_own_process_group_is_spared() {
    let _s = serial();
    let scratch = scratch_dir("pipeline-spared");
    let state = scratch.join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    // A dead owner: this pid with another start time.
    let stem = format!("{}-1-0123456789abcdef", std::process::id());
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    let mut owner = vec![1];
    owner.extend(std::process::id().to_le_bytes());
    owner.extend(1u64.to_le_bytes());
    owner.extend(boot.trim().as_bytes());
    let journal = state.join(format!("{stem}.journal"));
    std::fs::write(&journal, frame(&owner)).unwrap();
    std::fs::set_permissions(&journal, std::fs::Permissions::from_mode(0o600)).unwrap();
    let marked = |own_group: bool| {
        let mut c = Command::new("sleep");
        c.arg("1000").env("CUSTODIAN_OWNER", format!("{stem}-1"));
        if !own_group {
            c.process_group(0);
        }
        c.spawn().unwrap()
    };
    // In this (the sweeper's) group: a pipeline partner. In a group of its own: not.
    let mut partner = marked(true);
    let mut other = marked(false);
    let report = tokio_custodian::Recovery::new()
        .state_dir(&state)
        .grace(Duration::from_millis(200))
        .run()
        .unwrap()
        .journals
        .unwrap();
    let partner_alive = partner.try_wait().unwrap().is_none();
    let other_stopped = poll_until(Duration::from_secs(5), || {
        other.try_wait().unwrap().is_some()
    });
    let _ = partner.kill();
    let _ = partner.wait();
    let _ = other.kill();
    let _ = other.wait();
    std::fs::remove_dir_all(&scratch).unwrap();
    assert!(
        partner_alive,
        "the sweeper's pipeline partner was signalled: {report}"
    );
    assert!(
        report
            .spared
            .iter()
            .any(|s| s.pid == partner.id() && s.reason == SpareReason::SweeperGroup),
        "{report}"
    );
    assert!(other_stopped, "a marked process in another group: {report}");
}
