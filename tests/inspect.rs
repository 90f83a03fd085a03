//! The inspect server (issue 20): a real program with live temp files, a child and a
//! quota acquisition waiting is inspected from another process; every part is named.
//! The program is this test binary run again in "owner" mode (the `owner` test, which
//! does nothing unless `INSPECT_OWNER` is set). The child's entry carries its pid and
//! group, and the scope tree shows the scope between `job` and the child's, which holds
//! nothing itself.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio_custodian::{Quota, ResourceKind, Supervisor};

#[tokio::test]
async fn owner() {
    if std::env::var_os("INSPECT_OWNER").is_none() {
        return;
    }
    let sup = Supervisor::builder()
        .inspect(true)
        .quota(Quota::live(ResourceKind::TempFile, 2))
        .start()
        .unwrap();
    let s = sup.clone();
    sup.scope("job", async move |scope| {
        let a = scope.temp().label("alpha").file().await.unwrap();
        let b = scope.temp().label("beta").file().await.unwrap();
        // Two scopes down, past one that holds nothing itself.
        scope
            .scope("stage", async |stage| {
                stage
                    .scope("step", async |step| {
                        let child = step
                            .command("sleep")
                            .arg("30")
                            .label("sleeper")
                            .spawn()
                            .unwrap();
                        // A third temp file waits for the quota: asked by another owner (a task of its
                        // own, in the root scope) that holds nothing, so its wait is a plain wait (a
                        // request waiting for room it holds itself would be a refused cycle).
                        let waiter = s.clone();
                        let gamma =
                            tokio::spawn(async move { waiter.temp().label("gamma").file().await });
                        let began = std::time::Instant::now();
                        while s.quotas()[0].waiting == 0 {
                            assert!(!gamma.is_finished(), "the third acquisition did not wait");
                            assert!(began.elapsed() < Duration::from_secs(20), "never waiting");
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        println!("ready {}", s.inspect_socket().unwrap().display());
                        std::io::stdout().flush().unwrap();
                        // Until the test closes our stdin.
                        tokio::task::spawn_blocking(|| {
                            let _ = std::io::stdin().read_line(&mut String::new());
                        })
                        .await
                        .unwrap();
                        drop(child);
                    })
                    .await
                    .unwrap();
            })
            .await
            .unwrap();
        drop((a, b));
    })
    .await
    .unwrap();
    sup.shutdown().await;
}

#[test]
fn a_real_program_is_inspected_from_another_process() {
    let mut owner = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "owner", "--nocapture", "--test-threads=1"])
        .env("INSPECT_OWNER", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(owner.stdout.take().unwrap()).lines();
    let socket = loop {
        let line = lines
            .next()
            .expect("the owner exited before it was ready")
            .unwrap();
        // libtest prints `test owner ... ` before the test's own output.
        if let Some((_, s)) = line.split_once("ready ") {
            break std::path::PathBuf::from(s);
        }
    };
    // Found by pid, as `custodian inspect PID` does: through the owner's fds.
    let found = tokio_custodian::inspect_sockets_of(owner.id()).unwrap();
    assert_eq!(found, vec![socket.clone()]);
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&socket).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let seen = tokio_custodian::inspect(&socket).unwrap();
    assert_eq!(seen.pid, owner.id());
    assert_eq!(seen.state, "running");
    let by_label = |l: &str| {
        seen.live
            .iter()
            .find(|r| r.label == l)
            .unwrap_or_else(|| panic!("{l} missing in {seen}"))
    };
    for l in ["alpha", "beta"] {
        let r = by_label(l);
        assert_eq!(
            (r.kind, r.scope.as_str()),
            (ResourceKind::TempFile, "root/job")
        );
        assert!(r.path.as_ref().unwrap().starts_with(&seen.temp_root));
        assert!(r.site.file.ends_with("inspect.rs"));
    }
    let sleeper = by_label("sleeper");
    assert_eq!(sleeper.kind, ResourceKind::Child);
    assert_eq!(sleeper.scope, "root/job/stage/step");
    let child = seen
        .children
        .iter()
        .find(|c| c.cmdline == "sleep 30")
        .expect("the child");
    assert_eq!(child.pgid, child.pid, "a managed child leads its own group");
    // The entry is tied to its process: its pid, which is the sleep's (by /proc), and
    // the process to its entry.
    assert_eq!(sleeper.pid, Some(child.pid), "{seen}");
    assert_eq!(sleeper.pgid, Some(child.pid));
    assert!(!sleeper.reaped);
    assert_eq!(
        std::fs::read(format!("/proc/{}/cmdline", child.pid)).unwrap(),
        b"sleep\x0030\x00"
    );
    assert_eq!(child.resource, Some(sleeper.id));
    assert!(by_label("alpha").pid.is_none());
    let table = seen.to_string();
    let row = format!("pid {} group {}", child.pid, child.pid);
    assert!(table.contains(&row), "{row} not in {table}");
    assert!(
        table.contains(&format!("[resource {}]", sleeper.id)),
        "{table}"
    );
    let q = &seen.stats.quotas[0];
    assert_eq!((q.in_use, q.waiting), (2, 1), "{seen}");
    assert_eq!(seen.scopes.get("root/job"), Some(&2));
    assert_eq!(seen.scopes.get("root/job/stage/step"), Some(&1));
    // The tree: root, job (2), stage (nothing of its own), step (the child).
    let tree: Vec<_> = seen
        .scope_tree
        .iter()
        .map(|s| (s.depth, s.path.as_str(), s.live))
        .collect();
    assert_eq!(
        tree,
        [
            (0, "root", 0),
            (1, "root/job", 2),
            (2, "root/job/stage", 0),
            (3, "root/job/stage/step", 1)
        ],
        "{seen}"
    );
    assert!(table.contains("      stage #"), "{table}");
    // The JSON names each, as a tool reads it.
    let json = serde_json::to_value(&seen).unwrap();
    let labels: Vec<_> = json["live"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["alpha", "beta", "sleeper"]);
    assert_eq!(json["stats"]["quotas"][0]["waiting"], 1);
    assert_eq!(json["live"][2]["pid"], child.pid);
    assert_eq!(json["live"][2]["pgid"], child.pid);
    assert!(
        json["live"][0].get("pid").is_none(),
        "no pid for a temp file"
    );
    assert_eq!(
        json["children"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["pid"] == child.pid)
            .unwrap()["resource"],
        sleeper.id
    );
    assert_eq!(json["scope_tree"][2]["name"], "stage");
    assert!(json["live"][0]["age_ms"].is_f64());

    drop(owner.stdin.take());
    assert!(owner.wait().unwrap().success());
    // The server removed its socket (with the temp root).
    assert!(!socket.exists());
}

