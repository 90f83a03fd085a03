//! 100 SIGKILL cycles in the cgroup containment tier (issue 19): an owner with a state
//! dir (`journal-owner`, `CUSTODIAN_TEST_CGROUP=1`: containment required) starts two
//! children, each of which starts an escapee that leaves its group *and* clears its
//! environment (`setsid env -i sleep`: no group, no marker finds it; only the cgroup
//! holds it) next to a plain grandchild. Each owner is SIGKILLed at a random moment of
//! its first 150 ms, with no sweep in between; then ONE `recover()` must leave nothing:
//! no process, no zombie, no cgroup of any owner, no temp root, no journal. A second
//! `recover()` finds nothing.
//!
//! Runs isolated (a child process of the test binary made a child subreaper), so that the
//! orphans of the dead owners come to it and their zombies are reaped and counted (this
//! machine's pid 1 does not reap). `CUSTODIAN_CRASH_CYCLES` sets the number of cycles
//! (default 100). Skipped, saying so, without a writable cgroup2.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use custodian_suite::{
    LineChild, entries, is_isolated, mentioning, poll_until, run_isolated, scratch_dir,
    zombie_children,
};
use tokio_custodian::{AgeSweep, Containment, ContainmentTier, Recovery, Supervisor};

const OWNER: &str = env!("CARGO_BIN_EXE_journal-owner");
const ISOLATED: &str = "CUSTODIAN_CGROUP_CYCLES_ISOLATED";

#[test]
fn sigkilled_cgroup_tier_owners_leave_nothing_after_one_recover() {
    run_isolated("cgroup_cycles_isolated", ISOLATED, false);
}

/// The directory the owners' cgroups are made in (this process's own cgroup, which the
/// owners inherit), or `None` without the tier.
fn cgroup_parent(rt: &tokio::runtime::Runtime) -> Option<PathBuf> {
    rt.block_on(async {
        let sup = Supervisor::builder()
            .containment(Containment::Auto)
            .start()
            .unwrap();
        let tier = sup.stats().containment;
        assert!(sup.shutdown().await.is_clean());
        match tier {
            ContainmentTier::Cgroup { path } => path.parent().map(Path::to_path_buf),
            other => {
                eprintln!("skipped: no writable cgroup2 ({other})");
                None
            }
        }
    })
}

/// Reaps every zombie child of this process (the reparented orphans); returns how many.
fn reap_zombies() -> usize {
    let mut n = 0;
    while let Ok(Some(_)) = rustix::process::wait(rustix::process::WaitOptions::NOHANG) {
        n += 1;
    }
    n
}

/// The cgroups under `parent` that one of `owners` made.
fn owners_cgroups(parent: &Path, owners: &[u32]) -> Vec<String> {
    entries(parent)
        .into_iter()
        .filter(|e| {
            owners
                .iter()
                .any(|p| e.starts_with(&format!("custodian-{p}-")))
        })
        .collect()
}

#[test]
#[ignore = "run isolated by sigkilled_cgroup_tier_owners_leave_nothing_after_one_recover"]
fn cgroup_cycles_isolated() {
    if !is_isolated(ISOLATED, "cgroup_cycles_isolated") {
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let Some(parent) = cgroup_parent(&rt) else {
        return;
    };
    rustix::process::set_child_subreaper(Some(rustix::process::getpid())).expect("subreaper");
    let cycles: usize = std::env::var("CUSTODIAN_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let secs = format!("{}", 500_000 + std::process::id());
    let needle = format!("sleep {secs}");
    let scratch = scratch_dir("cgroup-cycles");
    let (state, base) = (scratch.join("state"), scratch.join("tmp"));
    std::fs::create_dir(&base).unwrap();
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    eprintln!("seed {seed}");
    // Cgroups of earlier runs (other tests' owners with a pid one of ours reuses).
    let earlier = entries(&parent);
    let mut owners = Vec::new();
    let started = Instant::now();
    for _ in 0..cycles {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let mut owner = LineChild::spawn(
            Command::new(OWNER)
                .args([
                    state.as_os_str(),
                    base.as_os_str(),
                    secs.as_ref(),
                    "2".as_ref(),
                ])
                .env("CUSTODIAN_TEST_NO_START_SWEEP", "1")
                .env("CUSTODIAN_TEST_CGROUP", "1"),
        );
        owners.push(owner.pid());
        // The kill moment, not an assertion: anywhere in the owner's first 150 ms.
        std::thread::sleep(Duration::from_micros(seed % 150_000));
        owner.kill();
        owner
            .wait_exit(Duration::from_secs(10))
            .expect("the owner dies");
    }
    let killing = started.elapsed();
    reap_zombies();
    let running = mentioning(&needle).len();
    let ours = |parent: &Path| -> Vec<String> {
        let mut v = owners_cgroups(parent, &owners);
        v.retain(|c| !earlier.contains(c));
        v
    };
    let cgroups_before = ours(&parent).len();
    let t = Instant::now();
    let report = Recovery::new()
        .state_dir(&state)
        .grace(Duration::from_secs(2))
        .temp_base(AgeSweep::new(&base, Duration::ZERO))
        .run()
        .unwrap();
    let took = t.elapsed();
    // SIGKILLed members are gone once `populated 0`; their zombies come to us.
    let settled = poll_until(Duration::from_secs(5), || {
        reap_zombies();
        mentioning(&needle).is_empty()
    });
    let reaped = reap_zombies();
    let left = mentioning(&needle);
    let journals = report.journals.as_ref().unwrap();
    println!(
        "{cycles} SIGKILLs in {killing:?}, {running} \
         processes and {cgroups_before} owner cgroups left running; one recover in \
         {took:?}: {} dead owners, {} groups stopped, {} cgroups killed, {} roots removed, \
         {} journals dropped; {reaped} more zombies reaped after",
        journals.dead_owners.len(),
        journals.stopped.len(),
        journals.cgroups.len(),
        journals.removed.len(),
        journals.dropped.len()
    );
    for pid in &left {
        let pid = rustix::process::Pid::from_raw(*pid as i32).unwrap();
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
    let cgroups = ours(&parent);
    assert!(
        settled && left.is_empty(),
        "still running: {left:?}\n{report}"
    );
    assert_eq!(zombie_children(), Vec::<u32>::new(), "zombies");
    assert!(cgroups.is_empty(), "cgroups left: {cgroups:?}\n{report}");
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
    drop(rt);
    std::fs::remove_dir_all(&scratch).unwrap();
}
