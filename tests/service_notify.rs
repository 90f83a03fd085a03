//! systemd's notify protocol (`Builder::systemd_notify`, issue 19), with a datagram
//! socket standing in for systemd: `READY=1` after start, `STOPPING=1` when the drain
//! begins, then `EXTEND_TIMEOUT_USEC` every second while shutdown runs, each asking for
//! the grace left plus 3 s, in that order. Path and abstract (`@name`) sockets.
//!
//! The supervisor runs in a child process of the test binary, which gets
//! `NOTIFY_SOCKET` in its environment (changing this process's environment is not safe
//! with threads).

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::process::Command;
use std::time::Duration;

use custodian_suite::is_isolated;
use tokio_custodian::{Operation, Supervisor};

const ISOLATED: &str = "CUSTODIAN_NOTIFY_ISOLATED";
const GRACE: Duration = Duration::from_secs(4);

/// Runs the isolated test `name` with `NOTIFY_SOCKET=socket`; panics if it fails.
fn run_with(name: &str, socket: &str) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--ignored", "--nocapture"])
        .env(ISOLATED, name)
        .env("NOTIFY_SOCKET", socket)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every message queued on `sock`.
fn received(sock: &UnixDatagram) -> Vec<String> {
    sock.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 512];
    let mut v = Vec::new();
    while let Ok(n) = sock.recv(&mut buf) {
        v.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    v
}

/// READY, STOPPING, then extensions (at least two: the drain below lasts 1.5 s),
/// non-increasing, each within the grace plus the margin and at least the margin.
fn check(msgs: &[String]) {
    assert!(msgs.len() >= 4, "{msgs:?}");
    assert_eq!(msgs[0], "READY=1", "{msgs:?}");
    assert_eq!(msgs[1], "STOPPING=1", "{msgs:?}");
    let ext: Vec<u128> = msgs[2..]
        .iter()
        .map(|m| {
            m.strip_prefix("EXTEND_TIMEOUT_USEC=")
                .unwrap_or_else(|| panic!("not an extension: {m} in {msgs:?}"))
                .parse()
                .unwrap()
        })
        .collect();
    assert!(ext.len() >= 2, "{msgs:?}");
    let (margin, most) = (3_000_000u128, (GRACE.as_micros() + 3_000_000));
    for w in ext.windows(2) {
        assert!(w[1] <= w[0], "extensions grew: {ext:?}");
    }
    assert!(ext.iter().all(|&e| e <= most && e >= margin), "{ext:?}");
    assert!(
        ext[0] > most - 500_000,
        "the first asks for the whole grace: {ext:?}"
    );
}

#[test]
fn a_path_socket_gets_ready_stopping_and_extensions_in_order() {
    let dir = custodian_suite::scratch_dir("notify");
    let path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    run_with("shutdown_isolated", path.to_str().unwrap());
    check(&received(&sock));
    drop(sock);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_abstract_socket_gets_them_too() {
    let name = format!("custodian-notify-test-{}", std::process::id());
    let addr =
        <SocketAddr as std::os::linux::net::SocketAddrExt>::from_abstract_name(name.as_bytes())
            .unwrap();
    let sock = UnixDatagram::bind_addr(&addr).unwrap();
    run_with("shutdown_isolated", &format!("@{name}"));
    check(&received(&sock));
}

#[test]
#[ignore = "run with NOTIFY_SOCKET by the tests above"]
fn shutdown_isolated() {
    if !is_isolated(ISOLATED, "shutdown_isolated") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let sup = Supervisor::builder()
            .grace(GRACE)
            .drain(Duration::from_secs(3))
            .systemd_notify(true)
            .start()
            .unwrap();
        let s = sup.clone();
        let (started, entered) = tokio::sync::oneshot::channel();
        let request = tokio::spawn(async move {
            s.scope("request", async |_| {
                let _ = started.send(());
                tokio::time::sleep(Duration::from_millis(1500)).await;
            })
            .await
        });
        // The drain finishes scopes in flight: this one must be in flight first (a yield
        // was not enough on a loaded machine, and the drain refused the late scope).
        entered.await.unwrap();
        let report = sup.shutdown().await;
        assert!(request.await.unwrap().is_ok());
        assert_eq!(report.drain.as_ref().unwrap().scopes_finished, 1);
        assert!(report.is_clean(), "{report}");
    });
}

#[test]
fn a_malformed_notify_socket_fails_start() {
    run_with("malformed_isolated", "relative/path");
}

#[test]
#[ignore = "run with a malformed NOTIFY_SOCKET by a_malformed_notify_socket_fails_start"]
fn malformed_isolated() {
    if !is_isolated(ISOLATED, "malformed_isolated") {
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let err = Supervisor::builder()
            .systemd_notify(true)
            .start()
            .unwrap_err();
        assert_eq!(err.operation(), Operation::Notify);
        assert_eq!(err.path(), Some(std::path::Path::new("relative/path")));
        // Off (the default), the variable is not even read.
        let sup = Supervisor::builder().start().unwrap();
        sup.shutdown().await;
    });
}
