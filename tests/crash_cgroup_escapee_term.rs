//! The cgroup tier after a SIGKILL: what left its group *and* cleared its environment
//! (`setsid env -i`: no group and no marker finds it) gets the sweep's SIGTERM and grace
//! through the dead owner's proven cgroup, not only `cgroup.kill`'s SIGKILL; and the
//! tier's children carry no owner marker (their cgroup proves descent, and the marker
//! made std copy the whole environment at every spawn). Then nothing is left: no
//! process, no cgroup, no journal.
//!
//! Before this, the escapee was found only by `cgroup.kill` (no SIGTERM, no `termed`
//! file) and every child carried `CUSTODIAN_OWNER`. A sweep that cannot see the cgroup2
//! file system at the recorded path (a private mount namespace without it) still gives
//! the escapee its SIGTERM, by the cgroup's name tied to the owner as the marker's stem
//! was, and keeps the journal for a sweep that can kill and remove the cgroup. Skipped,
//! saying so, without a writable cgroup2 (the blind sweep: without root).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use custodian_suite::{LineChild, entries, mentioning, poll_until, scratch_dir, serial};
use tokio_custodian::{Containment, ContainmentTier, Recovery, Supervisor, SweepReport};

const OWNER: &str = env!("CARGO_BIN_EXE_journal-owner");
const ROLE: &str = "CUSTODIAN_CG_TERM_BLIND_MOUNT";
const STATE: &str = "CUSTODIAN_CG_TERM_BLIND_STATE";

/// This process's own cgroup, where the owner's cgroups are made, or `None` without the
/// tier.
fn cgroup_parent() -> Option<PathBuf> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
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

fn with_prefix(dir: &Path, prefix: &str) -> Vec<String> {
    let mut v = entries(dir);
    v.retain(|e| e.starts_with(prefix));
    v
}

fn environ_has_marker(pid: u32) -> bool {
    let env = std::fs::read(format!("/proc/{pid}/environ")).expect("environ");
    env.split(|&b| b == 0)
        .any(|kv| kv.starts_with(b"CUSTODIAN_OWNER=") || kv.starts_with(b"CUSTODIAN_JOURNAL="))
}

/// Whether `pid` runs (is there and not a zombie: the orphans go to an init that may
/// not reap them).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z')))
        .unwrap_or(false)
}

/// A dead owner of the cgroup tier, SIGKILLed with its child and the child's escapee
/// (`setsid env -i`, its SIGTERM trap set) running.
struct Dead {
    scratch: PathBuf,
    state: PathBuf,
    trap: PathBuf,
    parent: PathBuf,
    owner_pid: u32,
    /// The child's environment carried the owner marker.
    marked: bool,
    escapee: u32,
    secs: String,
}

fn dead_owner(tag: &str) -> Option<Dead> {
    let parent = cgroup_parent()?;
    let scratch = scratch_dir(tag);
    let (state, base, trap) = (
        scratch.join("state"),
        scratch.join("tmp"),
        scratch.join("trap"),
    );
    std::fs::create_dir(&base).unwrap();
    std::fs::create_dir(&trap).unwrap();
    let secs = format!("{}", 600_000 + std::process::id());
    let mut owner = LineChild::spawn(
        Command::new(OWNER)
            .args([
                state.as_os_str(),
                base.as_os_str(),
                secs.as_ref(),
                "1".as_ref(),
            ])
            .env("CUSTODIAN_TEST_NO_START_SWEEP", "1")
            .env("CUSTODIAN_TEST_CGROUP", "1")
            .env("CUSTODIAN_TEST_TRAP", &trap),
    );
    let owner_pid = owner.pid();
    let child: u32 = owner
        .wait_line("child ", Duration::from_secs(10))
        .expect("child line")
        .trim()
        .parse()
        .expect("child pid");
    owner
        .wait_line("ready", Duration::from_secs(10))
        .expect("ready");
    assert!(
        poll_until(Duration::from_secs(10), || !with_prefix(&trap, "ready-")
            .is_empty()),
        "the escapee never set its trap"
    );
    let marked = environ_has_marker(child);
    let ready = with_prefix(&trap, "ready-");
    let escapee: u32 = ready[0]["ready-".len()..].parse().unwrap();
    owner.kill();
    owner
        .wait_exit(Duration::from_secs(10))
        .expect("the owner dies");
    let owner_cgroups: Vec<String> = with_prefix(&parent, &format!("custodian-{owner_pid}-"));
    assert_eq!(owner_cgroups.len(), 1, "{owner_cgroups:?}");
    Some(Dead {
        scratch,
        state,
        trap,
        parent,
        owner_pid,
        marked,
        escapee,
        secs,
    })
}

