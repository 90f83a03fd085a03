//! The start-up reap of abandoned roots judges what is inside a root the way the age
//! sweep does: a dead owner's surviving descendants may still hold files there. A file
//! someone holds a lock on and a listening socket stay, with the root around them; once
//! they are let go, the next start removes the root.

use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use custodian_suite::LineChild;
use tokio_custodian::Supervisor;

const OWNER: &str = env!("CARGO_BIN_EXE_custodian-test-owner");

#[tokio::test]
async fn a_root_holding_a_locked_file_or_a_listening_socket_is_not_reaped_at_start() {
    let base = custodian_suite::scratch_dir("start-reap-live");
    let mut owner = LineChild::spawn(
        Command::new(OWNER)
            .arg("term")
            .env("TMPDIR", &base)
            .stdin(Stdio::null()),
    );
    let slow = Duration::from_secs(30);
    let root = PathBuf::from(owner.wait_line("ROOT ", slow).unwrap());
    owner.wait_line("READY", slow).unwrap();
    owner.kill();
    assert!(owner.wait_exit(slow).is_some());

    // What a surviving descendant of the dead owner still uses inside its root.
    let locked_path = root.join("in-use.wav");
    let locked = std::fs::File::create(&locked_path).unwrap();
    rustix::fs::flock(&locked, rustix::fs::FlockOperation::LockExclusive).unwrap();
    let socket_path = root.join("control.sock");
    let listener = UnixListener::bind(&socket_path).unwrap();
    std::thread::sleep(Duration::from_millis(20));

    let next = Supervisor::builder()
        .temp_base(&base)
        .abandoned_min_age(Duration::ZERO)
        .start()
        .unwrap();
    let reaped = next.reaped_at_start().await;
    assert!(reaped.is_empty(), "reaped {reaped:?}");
    assert!(
        locked_path.exists(),
        "a locked file inside the root was removed"
    );
    assert!(
        socket_path.exists(),
        "a listening socket inside the root was removed"
    );
    assert!(root.exists());
    next.shutdown().await;

    // Let go: the next start takes the root.
    drop((locked, listener));
    std::fs::remove_file(&socket_path).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let last = Supervisor::builder()
        .temp_base(&base)
        .abandoned_min_age(Duration::ZERO)
        .start()
        .unwrap();
    assert_eq!(last.reaped_at_start().await, vec![root.clone()]);
    assert!(!root.exists());
    last.shutdown().await;
    std::fs::remove_dir_all(&base).unwrap();
}
