//! Review of 1058ba6: a user's supervisor in a delegated cgroup (the cgroup tier without
//! root) dies; its cgroup also holds a process the user may not signal (root's: moved in
//! by root, or what a child ran through `sudo`, which strips the marker and takes a
//! session of its own). The new member scan SIGTERMs it: `EPERM`, so it is a survivor
//! at once; then `cgroup.kill` (which the kernel does whatever the members' users) ends
//! it and the cgroup is removed. The report still named it a survivor ("the signal was
//! refused"), was not clean, and the journal was kept with a `Survivor` record, for a
//! process already gone. Before 1058ba6 only `cgroup.kill` reached it: a clean sweep.
//! A survivor that no longer runs once its owner's cgroup was killed is not one.
//!
//! Needs root (to delegate a cgroup to uid 65534 and move root's process in) and a
//! writable cgroup2; skipped, saying so, otherwise.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use custodian_suite::containment::{cgroup_owner_args, owner_cgroup};
use custodian_suite::{LineChild, entries, mentioning, poll_until, scratch_dir};
use tokio_custodian::{Containment, ContainmentTier, Recovery, Supervisor, SweepReport};

const OWNER: &str = env!("CARGO_BIN_EXE_journal-owner");
const ROLE: &str = "REVIEW_CG4_REFUSED_ROLE";
const NOBODY: [&str; 3] = ["--reuid=65534", "--regid=65534", "--clear-groups"];

fn cgroup_parent() -> Option<PathBuf> {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: not root");
        return None;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let sup = Supervisor::builder()
            .containment(Containment::Auto)
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

fn chown_nobody(p: &Path) {
    let uid = Some(rustix::fs::Uid::from_raw(65534));
    let gid = Some(rustix::fs::Gid::from_raw(65534));
    rustix::fs::chown(p, uid, gid).unwrap();
}

/// The sweeper's role: run as uid 65534 by the test, prints its report as JSON.
#[test]
fn role() {
    let Some(state) = std::env::var_os(ROLE) else {
        return;
    };
    let report = Recovery::new()
        .state_dir(PathBuf::from(state))
        .grace(Duration::from_millis(300))
        .run()
        .unwrap();
    let journals = report.journals.unwrap();
    println!("REPORT {}", serde_json::to_string(&journals).unwrap());
}

/// Removes the cgroups below `dir`, deepest first, then `dir`.
fn remove_tree(dir: &Path) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

#[test]
fn a_member_the_sweeper_may_not_signal_ended_by_cgroup_kill_is_no_survivor() {
    if std::env::var_os(ROLE).is_some() {
        return;
    }
    let Some(parent) = cgroup_parent() else {
        return;
    };
    let deleg = parent.join(format!("review-cg4-deleg-{}", std::process::id()));
    std::fs::create_dir(&deleg).unwrap();
    for f in [
        "",
        "cgroup.procs",
        "cgroup.subtree_control",
        "cgroup.threads",
    ] {
        chown_nobody(&deleg.join(f));
    }
    let scratch = scratch_dir("cg4-refused");
    let (state, base) = (scratch.join("state"), scratch.join("tmp"));
    for d in [&state, &base] {
        std::fs::create_dir(d).unwrap();
        chown_nobody(d);
    }
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    let secs = format!("{}", 800_000 + std::process::id());
    // The owner starts in the delegated cgroup, as uid 65534.
    let mut owner = LineChild::spawn(cgroup_owner_args(
        Command::new("sh")
            .args([
                "-c",
                "echo $$ > \"$1\" && shift && exec setpriv \"$@\"",
                "sh",
            ])
            .arg(deleg.join("cgroup.procs"))
            .args(NOBODY)
            .arg(OWNER),
        &state,
        &base,
        &secs,
    ));
    let owner_pid = owner.pid();
    owner
        .wait_line("ready", Duration::from_secs(10))
        .expect("ready");
    let sup_cg = owner_cgroup(&deleg, owner_pid);
    let mut kids = entries(&sup_cg);
    kids.retain(|e| e.starts_with("child-"));
    assert_eq!(kids.len(), 1, "{kids:?}");
    // Root's process, in the child's cgroup, started after the owner, its own group.
    let mut rooted = Command::new("sleep")
        .arg(&secs)
        .process_group(0)
        .spawn()
        .unwrap();
    let rooted_pid = rooted.id();
    std::fs::write(
        sup_cg.join(&kids[0]).join("cgroup.procs"),
        rooted_pid.to_string(),
    )
    .unwrap();
    owner.kill();
    owner
        .wait_exit(Duration::from_secs(10))
        .expect("the owner dies");

    let out = Command::new("setpriv")
        .args(NOBODY)
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "role", "--nocapture", "--test-threads=1"])
        .env(ROLE, &state)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let report: Option<SweepReport> = text
        .lines()
        .find_map(|l| l.split_once("REPORT ").map(|(_, r)| r))
        .map(|r| serde_json::from_str(r).unwrap());
    let _ = poll_until(Duration::from_secs(5), || {
        !custodian_suite::pid_running(rooted_pid)
    });
    let rooted_gone = !custodian_suite::pid_running(rooted_pid);
    let journals_left = entries(&state);
    // Clean up before asserting.
    let _ = rooted.kill();
    let _ = rooted.wait();
    for pid in mentioning(&secs) {
        let pid = rustix::process::Pid::from_raw(pid as i32).unwrap();
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
    let _ = poll_until(Duration::from_secs(5), || mentioning(&secs).is_empty());
    remove_tree(&deleg);
    let _ = std::fs::remove_dir_all(&scratch);
    let report = report.unwrap_or_else(|| {
        panic!(
            "no report:\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    eprintln!("{report}");
    assert!(
        rooted_gone,
        "root's process in the cgroup outlived the sweep"
    );
    assert_eq!(report.cgroups, vec![sup_cg.clone()], "{report}");
    assert!(
        report.survivors.is_empty(),
        "a process already ended by cgroup.kill is reported a survivor\n{report}"
    );
    assert!(report.is_clean(), "{report}");
    assert!(journals_left.is_empty(), "journals left: {journals_left:?}");
}
