//! Crash cycles (issue 10): an owner with a state dir (`journal-owner`) creates temp
//! files, temp dirs, children and grandchildren and is SIGKILLed at a random moment
//! 0–200 ms after it starts; a new supervisor is started on the same state dir at once.
//! After each cycle nothing of the dead owner may remain — no path under the temp base,
//! no process, no zombie, no journal — while a second, live owner in the same state dir
//! keeps its root, its children and its journal. The leftovers of every cycle are
//! printed (shown when the test fails, or run the isolated test with `--nocapture`).
//! `CUSTODIAN_CRASH_CYCLES` sets the number of cycles (default 100, the issue's: about
//! 10 s here).
//!
//! The test runs isolated (in a child process of the test binary) because it makes
//! itself a child subreaper: the dead owners' orphans are reparented to it, so their
//! zombies can be reaped and counted (this machine's pid 1 does not reap orphans).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use custodian_suite::{LineChild, entries, is_isolated, pid_running, run_isolated, scratch_dir};

const OWNER: &str = env!("CARGO_BIN_EXE_journal-owner");
const ISOLATED: &str = "CUSTODIAN_CRASH_CYCLES_ISOLATED";

/// Kills the live owner if the test fails before it does.
struct KillOnDrop(LineChild);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.0.kill();
    }
}

#[test]
fn sigkilled_owners_leave_nothing_behind() {
    run_isolated("crash_cycles_isolated", ISOLATED, false);
}

/// Running (not zombie) processes whose command line mentions `sleep SECS` (children
/// and grandchildren, not the owner).
fn processes_mentioning(needle: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains(&format!("sleep {needle}")) && pid_running(pid) {
            out.push(pid);
        }
    }
    out
}

/// Reaps every zombie child of this process (the reparented orphans); returns how many.
fn reap_zombies() -> usize {
    let mut n = 0;
    while let Ok(Some(_)) = rustix::process::wait(rustix::process::WaitOptions::NOHANG) {
        n += 1;
    }
    n
}

fn sweep_by_new_supervisor(
    rt: &tokio::runtime::Runtime,
    state: &Path,
    base: &Path,
) -> tokio_custodian::SweepReport {
    rt.block_on(async {
        let sup = tokio_custodian::Supervisor::builder()
            .state_dir(state)
            .temp_base(base)
            .reap_abandoned(false)
            .start()
            .expect("start");
        let report = sup.swept_at_start().await;
        let shut = sup.shutdown().await;
        assert!(shut.is_clean(), "{shut}");
        report
    })
}

