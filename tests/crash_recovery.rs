//! Crash survival of temp paths: an owner process SIGKILLed while holding temp files and a
//! temp dir leaves its private root behind (nothing in the process could run); the next
//! supervisor started on the same temp base removes it, and only it.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use custodian_suite::LineChild;
use tokio_custodian::Supervisor;

const OWNER: &str = env!("CARGO_BIN_EXE_custodian-test-owner");

#[tokio::test]
async fn the_next_start_reaps_what_a_sigkilled_owner_left() {
    let base = std::env::temp_dir().join(format!("custodian-crash-{}", std::process::id()));
    std::fs::create_dir_all(&base).unwrap();
    // A directory of the same shape that is not private (0755): never taken.
    let stranger = base.join("custodian-0123456789abcdef0123456789abcdef");
    std::fs::create_dir(&stranger).unwrap();

    let mut owner = LineChild::spawn(
        Command::new(OWNER)
            .arg("term")
            .env("TMPDIR", &base)
            .stdin(Stdio::null()),
    );
    let slow = Duration::from_secs(30);
    let root = PathBuf::from(owner.wait_line("ROOT ", slow).unwrap());
    owner.wait_line("READY", slow).unwrap();
    assert!(root.starts_with(&base));
    owner.kill(); // SIGKILL: no destructor, no hook runs
    assert!(owner.wait_exit(slow).is_some());
    assert!(
        root.exists(),
        "SIGKILL cannot clean up: the root is left behind"
    );
    assert!(!custodian_suite::entries(&root).is_empty());

    // A live supervisor on the same base keeps its root locked: never taken either.
    let live = Supervisor::builder()
        .temp_base(&base)
        .reap_abandoned(false)
        .start()
        .unwrap();
    let next = Supervisor::builder()
        .temp_base(&base)
        .abandoned_min_age(Duration::ZERO)
        .start()
        .unwrap();
    assert_eq!(next.reaped_at_start().await, vec![root.clone()]);
    assert!(!root.exists());
    assert!(live.temp_root().exists());
    assert!(stranger.exists());
    next.shutdown().await;
    live.shutdown().await;
    std::fs::remove_dir_all(&base).unwrap();
}
