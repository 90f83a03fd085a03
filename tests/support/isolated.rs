//! Running one test of the calling test binary alone, in a child process (and a private
//! mount namespace), for a test that changes process-wide state.

use crate::serial;

/// Runs the `#[ignore]`d test `name` of the calling test binary alone, in a child
/// process with the environment variable `env` set to `name` (see [`is_isolated`]), for a
/// test that changes process-wide state (umask, fd limit, mounts). In a new private mount
/// namespace if `private_mounts` (needs root: without it the test is skipped with a line
/// on stderr, and `None` returned). Takes the [`serial`] lock: the child's pipes are fds
/// of this process. Panics with the child's output unless exactly that test ran and
/// passed; returns the child's pid (its scratch dirs carry it).
pub fn run_isolated(name: &str, env: &str, private_mounts: bool) -> Option<u32> {
    use std::process::{Command, Stdio};
    if private_mounts && !rustix::process::geteuid().is_root() {
        eprintln!("skipped {name}: mounting needs root");
        return None;
    }
    let _serial = serial();
    let exe = std::env::current_exe().expect("this test binary");
    let mut cmd = if private_mounts {
        let mut c = Command::new("unshare");
        c.args(["--mount", "--propagation", "private", "--"])
            .arg(&exe);
        c
    } else {
        Command::new(&exe)
    };
    cmd.args([
        "--exact",
        name,
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(env, name)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let child = cmd.spawn().expect("start the isolated test");
    // `unshare` execs the test binary in its own process: the pid is the test's.
    let pid = child.id();
    let out = child
        .wait_with_output()
        .expect("wait for the isolated test");
    // A failed child leaves its scratch dirs (its mounts died with its namespace).
    remove_scratch_dirs_of(pid);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "isolated test `{name}` failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Some(pid)
}

/// Whether this process is the child [`run_isolated`] started to run `name`. An isolated
/// test run directly (`--ignored` without the variable) must do nothing: it would change
/// process-wide state in the test runner's own process.
pub fn is_isolated(env: &str, name: &str) -> bool {
    std::env::var(env).is_ok_and(|v| v == name)
}

/// Removes the [`scratch_dir`](crate::scratch_dir)s that process `pid` made and left behind.
fn remove_scratch_dirs_of(pid: u32) {
    let tail = format!("-{pid}-");
    let Ok(dir) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let ours = name.starts_with("custodian-suite-")
            && name.rsplit_once('-').is_some_and(|(head, n)| {
                n.bytes().all(|b| b.is_ascii_digit()) && format!("{head}-").ends_with(&tail)
            });
        if ours {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}
