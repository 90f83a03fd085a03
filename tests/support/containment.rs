//! The cgroup containment tier's tests' shared scaffolding (`containment_release.rs`,
//! `containment_cgroups.rs`): a supervisor on the tier, the escape artist (a double-fork
//! daemon and a TERM-ignoring grandchild), and the checks that all of it is gone.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_custodian::{Containment, ContainmentTier, ManagedChild, Scope, Supervisor};

use crate::{poll_until, serial, sleeps, zombie_children};

/// A multi-thread runtime with two workers.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A sleep length unique to this run and `n`.
pub fn secs(n: u32) -> String {
    format!("{}", 200_000 + std::process::id() * 10 + n)
}

/// This process's cgroup directory (from mountinfo and /proc/self/cgroup, as the crate
/// finds it).
pub fn own_cgroup_dir() -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let point = info.lines().rev().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        let dash = f.iter().position(|&x| x == "-")?;
        (f.get(dash + 1) == Some(&"cgroup2")).then(|| PathBuf::from(f[4]))
    })?;
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let own = own.lines().find_map(|l| l.strip_prefix("0::"))?;
    Some(point.join(own.trim_start_matches('/')))
}

/// This process's `custodian-<pid>-*` cgroups.
pub fn our_cgroups(parent: &Path) -> Vec<String> {
    let prefix = format!("custodian-{}-", std::process::id());
    crate::entries(parent)
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .collect()
}

/// Child cgroups under `dir` (directories only).
pub fn sub_cgroups(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| {
        d.filter(|e| e.as_ref().is_ok_and(|e| e.path().is_dir()))
            .count()
    })
}

/// Starts a supervisor with the cgroup tier, or `None` (printing the skip) without one.
pub fn start() -> Option<Supervisor> {
    let sup = Supervisor::builder()
        .containment(Containment::Auto)
        .start()
        .unwrap();
    match sup.stats().containment {
        ContainmentTier::Cgroup { .. } => Some(sup),
        other => {
            eprintln!("skipped: no writable cgroup2 ({other})");
            None
        }
    }
}

/// The escape artist: a `setsid env -i` double-fork daemon (new session, no environment,
/// orphaned at once), a grandchild that ignores SIGTERM, and the child itself.
pub fn escape_artist(s: &Scope, n: u32) -> ManagedChild {
    let (daemon, deaf, me) = (secs(n), secs(n + 1), secs(n + 2));
    let script = format!(
        "setsid env -i sh -c 'sleep {daemon} </dev/null >/dev/null 2>&1 &'; \
         sh -c \"trap '' TERM; sleep {deaf}\" & exec sleep {me}"
    );
    s.command("sh")
        .args(["-c", &script])
        .grace(Duration::from_millis(300))
        .spawn()
        .unwrap()
}

/// Waits for the three sleeps of `escape_artist(n)`, and checks each is in `cgroup`.
pub fn wait_started(n: u32, cgroup: &Path, mount_dir: &Path) {
    for k in 0..3 {
        let s = secs(n + k);
        // The pid seen, once it is `sleep` itself (an intermediate shell's command line
        // names the sleep too, and a process in the middle of `exec` reads as empty).
        let mut seen = None;
        assert!(
            poll_until(Duration::from_secs(10), || {
                let found = sleeps(&s);
                seen = found.first().copied().filter(|pid| {
                    found.len() == 1
                        && std::fs::read_to_string(format!("/proc/{pid}/comm"))
                            .is_ok_and(|c| c.trim() == "sleep")
                });
                seen.is_some()
            }),
            "sleep {s} never started"
        );
        let pid = seen.unwrap();
        let line = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        let inside = line.lines().find_map(|l| l.strip_prefix("0::")).unwrap();
        assert_eq!(
            mount_dir.join(inside.trim_start_matches('/')),
            mount_dir.join(cgroup.strip_prefix(mount_dir).unwrap()),
            "sleep {s} is not in the child's cgroup"
        );
    }
}

