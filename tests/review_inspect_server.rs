//! Review of the inspect server (issue 20): shutdown and drop with clients stalled on
//! it, a client that writes a huge request, and the socket's name at the end (these
//! held: shutdown returned at once, nothing was read, no fd or name was left); and
//! which sockets belong to a state dir.

use std::io::Write;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use custodian_suite::reclaims::Nothing;
use tokio_custodian::{ResourceKind, Supervisor};

/// Runs `body` alone under the leak check's exact mode: fds, paths and processes of
/// the whole process are compared, so nothing the server opened may be left.
fn exact(body: impl AsyncFnOnce()) {
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.worker_threads(2);
    let ((), report) = tokio_custodian::testing::LeakCheck::builder()
        .no_temp_dir()
        .run(rt, body);
    assert!(report.is_clean(), "{report}");
}

/// A supervisor with enough live resources that an answer outgrows a socket buffer.
fn big(sup: &Supervisor) -> Vec<tokio_custodian::Registration> {
    let root = sup.root();
    (0..5_000)
        .map(|_| {
            root.register(
                ResourceKind::File,
                "padding-label-xxxxxxxxxxxxxxxx",
                None,
                Nothing,
            )
            .unwrap()
        })
        .collect()
}

#[test]
fn shutdown_is_not_held_by_stalled_readers_and_leaves_nothing() {
    exact(async || {
        let sup = Supervisor::builder().inspect(true).start().unwrap();
        let regs = big(&sup);
        let socket = sup.inspect_socket().unwrap().to_path_buf();
        // Eight readers that never read (the server's bound), and one that writes a lot.
        let stalled: Vec<UnixStream> = (0..8)
            .map(|_| UnixStream::connect(&socket).unwrap())
            .collect();
        let mut writer = UnixStream::connect(&socket).unwrap();
        writer
            .set_write_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut sent = 0usize;
        while sent < 64 << 20 {
            match writer.write(&[b'x'; 65536]) {
                Ok(n) => sent += n,
                Err(_) => break,
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(regs);
        let t = Instant::now();
        sup.shutdown().await;
        let took = t.elapsed();
        drop(sup);
        assert!(
            took < Duration::from_secs(1),
            "shutdown waited {took:?} for stalled clients"
        );
        assert!(
            sent < 64 << 20,
            "the server read {sent} bytes of a request it never needs"
        );
        drop((stalled, writer));
        // The answers' tasks end by their write timeout (2 s); the check waits for them.
        tokio::time::sleep(Duration::from_millis(2_500)).await;
        assert!(std::fs::symlink_metadata(&socket).is_err(), "socket left");
    });
}

#[test]
fn a_dropped_supervisor_closes_its_listener_and_name() {
    exact(async || {
        let sup = Supervisor::builder().inspect(true).start().unwrap();
        let socket = sup.inspect_socket().unwrap().to_path_buf();
        assert!(
            std::fs::symlink_metadata(&socket)
                .unwrap()
                .file_type()
                .is_socket()
        );
        drop(sup);
        let gone = async {
            while std::fs::symlink_metadata(&socket).is_ok() || UnixStream::connect(&socket).is_ok()
            {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), gone)
            .await
            .expect("socket still answers");
    });
}

/// One process, two supervisors with their own state dirs: `--state-dir A` is about A.
/// (`inspect_sockets_in` listed every inspect socket of a process holding A, B's too.)
#[test]
fn sockets_in_a_state_dir_are_that_dirs_owners_only() {
    exact(async || {
        let base = std::env::temp_dir().join(format!("rv-insp-two-{}", std::process::id()));
        let (a, b) = (base.join("a"), base.join("b"));
        // A temp root too long for a socket address: A's second owner's socket is
        // reached as `/proc/PID/fd/N/name`, and still found as A's.
        let long = base.join("d".repeat(100));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir(&base).unwrap();
        std::fs::create_dir(&long).unwrap();
        let start = |state: &Path, temp: &Path| {
            Supervisor::builder()
                .state_dir(state)
                .temp_base(temp)
                .inspect(true)
                .start()
                .unwrap()
        };
        let tmp = std::env::temp_dir();
        let (sa, sa2, sb) = (start(&a, &tmp), start(&a, &long), start(&b, &tmp));
        let found = tokio_custodian::inspect_sockets_in(&a).unwrap();
        let names = |s: &Supervisor| s.inspect_socket().unwrap().file_name().unwrap().to_owned();
        let (na, na2, nb) = (names(&sa), names(&sa2), names(&sb));
        let pa = sa.inspect_socket().unwrap().to_path_buf();
        for s in [sa, sa2, sb] {
            s.shutdown().await;
        }
        std::fs::remove_dir_all(&base).unwrap();
        let seen: Vec<_> = found.iter().map(|p| p.file_name().unwrap()).collect();
        assert!(!seen.contains(&&*nb), "B's socket listed for A: {found:?}");
        assert!(found.contains(&pa), "{found:?}");
        assert!(
            seen.contains(&&*na2),
            "A's long-path owner missing: {found:?}"
        );
        assert_eq!(found.len(), 2, "{found:?} ({na:?})");
    });
}
