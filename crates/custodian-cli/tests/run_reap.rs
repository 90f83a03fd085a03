//! `custodian run` as a container entrypoint: orphans adopted while CMD runs are reaped
//! as they exit (tini's zombie reaping), as a child subreaper and as PID 1 of a new pid
//! namespace; never CMD itself, whose exit code is still the runner's.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{BIN, FreshTmp, poll};

/// Three orphans (each subshell exits at once, leaving its `sleep`) that exit together
/// 200 ms in, while CMD itself lives 3 s.
const ORPHANS: &str = "(sleep 0.2 &); (sleep 0.2 &); (sleep 0.2 &); exec sleep 3";

/// The zombies whose parent is `pid`, by pid.
fn zombies_of(pid: u32) -> Vec<u32> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().filter_map(|e| e.ok()) {
        let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        let Some(rest) = stat.rfind(')').and_then(|i| stat.get(i + 2..)) else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.first() == Some(&"Z") && f.get(1).and_then(|x| x.parse().ok()) == Some(pid) {
            v.push(p);
        }
    }
    v
}

/// Starts `cmd`, finds the runner with `runner`, and watches the runner's zombies for
/// 1.2 s: returns the longest any one was seen a zombie, and how many are left then.
fn watch(
    t: &FreshTmp,
    mut cmd: Command,
    runner: impl Fn(&Child) -> Option<u32>,
) -> (Duration, usize) {
    let mut child = cmd.stdin(Stdio::null()).spawn().unwrap();
    let mut pid = None;
    assert!(poll(Duration::from_secs(10), || {
        pid = runner(&child);
        pid.is_some()
    }));
    let pid = pid.unwrap();
    let start = Instant::now();
    let mut first_seen = std::collections::HashMap::new();
    let mut longest = Duration::ZERO;
    while start.elapsed() < Duration::from_millis(1200) {
        let now = Instant::now();
        for z in zombies_of(pid) {
            let at = *first_seen.entry(z).or_insert(now);
            longest = longest.max(now - at);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let left = zombies_of(pid).len();
    let st = child.wait().unwrap();
    assert_eq!(st.code(), Some(0), "CMD's own exit code (sleep 3)");
    assert!(
        poll(Duration::from_secs(3), || t.processes().is_empty()),
        "{:?}",
        t.processes()
    );
    (longest, left)
}

#[test]
fn adopted_orphans_are_reaped_as_they_exit_as_a_subreaper() {
    let t = FreshTmp::new("reap-sub");
    let cmd = t.cmd(&["run", "--", "sh", "-c", ORPHANS]);
    let (longest, left) = watch(&t, cmd, |c| Some(c.id()));
    eprintln!("subreaper: longest a zombie was seen: {longest:?}");
    assert_eq!(left, 0, "zombies of the runner 1.2 s in");
    assert!(
        longest < Duration::from_millis(300),
        "a zombie lived {longest:?}"
    );
}

#[test]
fn adopted_orphans_are_reaped_as_they_exit_as_pid_1() {
    let t = FreshTmp::new("reap-pid1");
    let mut cmd = Command::new("unshare");
    cmd.args([
        "-p",
        "-f",
        "--mount-proc",
        BIN,
        "run",
        "--",
        "sh",
        "-c",
        ORPHANS,
    ])
    .env("TMPDIR", &t.0);
    let (longest, left) = watch(&t, cmd, |unshare| {
        let me = unshare.id();
        let kids = std::fs::read_to_string(format!("/proc/{me}/task/{me}/children")).ok()?;
        kids.split_whitespace().next()?.parse().ok()
    });
    eprintln!("PID 1: longest a zombie was seen: {longest:?}");
    assert_eq!(left, 0, "zombies of the runner 1.2 s in");
    assert!(
        longest < Duration::from_millis(300),
        "a zombie lived {longest:?}"
    );
}