/// The cgroup2 mount point (the parent of what `/proc/PID/cgroup` names).
pub fn mount_dir() -> PathBuf {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines()
        .rev()
        .find_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let dash = f.iter().position(|&x| x == "-")?;
            (f.get(dash + 1) == Some(&"cgroup2")).then(|| PathBuf::from(f[4]))
        })
        .unwrap()
}

/// Nothing of `escape_artist(n)` runs, no zombie child is left, its cgroup is gone.
pub fn assert_gone(n: u32, cgroup: &Path, when: &str) {
    for k in 0..3 {
        let s = secs(n + k);
        assert!(
            poll_until(Duration::from_secs(2), || sleeps(&s).is_empty()),
            "{when}: sleep {s} still runs: {:?}",
            sleeps(&s)
        );
    }
    assert!(
        !cgroup.exists(),
        "{when}: the child's cgroup {} is left",
        cgroup.display()
    );
    assert_eq!(zombie_children(), Vec::<u32>::new(), "{when}: zombies");
}

/// Runs `body` with a cgroup-tier supervisor, then checks that no cgroup of this process
/// is left under its own cgroup (and that there were as many before).
pub fn with_tier(tag: &str, body: impl AsyncFnOnce(Supervisor, PathBuf)) {
    let _serial = serial();
    let Some(parent) = own_cgroup_dir() else {
        eprintln!("skipped: no writable cgroup2 (no cgroup2 mount)");
        return;
    };
    let before = our_cgroups(&parent);
    assert_eq!(
        before,
        Vec::<String>::new(),
        "{tag}: left by an earlier test"
    );
    let all_before = sub_cgroups(&parent);
    rt().block_on(async {
        let Some(sup) = start() else { return };
        body(sup, mount_dir()).await;
    });
    assert_eq!(our_cgroups(&parent), before, "{tag}: cgroups left");
    assert!(
        sub_cgroups(&parent) <= all_before,
        "{tag}: more cgroups under {} than before",
        parent.display()
    );
}

/// The supervisor's own cgroup; panics if it is not on the cgroup tier.
pub fn sup_cgroup(sup: &Supervisor) -> PathBuf {
    match sup.stats().containment {
        ContainmentTier::Cgroup { path } => path,
        other => panic!("not the cgroup tier: {other}"),
    }
}

/// Where a cgroup-tier supervisor of this process makes its cgroup (this process's own
/// cgroup), proven by starting one and shutting it down; `None`, saying "skipped", without
/// the tier. Crash tests find their dead owners' cgroups there.
pub fn owners_cgroup_dir() -> Option<PathBuf> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let sup = Supervisor::builder()
            .containment(tokio_custodian::Containment::Auto)
            .reap_abandoned(false)
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

/// A `journal-owner` of the cgroup tier with one child (see `tests/support/journal_owner.rs`):
/// `cmd` gets its state dir, temp base, `secs` and `1`, no sweep at its start, and the tier
/// required. The caller adds `CUSTODIAN_TEST_TRAP` for an escapee that honours SIGTERM.
pub fn cgroup_owner_args<'a>(
    cmd: &'a mut std::process::Command,
    state: &Path,
    base: &Path,
    secs: &str,
) -> &'a mut std::process::Command {
    cmd.args([
        state.as_os_str(),
        base.as_os_str(),
        secs.as_ref(),
        "1".as_ref(),
    ])
    .env("CUSTODIAN_TEST_NO_START_SWEEP", "1")
    .env("CUSTODIAN_TEST_CGROUP", "1")
}

/// The one supervisor cgroup under `parent` that the owner `pid` made (asserted to be one).
pub fn owner_cgroup(parent: &Path, pid: u32) -> PathBuf {
    let mut names = crate::entries(parent);
    names.retain(|e| e.starts_with(&format!("custodian-{pid}-")));
    assert_eq!(names.len(), 1, "{names:?}");
    parent.join(&names[0])
}
