//! Review of the inspect server (issue 20): shutdown and drop with clients stalled on
//! it, a client that writes a huge request, and the socket's name at the end (these
//! held: shutdown returned at once, nothing was read, no fd or name was left); and
//! which sockets belong to a state dir.

use std::io::Write;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use tokio_custodian::{Cleanup, Reclaim, ResourceKind, Supervisor};

struct Noop;
impl Reclaim for Noop {
    fn reclaim(self: Box<Self>) -> Cleanup {
        Cleanup::Done(Ok(()))
    }
}

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
                Noop,
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
/// Defect (not fixed): `inspect_sockets_in` lists every inspect socket of a process
/// holding A, B's too. A fix: keep the sockets whose dir is a temp root named by a
/// `Root` record of a journal the process holds in A (`sys::frames`, `Record::decode`).
#[test]
#[ignore = "defect: inspect_sockets_in(A) also lists the socket of the same process's supervisor of state dir B"]
fn sockets_in_a_state_dir_are_that_dirs_owners_only() {
    exact(async || {
        let base = std::env::temp_dir().join(format!("rv-insp-two-{}", std::process::id()));
        let (a, b) = (base.join("a"), base.join("b"));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir(&base).unwrap();
        let sa = Supervisor::builder()
            .state_dir(&a)
            .inspect(true)
            .start()
            .unwrap();
        let sb = Supervisor::builder()
            .state_dir(&b)
            .inspect(true)
            .start()
            .unwrap();
        let found = tokio_custodian::inspect_sockets_in(&a).unwrap();
        let (pa, pb) = (
            sa.inspect_socket().unwrap().to_path_buf(),
            sb.inspect_socket().unwrap().to_path_buf(),
        );
        sa.shutdown().await;
        sb.shutdown().await;
        drop((sa, sb));
        std::fs::remove_dir_all(&base).unwrap();
        assert_eq!(found, [pa], "B's socket ({}) listed for A", pb.display());
    });
}
