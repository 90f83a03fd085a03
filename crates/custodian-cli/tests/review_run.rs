//! Review of `custodian run` (signals, the terminal, reaping): the defects found, each
//! with the scenario that showed it, on real processes and a real pseudo-terminal.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{BIN, FreshTmp, Pty};

/// The runner is its terminal's session leader (`ssh -t host custodian run vim`,
/// `docker exec -it`, `xterm -e`, `script -c`): no job-control shell exists that could
/// `fg` it, and the kernel ignores Ctrl-Z for such an orphaned group. CMD's group (the
/// runner's child, so not orphaned) is stopped by Ctrl-Z all the same; the runner used
/// to SIGSTOP itself then (which the kernel never ignores): CMD and the runner stayed
/// stopped for good and the terminal hung. Now the runner stops with SIGTSTP (stopped
/// only where a shell can continue it) and, not stopped, continues CMD in front.
#[test]
fn ctrl_z_with_no_shell_to_fg_does_not_hang_the_terminal() {
    let t = FreshTmp::new("review-ctrl-z-orphan");
    let line =
        r#"exec "$CUSTODIAN" run --containment never -- sh -c 'echo ready; read x; echo got $x'"#;
    let mut pty = Pty::start(&t, line);
    assert!(
        pty.saw("ready\r\n", Duration::from_secs(15)),
        "CMD never started"
    );
    pty.send(b"\x1a");
    // Let the stop (and the runner's reaction to it) happen before the input comes.
    std::thread::sleep(Duration::from_millis(500));
    pty.send(b"typed\n");
    let got = pty.saw("got typed", Duration::from_secs(10));
    let finished = pty.finish(&t, Duration::from_secs(10));
    let text = pty.text();
    assert!(
        got,
        "CMD stayed stopped (the runner stopped itself): {text:?}"
    );
    assert!(finished, "the runner hung: {text:?}");
    assert!(t.processes().is_empty(), "{:?}", t.processes());
}

/// The cgroup2 mount and this process's cgroup directory, as mountinfo and
/// `/proc/self/cgroup` show them (the first uncovered cgroup2 mount from the end).
fn own_cgroup_dir() -> Option<std::path::PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let (root, point) = info.lines().rev().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        let dash = f.iter().position(|&x| x == "-")?;
        (f.get(dash + 1) == Some(&"cgroup2")).then(|| (f[3].to_owned(), f[4].to_owned()))
    })?;
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let own = own.lines().find_map(|l| l.strip_prefix("0::"))?;
    let rel = std::path::Path::new(own).strip_prefix(&root).ok()?;
    Some(std::path::Path::new(&point).join(rel))
}

/// A bind mount of some other cgroup subtree, made after the cgroup2 mount (a
/// container's view, a monitoring agent's), used to make discovery give up: it took the
/// last cgroup2 mount in mountinfo and, as that one does not show the runner's cgroup,
/// reported `outside_mount` although the main mount shows it. Now the first mount that
/// shows the runner's cgroup is used.
#[test]
fn a_later_bind_mount_of_another_subtree_does_not_hide_the_cgroup2_mount() {
    let Some(own) = own_cgroup_dir() else {
        eprintln!("skipped: no cgroup2");
        return;
    };
    let sub = own.join(format!("review-bind-{}", std::process::id()));
    if std::fs::create_dir(&sub).is_err() {
        eprintln!("skipped: no writable cgroup2");
        return;
    }
    let t = FreshTmp::new("review-bind");
    let view = t.0.join("view");
    std::fs::create_dir(&view).unwrap();
    // In a private mount namespace: the bind mount is gone with it.
    let line = r#"mount --bind "$SUB" "$VIEW" && exec "$CUSTODIAN" run --containment required --json -- true"#;
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", line])
        .env("TMPDIR", &t.0)
        .env("CUSTODIAN", BIN)
        .env("SUB", &sub)
        .env("VIEW", &view)
        .output()
        .expect("util-linux unshare");
    let _ = std::fs::remove_dir(&sub);
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    if err.contains("unshare failed") || err.contains("mount:") {
        eprintln!("skipped: cannot make a mount namespace: {err}");
        return;
    }
    assert_eq!(out.status.code(), Some(0), "{text}{err}");
    // The report goes to standard error.
    assert!(err.contains("\"tier\": \"cgroup\""), "{err}");
    assert!(!sub.exists(), "the test's cgroup is removed");
    assert!(t.processes().is_empty(), "{:?}", t.processes());
}
