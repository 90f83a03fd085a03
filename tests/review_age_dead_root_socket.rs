//! Review: a SIGKILLed supervisor with an inspect socket (`custodian run` binds one,
//! `inspect-<12 hex>.sock`, in its temp root) left a root that no reap of abandoned roots
//! ever removed: the age sweep never unlinks a socket, so the socket was kept, and the root
//! around it, at every later start and `custodian sweep --base`. Seen after
//! `custodian run -- ...` was SIGKILLed without a state dir: the root stayed with only the
//! socket in it. Now, inside a root proven custodian's and abandoned, an inspect socket
//! nobody listens on is removed with the root; any other socket, and a listening one,
//! still keep it.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::time::Duration;

use tokio_custodian::{AgeKeptReason, AgeSweep};

/// A dead owner's root (mode 0700, nobody holds its lock) in a fresh base, with a short
/// path (a socket's address holds at most 107 bytes).
fn dead_root(tag: &str) -> (PathBuf, PathBuf) {
    let base = PathBuf::from(format!("/tmp/rv{tag}-{}", std::process::id()));
    std::fs::create_dir(&base).unwrap();
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o700)).unwrap();
    let root = base.join(format!("custodian-{}", "c".repeat(32)));
    std::fs::create_dir(&root).unwrap();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700)).unwrap();
    (base, root)
}

#[test]
fn a_dead_owners_inspect_socket_does_not_keep_its_root_for_good() {
    let (base, root) = dead_root("ds");
    // Bound, then the owner died: the socket file stays, nobody listens.
    drop(UnixListener::bind(root.join("inspect-0123456789ab.sock")).unwrap());
    let report = AgeSweep::new(&base, Duration::ZERO).run().unwrap();
    assert!(
        !root.exists(),
        "the dead owner's root was kept for its inspect socket: {report}"
    );
    assert!(report.is_clean(), "{report}");
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn other_sockets_and_a_listening_inspect_socket_still_keep_the_root() {
    let (base, root) = dead_root("ls");
    // A surviving child's socket, and an inspect-named one someone listens on.
    drop(UnixListener::bind(root.join("app.sock")).unwrap());
    let live = root.join("inspect-ba9876543210.sock");
    let listener = UnixListener::bind(&live).unwrap();
    let report = AgeSweep::new(&base, Duration::ZERO).run().unwrap();
    let why = |p: &std::path::Path| {
        (report.kept.iter())
            .find(|k| k.path == p)
            .map(|k| k.reason.clone())
    };
    assert_eq!(
        why(&root.join("app.sock")),
        Some(AgeKeptReason::Socket),
        "{report}"
    );
    assert_eq!(why(&live), Some(AgeKeptReason::ListeningSocket), "{report}");
    assert!(root.exists() && live.exists(), "{report}");
    drop(listener);
    std::fs::remove_dir_all(&base).unwrap();
}
