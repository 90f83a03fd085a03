//! Review: inside a dead owner's proven root, the age sweep now removes an inspect socket
//! (`inspect-<12 hex>.sock`) nobody listens on, where "nobody listens" was read from
//! `/proc/net/unix`: the sweeper's network namespace only. A process in another network
//! namespace (`unshare -n`, a sandbox, a container sharing the temp dir) listening on a
//! socket of that name, in the root or any directory below it, was not listed, and its
//! socket was unlinked under it: its clients could no longer reach it. A path socket is
//! reached by its inode, across network namespaces: now the sweep connects to it, and
//! only a refused connection (no listener anywhere) lets it go.
//!
//! Needs root (a network namespace); says so and returns otherwise.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio_custodian::{AgeKeptReason, AgeSweep};

const ROLE: &str = "CUSTODIAN_REVIEW_FINAL2_LISTEN";

/// Listens on the socket path in `ROLE` until stdin closes; does nothing otherwise.
#[test]
#[ignore = "run by the other test, in another network namespace"]
fn role() {
    let Some(path) = std::env::var_os(ROLE) else {
        return;
    };
    let listener = UnixListener::bind(path).unwrap();
    println!("ready");
    let mut rest = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut rest);
    drop(listener);
}

/// A dead owner's root (0700, unlocked) in a fresh base with a short path.
fn dead_root(tag: &str) -> (PathBuf, PathBuf) {
    let base = PathBuf::from(format!("/tmp/rvf2{tag}-{}", std::process::id()));
    std::fs::create_dir(&base).unwrap();
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o700)).unwrap();
    let root = base.join(format!("custodian-{}", "d".repeat(32)));
    std::fs::create_dir(&root).unwrap();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700)).unwrap();
    (base, root)
}

/// A listener on `path` in a new network namespace (and the rest of its output);
/// `None` where none can be made.
fn listen_elsewhere(path: &Path) -> Option<(std::process::Child, impl Read)> {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new("unshare")
        .arg("-n")
        .arg(exe)
        .args(["--exact", "role", "--ignored", "--nocapture", "-q"])
        .env(ROLE, path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .ok()?;
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while out.read_line(&mut line).ok()? > 0 {
        if line.trim() == "ready" {
            return Some((child, out));
        }
        line.clear();
    }
    let _ = child.wait();
    None
}

fn sweep_keeps(base: &Path, sock: &Path) {
    let Some((mut listener, mut out)) = listen_elsewhere(sock) else {
        eprintln!("skipped: no network namespace here");
        return;
    };
    let report = AgeSweep::new(base, Duration::ZERO).run();
    let reachable = UnixStream::connect(sock).is_ok();
    drop(listener.stdin.take());
    let _ = out.read_to_end(&mut Vec::new());
    listener.wait().unwrap();
    let report = report.expect("sweep");
    assert!(
        reachable,
        "a socket listened on (in another network namespace) was unlinked: {report}"
    );
    let why = report
        .kept
        .iter()
        .find(|k| k.path == sock)
        .map(|k| &k.reason);
    assert_eq!(why, Some(&AgeKeptReason::ListeningSocket), "{report}");
    std::fs::remove_dir_all(base).unwrap();
}

#[test]
fn an_inspect_named_socket_listened_on_from_another_network_namespace_is_kept() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: needs root for a network namespace");
        return;
    }
    let (base, root) = dead_root("n1");
    sweep_keeps(&base, &root.join("inspect-0123456789ab.sock"));
}

#[test]
fn so_is_one_in_a_directory_below_the_root() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: needs root for a network namespace");
        return;
    }
    let (base, root) = dead_root("n2");
    std::fs::create_dir(root.join("run")).unwrap();
    sweep_keeps(&base, &root.join("run/inspect-0123456789ab.sock"));
}

#[test]
fn a_dead_owners_socket_still_goes_with_its_root() {
    let (base, root) = dead_root("n3");
    drop(UnixListener::bind(root.join("inspect-0123456789ab.sock")).unwrap());
    let report = AgeSweep::new(&base, Duration::ZERO).run().unwrap();
    assert!(!root.exists(), "{report}");
    std::fs::remove_dir_all(&base).unwrap();
}