#[test]
#[ignore = "run isolated by sigkilled_owners_leave_nothing_behind"]
fn crash_cycles_isolated() {
    if !is_isolated(ISOLATED, "crash_cycles_isolated") {
        return;
    }
    rustix::process::set_child_subreaper(Some(rustix::process::getpid())).expect("subreaper");
    let cycles: usize = std::env::var("CUSTODIAN_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    // Sleep lengths that tell whose processes are whose in `/proc`, unique to this run.
    let dead_secs = format!("{}", 100_000 + std::process::id());
    let live_secs = format!("{}", 200_000 + std::process::id());
    let (dead, live_s) = (dead_secs.as_str(), live_secs.as_str());
    let scratch = scratch_dir("crash-cycles");
    let (state, base) = (scratch.join("state"), scratch.join("tmp"));
    std::fs::create_dir(&base).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let mut live = KillOnDrop(LineChild::spawn(Command::new(OWNER).args([
        state.as_os_str(),
        base.as_os_str(),
        live_s.as_ref(),
        "2".as_ref(),
    ])));
    let live = &mut live.0;
    let live_root = PathBuf::from(live.wait_line("root ", Duration::from_secs(10)).unwrap());
    live.wait_line("ready", Duration::from_secs(10)).unwrap();
    let live_children: Vec<u32> = live
        .seen
        .iter()
        .filter_map(|l| l.strip_prefix("child ")?.parse().ok())
        .collect();
    let live_journal = entries(&state);
    assert_eq!(live_journal.len(), 1, "{live_journal:?}");
    // The grandchildren start a moment after `ready`.
    let until = Instant::now() + Duration::from_secs(10);
    while processes_mentioning(live_s).len() < 4 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(5));
    }
    let live_procs = processes_mentioning(live_s).len();
    assert_eq!(live_procs, 4, "2 children and 2 grandchildren");

    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    eprintln!("seed {seed}");
    let mut failures = Vec::new();
    let (mut stopped, mut removed, mut reaped) = (0, 0, 0);
    let started = Instant::now();
    for cycle in 0..cycles {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let delay = Duration::from_micros(seed % 200_000);
        let mut owner = LineChild::spawn(Command::new(OWNER).args([
            state.as_os_str(),
            base.as_os_str(),
            dead.as_ref(),
            "3".as_ref(),
        ]));
        // The kill moment, not an assertion: anywhere in the owner's first 200 ms.
        std::thread::sleep(delay);
        owner.kill();
        owner
            .wait_exit(Duration::from_secs(10))
            .expect("the owner dies");
        let report = sweep_by_new_supervisor(&rt, &state, &base);
        stopped += report.stopped.len();
        removed += report.removed.len();
        reaped += reap_zombies();
        let paths: Vec<String> = entries(&base)
            .into_iter()
            .filter(|e| base.join(e) != live_root)
            .collect();
        let procs = processes_mentioning(dead);
        let journals: Vec<String> = entries(&state)
            .into_iter()
            .filter(|e| !live_journal.contains(e))
            .collect();
        let zombies = custodian_suite::zombie_children();
        let bad = report
            .skipped
            .iter()
            .filter(|s| {
                !matches!(
                    s.reason,
                    tokio_custodian::SkipReason::OwnerAlive | tokio_custodian::SkipReason::Locked
                )
            })
            .count();
        if !(paths.is_empty()
            && procs.is_empty()
            && journals.is_empty()
            && zombies.is_empty()
            && bad == 0)
        {
            failures.push(format!("cycle {cycle}: {report}"));
            for p in &procs {
                let _ = rustix::process::kill_process(
                    rustix::process::Pid::from_raw(*p as i32).unwrap(),
                    rustix::process::Signal::KILL,
                );
            }
        }
        // Only now: its children held its stdout and stderr open until the sweep.
        owner.drain(Duration::from_millis(100));
        let announced = owner
            .seen
            .iter()
            .filter(|l| l.starts_with("child "))
            .count();
        eprintln!(
            "cycle {cycle}: killed after {delay:?} ({announced} children announced); swept: {} dead owner(s), {} group(s) stopped, {} root(s) removed; leftovers: paths {paths:?} processes {procs:?} journals {journals:?} zombies {zombies:?} odd skips {bad}",
            report.dead_owners.len(),
            report.stopped.len(),
            report.removed.len(),
        );
    }
    eprintln!(
        "{cycles} cycles in {:?}: {stopped} groups stopped, {removed} roots removed, {reaped} orphans reaped",
        started.elapsed()
    );

    // The live owner was never touched.
    assert!(live_root.is_dir(), "the live owner's root");
    assert!(
        live_children.iter().all(|&p| pid_running(p)),
        "the live owner's children"
    );
    assert_eq!(processes_mentioning(live_s).len(), live_procs);
    assert!(live_journal.iter().all(|j| state.join(j).exists()));
    // Now it dies too, and a sweep reaps it.
    live.kill();
    live.wait_exit(Duration::from_secs(10)).unwrap();
    let report = sweep_by_new_supervisor(&rt, &state, &base);
    assert_eq!(report.dead_owners.len(), 1, "{report}");
    reap_zombies();
    assert!(!live_root.exists());
    assert_eq!(processes_mentioning(live_s), Vec::<u32>::new());
    assert!(entries(&state).is_empty(), "{:?}", entries(&state));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    drop(rt);
    std::fs::remove_dir_all(&scratch).unwrap();
}
