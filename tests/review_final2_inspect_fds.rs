//! Review: `tokio_custodian::inspect` (the client) after its non-blocking connect, the
//! `SO_PEERCRED` check and the bounded read: every way it fails (no socket, nobody
//! listening, a path too long for an address, a server that answers nothing, junk, a
//! refusal) returns a typed error naming the socket and leaves no fd behind. Held: no
//! defect found; this pins it.

use std::io::Write;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use custodian_suite::scratch_dir;

fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// A server on `path` that answers each of `answers` to one connection, in turn.
fn server(path: &Path, answers: Vec<&'static [u8]>) -> std::thread::JoinHandle<()> {
    let listener = UnixListener::bind(path).unwrap();
    std::thread::spawn(move || {
        for answer in answers {
            let (mut s, _) = listener.accept().unwrap();
            let _ = s.write_all(answer);
        }
    })
}

#[test]
fn every_failure_of_the_client_names_the_socket_and_keeps_no_fd() {
    let scratch = scratch_dir("rvf2-inspect-fds");
    // Past 108 bytes: reached through an fd of its directory.
    let long = scratch.join("d".repeat(100));
    std::fs::create_dir(&long).unwrap();
    let answers: Vec<&'static [u8]> = vec![b"", b"not json", b"{\"error\":\"refused: uid 1\"}\n"];
    // Counted before the server's listener, which its thread drops at its end.
    let before = fds();
    let served = scratch.join("inspect-000000000001.sock");
    let server = server(&served, answers.clone());
    let dead: PathBuf = long.join("inspect-000000000002.sock");
    {
        use std::os::fd::AsRawFd;
        let dir = std::fs::File::open(&long).unwrap();
        let via = format!(
            "/proc/self/fd/{}/inspect-000000000002.sock",
            dir.as_raw_fd()
        );
        drop(UnixListener::bind(via).unwrap());
    }
    let mut kinds = Vec::new();
    for path in [
        scratch.join("missing.sock"),
        long.join("missing.sock"),
        dead.clone(),
        served.clone(),
        served.clone(),
        served.clone(),
    ] {
        let e = tokio_custodian::inspect(&path).expect_err("no snapshot here");
        assert!(
            e.to_string().contains(&*path.to_string_lossy()),
            "the error names the socket: {e}"
        );
        kinds.push(e.kind());
    }
    server.join().unwrap();
    assert_eq!(fds(), before, "fds left behind ({kinds:?})");
    use std::io::ErrorKind::*;
    assert_eq!(
        kinds,
        [
            NotFound,
            NotFound,
            ConnectionRefused,
            InvalidData,
            InvalidData,
            PermissionDenied
        ]
    );
    std::fs::remove_dir_all(&scratch).unwrap();
}
