//! Review of the supervisor cgroup's name `custodian-<pid>-<start>-<random>` (as it was) across pid
//! namespaces. The name ties a journal to the process that made the cgroup only within
//! one pid namespace: a live cgroup-tier supervisor in a pid namespace of its own (a
//! container sharing the host's cgroup tree) is, say, pid 1 there. A journal forged in a
//! state dir that a sweep of the host reads, whose owner record names pid 1 with that
//! supervisor's start time and no pid namespace (the record's namespace is the forger's
//! word anyway), and whose cgroup record names that supervisor's cgroup with its inode,
//! passes every check: the owner is "dead" (the host's pid 1 has another start time),
//! the name has the owner's pid and start, the inode is right. The sweep SIGTERMs the
//! live supervisor's children, `cgroup.kill`s them and removes its cgroup.
//!
//! Same class as tests/review_cg4_forged_cgroup.rs (which the start time fixed within
//! one namespace). Fixed by naming the creator's pid namespace too
//! (`custodian-<pid>-<start>-<pidns>-<random>`, the inode of `/proc/self/ns/pid`): a
//! sweep takes only a name of its own namespace, where it proved the owner dead.
//!
//! Skipped, saying so, without `unshare -p` or a writable cgroup2.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use custodian_suite::journal::{boot_id, private_dir, role_cmd};
use custodian_suite::journal_frame as frame;
use custodian_suite::{scratch_dir, serial};

const ROLE: &str = "CUSTODIAN_FINAL4_OTHER_PIDNS";

/// Inside the namespace: a live cgroup-tier supervisor with one child; prints
/// `READY <cgroup> <pid> <start>`, then waits for its stdin to close.
#[test]
#[ignore = "a role of a_forged_journal_never_reaches_a_live_supervisor_of_another_pid_namespace"]
fn other_pidns_role() {
    if std::env::var_os(ROLE).is_none() {
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let sup = match tokio_custodian::Supervisor::builder()
            .containment(tokio_custodian::Containment::Required)
            .reap_abandoned(false)
            .start()
        {
            Ok(sup) => sup,
            Err(e) => {
                println!("READY skip {e}");
                return;
            }
        };
        let tokio_custodian::ContainmentTier::Cgroup { path } = sup.stats().containment else {
            println!("READY skip no cgroup");
            return;
        };
        let mut child = sup.command("sleep").arg("1000").spawn().unwrap();
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
        let start = stat[stat.rfind(')').unwrap() + 2..]
            .split(' ')
            .nth(19)
            .unwrap()
            .to_owned();
        println!("READY {} {} {start}", path.display(), std::process::id());
        std::io::stdout().flush().unwrap();
        let _ =
            tokio::task::spawn_blocking(|| std::io::stdin().read_line(&mut String::new())).await;
        let _ = child.kill().await;
        sup.shutdown().await;
    });
}

/// Every pid the cgroup `dir` and those below it list (as this namespace sees them).
fn members(dir: &std::path::Path) -> Vec<u32> {
    let mut out: Vec<u32> = std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.parse().ok())
        .collect();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            out.extend(members(&e.path()));
        }
    }
    out
}

#[test]
fn a_forged_journal_never_reaches_a_live_supervisor_of_another_pid_namespace() {
    let _s = serial();
    let probe = Command::new("unshare")
        .args(["-p", "-f", "--mount-proc", "true"])
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        eprintln!("skipped: unshare -p is not allowed here");
        return;
    }
    let role = role_cmd("other_pidns_role", ROLE, "1");
    let mut ns = Command::new("unshare")
        .args(["-p", "-f", "--mount-proc", "--"])
        .arg(role.get_program())
        .args(role.get_args())
        .env(ROLE, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut out = BufReader::new(ns.stdout.take().unwrap());
    while !line.contains("READY ") {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "the role ended early"
        );
    }
    let ready = line.split_once("READY ").unwrap().1.trim().to_owned();
    if ready.starts_with("skip") {
        drop(ns.stdin.take());
        let _ = ns.wait();
        eprintln!("skipped: {ready}");
        return;
    }
    let mut f = ready.split(' ');
    let (path, pid, start) = (
        PathBuf::from(f.next().unwrap()),
        f.next().unwrap().parse::<u32>().unwrap(),
        f.next().unwrap().parse::<u64>().unwrap(),
    );
    let before = members(&path);
    assert!(
        !before.is_empty(),
        "the live supervisor's child is not in its cgroup"
    );

    // The forgery, in a state dir the host's sweep reads.
    let scratch = scratch_dir("final4-other-pidns");
    let state = private_dir(&scratch.join("state"));
    let mut owner = vec![1];
    owner.extend(pid.to_le_bytes());
    owner.extend(start.to_le_bytes());
    owner.extend(boot_id().as_bytes());
    let meta = std::fs::metadata(&path).unwrap();
    let mut cgroup = vec![11];
    cgroup.extend(meta.dev().to_le_bytes());
    cgroup.extend(meta.ino().to_le_bytes());
    cgroup.extend(path.as_os_str().as_encoded_bytes());
    let journal = state.join(format!("{pid}-{start}-0123456789abcdef.journal"));
    std::fs::write(&journal, [frame(&owner), frame(&cgroup)].concat()).unwrap();
    std::fs::set_permissions(&journal, std::fs::Permissions::from_mode(0o600)).unwrap();
    let report = tokio_custodian::Recovery::new()
        .state_dir(&state)
        .grace(Duration::from_millis(300))
        .run()
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let (after, cgroup_left) = (members(&path), path.exists());
    drop(ns.stdin.take());
    let _ = ns.wait();
    std::fs::remove_dir_all(&scratch).unwrap();
    assert!(
        cgroup_left && after == before,
        "a live supervisor's cgroup of another pid namespace was stopped or removed \
         ({before:?} -> {after:?}, left {cgroup_left})\n{report}"
    );
}
