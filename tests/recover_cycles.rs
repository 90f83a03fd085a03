//! 100 owners SIGKILLed at random moments of their first 200 ms, with no sweep in
//! between, half of them given their temp base through a symlink: then ONE `recover()`
//! deals with all of them (every child and grandchild stopped, every root removed, every
//! journal dropped), and a second finds nothing.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use custodian_suite::{LineChild, entries, mentioning, scratch_dir};
use tokio_custodian::{AgeSweep, Recovery};

const OWNER: &str = env!("CARGO_BIN_EXE_journal-owner");

#[test]
fn one_recover_after_100_sigkills_leaves_nothing() {
    let cycles: usize = std::env::var("CUSTODIAN_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let secs = format!("{}", 300_000 + std::process::id());
    let scratch = scratch_dir("recover-cycles");
    let (state, base, link) = (
        scratch.join("state"),
        scratch.join("tmp"),
        scratch.join("tmp-link"),
    );
    std::fs::create_dir(&base).unwrap();
    std::os::unix::fs::symlink(&base, &link).unwrap();
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    eprintln!("seed {seed}");
    for cycle in 0..cycles {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let through: &PathBuf = if cycle % 2 == 0 { &base } else { &link };
        let mut owner = LineChild::spawn(
            Command::new(OWNER)
                .args([
                    state.as_os_str(),
                    through.as_os_str(),
                    secs.as_ref(),
                    "3".as_ref(),
                ])
                .env("CUSTODIAN_TEST_NO_START_SWEEP", "1"),
        );
        std::thread::sleep(Duration::from_micros(seed % 200_000));
        owner.kill();
        owner
            .wait_exit(Duration::from_secs(10))
            .expect("the owner dies");
    }
    let running = mentioning(&secs).len();
    let started = Instant::now();
    let report = Recovery::new()
        .state_dir(&state)
        .grace(Duration::from_secs(2))
        .temp_base(AgeSweep::new(&base, Duration::ZERO))
        .run()
        .unwrap();
    let took = started.elapsed();
    // Grandchildren a dying owner's child forked in its last instant settle in a moment.
    let until = Instant::now() + Duration::from_secs(5);
    while !mentioning(&secs).is_empty() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    let left = mentioning(&secs);
    for pid in &left {
        let pid = rustix::process::Pid::from_raw(*pid as i32).unwrap();
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
    let journals = report.journals.as_ref().unwrap();
    println!(
        "{cycles} SIGKILLs, {running} processes left running, one recover in {took:?}: {} dead \
         owners, {} groups stopped, {} roots removed, {} journals dropped",
        journals.dead_owners.len(),
        journals.stopped.len(),
        journals.removed.len(),
        journals.dropped.len()
    );
    assert!(left.is_empty(), "still running: {left:?}\n{report}");
    assert!(report.is_clean(), "{report}");
    assert!(
        entries(&state).is_empty(),
        "journals left: {:?}",
        entries(&state)
    );
    assert!(
        entries(&base).is_empty(),
        "roots left: {:?}",
        entries(&base)
    );
    let again = Recovery::new()
        .state_dir(&state)
        .temp_base(AgeSweep::new(&base, Duration::ZERO))
        .run()
        .unwrap();
    assert_eq!(again.journals.as_ref().unwrap().found, 0, "{again}");
    assert!(again.is_clean(), "{again}");
    std::fs::remove_dir_all(&scratch).unwrap();
}