#[tokio::test]
async fn off_by_default_and_no_socket_left() {
    let sup = Supervisor::builder().start().unwrap();
    assert!(sup.inspect_socket().is_none());
    sup.shutdown().await;
    let state = std::env::temp_dir().join(format!("inspect-state-{}", std::process::id()));
    let sup = Supervisor::builder()
        .inspect(true)
        .state_dir(&state)
        .start()
        .unwrap();
    let socket = sup.inspect_socket().unwrap().to_path_buf();
    assert_eq!(socket.parent(), Some(sup.temp_root()));
    assert_eq!(
        tokio_custodian::inspect_sockets_in(&state).unwrap(),
        vec![socket.clone()]
    );
    sup.shutdown().await;
    // The server ends with the supervisor, and unlinks its socket.
    for _ in 0..200 {
        if !socket.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!socket.exists());
    let _ = std::fs::remove_dir_all(&state);
}

/// A socket path longer than an address holds (107 bytes) is bound and reached through
/// an fd of its dir: by path and by the pid.
#[tokio::test]
async fn a_long_path_is_bound_and_reached_through_its_dir() {
    let base = std::env::temp_dir()
        .join(format!("inspect-long-{}", std::process::id()))
        .join("d".repeat(100));
    std::fs::create_dir_all(&base).unwrap();
    let sup = Supervisor::builder()
        .inspect(true)
        .temp_base(&base)
        .start()
        .unwrap();
    let socket = sup.inspect_socket().unwrap().to_path_buf();
    assert!(socket.as_os_str().len() > 108);
    // (Other tests of this binary may be serving too.)
    let mut by_pid = tokio_custodian::inspect_sockets_of(std::process::id()).unwrap();
    by_pid.retain(|p| p.file_name() == socket.file_name());
    assert_eq!(by_pid.len(), 1);
    assert!(by_pid[0].starts_with(format!("/proc/{}/fd/", std::process::id())));
    let s = socket.clone();
    let seen = tokio::task::spawn_blocking(move || {
        (
            tokio_custodian::inspect(&s).unwrap(),
            tokio_custodian::inspect(&by_pid[0]).unwrap(),
        )
    })
    .await
    .unwrap();
    assert_eq!(seen.0.socket, socket);
    assert_eq!(seen.1.socket, socket);
    sup.shutdown().await;
    let _ = std::fs::remove_dir_all(base.parent().unwrap());
}