impl Dead {
    /// Waits for everything of the owner to be gone; kills what is left (so that a
    /// failed assertion leaves nothing running). Whether nothing was left.
    fn gone(&self) -> bool {
        let gone = poll_until(Duration::from_secs(5), || {
            mentioning(&self.secs).is_empty() && !running(self.escapee)
        });
        for pid in mentioning(&self.secs).into_iter().chain([self.escapee]) {
            if running(pid) {
                let pid = rustix::process::Pid::from_raw(pid as i32).unwrap();
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
        gone
    }

    fn termed(&self) -> Vec<String> {
        with_prefix(&self.trap, "termed-")
    }

    fn owner_cgroups(&self) -> Vec<String> {
        with_prefix(&self.parent, &format!("custodian-{}-", self.owner_pid))
    }
}

#[test]
fn a_dead_owner_s_cleared_env_escapee_gets_sigterm_through_its_cgroup() {
    let Some(d) = dead_owner("cgroup-escapee-term") else {
        return;
    };
    let report = Recovery::new()
        .state_dir(&d.state)
        .grace(Duration::from_secs(5))
        .run()
        .unwrap();
    eprintln!("{report}");
    let journals = report.journals.as_ref().unwrap();
    let termed = d.termed();
    let gone = d.gone();
    assert_eq!(
        termed,
        vec![format!("termed-{}", d.escapee)],
        "the escapee got no SIGTERM (only cgroup.kill's SIGKILL?)\n{report}"
    );
    assert!(gone, "still running\n{report}");
    assert!(
        !d.marked,
        "the cgroup tier's child carries the owner marker"
    );
    assert!(
        journals
            .stopped
            .iter()
            .any(|g| g.pgid.is_none() && g.processes >= 1),
        "no stop counted for the cgroup's members\n{report}"
    );
    assert_eq!(journals.cgroups.len(), 1, "{report}");
    assert!(d.owner_cgroups().is_empty(), "the owner's cgroup is left");
    assert!(report.is_clean(), "{report}");
    assert!(
        entries(&d.state).is_empty(),
        "journals left: {:?}",
        entries(&d.state)
    );
    let again = Recovery::new().state_dir(&d.state).run().unwrap();
    assert!(
        again.journals.as_ref().unwrap().dead_owners.is_empty(),
        "{again}"
    );
    let _ = std::fs::remove_dir_all(&d.scratch);
}

/// The cgroup2 mount point, if this process may unmount it in a namespace of its own.
fn cgroup2_mount() -> Option<PathBuf> {
    if !rustix::process::geteuid().is_root() {
        return None;
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mounts.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        post.starts_with("cgroup2 ")
            .then(|| pre.split(' ').nth(4).map(PathBuf::from))?
    })
}

/// The sweep in a private mount namespace without the cgroup2 mount; nothing otherwise.
#[test]
#[ignore = "run by the blind-sweep test, in another process"]
fn blind_role() {
    let Ok(mount) = std::env::var(ROLE) else {
        return;
    };
    let ok = Command::new("umount")
        .arg("-l")
        .arg(&mount)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "umount {mount}");
    assert!(!Path::new(&mount).join("cgroup.procs").exists());
    let state = std::env::var(STATE).unwrap();
    let report = Recovery::new()
        .state_dir(state)
        .grace(Duration::from_secs(5))
        .run()
        .unwrap();
    let journals = report.journals.expect("a state dir was given");
    println!("REPORT {}", serde_json::to_string(&journals).unwrap());
}

#[test]
fn a_sweep_that_cannot_see_the_cgroup_still_sigterms_its_members_and_keeps_the_journal() {
    let Some(mount) = cgroup2_mount() else {
        eprintln!("skipped: needs root and a cgroup2 mount");
        return;
    };
    let _s = serial();
    let Some(d) = dead_owner("cgroup-escapee-term-blind") else {
        return;
    };
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private"])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "blind_role", "--ignored", "--nocapture"])
        .env(ROLE, &mount)
        .env(STATE, &d.state)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let json = text
        .lines()
        .find_map(|l| l.split_once("REPORT ").map(|(_, r)| r))
        .unwrap_or_else(|| panic!("no report ({}):\n{text}", out.status));
    let blind: SweepReport = serde_json::from_str(json).unwrap();
    let termed = d.termed();
    let kept = !entries(&d.state).is_empty();
    // A sweep that sees the cgroup: it kills and removes it, and drops the journal.
    let seeing = Recovery::new().state_dir(&d.state).run().unwrap();
    let gone = d.gone();
    assert_eq!(
        termed,
        vec![format!("termed-{}", d.escapee)],
        "the blind sweep gave the escapee no SIGTERM\n{blind}"
    );
    assert!(
        kept,
        "the journal was dropped by a sweep that could not see the cgroup"
    );
    assert!(!blind.is_clean(), "{blind}");
    assert!(gone, "still running\n{seeing}");
    assert!(
        d.owner_cgroups().is_empty(),
        "the owner's cgroup is left: {seeing}"
    );
    assert!(seeing.is_clean(), "{seeing}");
    assert!(
        entries(&d.state).is_empty(),
        "journals left: {:?}",
        entries(&d.state)
    );
    let _ = std::fs::remove_dir_all(&d.scratch);
}
