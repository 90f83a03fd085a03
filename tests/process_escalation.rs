//! Children that resist: SIGTERM ignored, grandchildren in the group, deadlines; and
//! children that behave: exiting on their own, failing to start, piped stdio.

use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use custodian_suite::{
    group_members, pid_exists, serial_process_test, wait_group_size, wait_groups_gone,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_custodian::{Operation, ReleasePath, ResourceKind, Supervisor};

const SETTLE: Duration = Duration::from_secs(5);

#[test]
fn sigterm_ignored_is_killed_after_the_grace_period() {
    serial_process_test(async || {
        let sup = Supervisor::builder().start().unwrap();
        let grace = Duration::from_millis(300);
        let child = sup
            .command("sh")
            .args(["-c", "trap '' TERM; sleep 1000"])
            .grace(grace)
            .spawn()
            .unwrap();
        let pid = child.id().unwrap();
        // The trap is set once the shell has started `sleep` (which inherits the
        // ignored disposition).
        assert!(wait_group_size(pid, 2, SETTLE));
        let t = Instant::now();
        let st = child.close().await.unwrap();
        let took = t.elapsed();
        assert_eq!(st.signal(), Some(9), "{st:?}");
        assert!(took >= grace, "killed before the grace period: {took:?}");
        assert!(took < grace + Duration::from_secs(2), "took {took:?}");
        // Every member has been sent SIGKILL before the leader was reaped; the kernel
        // finishes them a moment later (they are not our children to wait for).
        let left = wait_groups_gone(&[pid], SETTLE);
        assert!(left.is_empty(), "sleep survived its shell: {left:?}");
        assert!(sup.shutdown().await.is_clean());
        vec![pid]
    });
}

#[test]
fn grandchildren_are_stopped_with_their_group() {
    serial_process_test(async || {
        let sup = Supervisor::builder().start().unwrap();
        let pids = sup
            .scope("s", async |s| {
                let mut pids = Vec::new();
                // Forgotten: stopped by the scope's end through the registry entry.
                for _ in 0..3 {
                    let c = s
                        .command("sh")
                        .args(["-c", "sleep 1000 & sleep 1000"])
                        .spawn()
                        .unwrap();
                    assert!(wait_group_size(c.id().unwrap(), 3, SETTLE));
                    pids.push(c.id().unwrap());
                    std::mem::forget(c);
                }
                pids
            })
            .await
            .unwrap();
        // Both sleeps, reparented when the shell died, are gone too (killed before the
        // shell was reaped; the settle in the final check only lets SIGKILL land).
        assert!(sup.shutdown().await.cleanups_finished);
        pids
    });
}

#[test]
fn grandchildren_are_stopped_on_close_and_drop() {
    serial_process_test(async || {
        let sup = Supervisor::builder().start().unwrap();
        let a = sup
            .command("sh")
            .args(["-c", "sleep 1000 & sleep 1000"])
            .spawn()
            .unwrap();
        let b = sup
            .command("sh")
            .args(["-c", "sleep 1000 & exec sleep 1000"])
            .spawn()
            .unwrap();
        let (pa, pb) = (a.id().unwrap(), b.id().unwrap());
        assert!(wait_group_size(pa, 3, SETTLE) && wait_group_size(pb, 2, SETTLE));
        a.close().await.unwrap();
        drop(b);
        assert!(sup.shutdown().await.is_clean());
        vec![pa, pb]
    });
}

#[test]
fn a_child_that_exits_on_its_own_is_reaped_and_not_signalled() {
    serial_process_test(async || {
        let sup = Supervisor::builder().start().unwrap();
        let mut child = sup.command("sh").args(["-c", "exit 3"]).spawn().unwrap();
        let pid = child.process_group();
        let st = child.wait().await.unwrap();
        assert_eq!(st.code(), Some(3));
        assert!(!pid_exists(pid), "wait reaps");
        assert_eq!(child.id(), None);
        // After the reap nothing is signalled: the pid may be someone else's now.
        child.start_kill().unwrap();
        assert_eq!(child.kill().await.unwrap().code(), Some(3));
        assert_eq!(child.try_wait().unwrap().map(|s| s.code()), Some(Some(3)));
        assert_eq!(child.close().await.unwrap().code(), Some(3));
        let s = sup.stats();
        assert_eq!(
            s.kind(ResourceKind::Child)
                .released
                .get(&ReleasePath::Close),
            Some(&1)
        );
        assert!(sup.failures().is_empty());
        assert!(sup.shutdown().await.is_clean());
        vec![pid]
    });
}

#[test]
fn deadline_stops_a_child_that_runs_too_long() {
    serial_process_test(async || {
        let sup = Supervisor::builder().start().unwrap();
        let t = Instant::now();
        let mut child = sup
            .command("sleep")
            .arg("1000")
            .deadline(Duration::from_millis(100))
            .spawn()
            .unwrap();
        let pid = child.id().unwrap();
        let err = child.wait().await.unwrap_err();
        assert_eq!(err.io_kind(), Some(std::io::ErrorKind::TimedOut));
        assert_eq!(err.operation(), Operation::StopChild);
        assert_eq!(err.path(), Some(std::path::Path::new("sleep")));
        assert!(t.elapsed() >= Duration::from_millis(100));
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
        assert!(!pid_exists(pid));
        drop(child);
        // A quick child is not affected.
        let out = sup
            .command("echo")
            .arg("hi")
            .deadline(Duration::from_secs(30))
            .output()
            .await
            .unwrap();
        assert_eq!(out.stdout, b"hi\n");
        assert!(sup.shutdown().await.is_clean());
        vec![pid]
    });
}

#[test]
fn spawn_failures_are_typed_errors_and_leave_nothing_registered() {
    serial_process_test(async || {
        use std::os::unix::fs::PermissionsExt;
        let sup = Supervisor::builder().start().unwrap();
        let not_exec = sup.temp_root().join("not-executable");
        std::fs::write(&not_exec, "#!/bin/sh\nexit 0\n").unwrap();
        std::fs::set_permissions(&not_exec, std::fs::Permissions::from_mode(0o600)).unwrap();
        let cases = [
            (
                std::path::PathBuf::from("/no/such/program"),
                std::io::ErrorKind::NotFound,
            ),
            (
                std::path::PathBuf::from("no-such-program-on-path"),
                std::io::ErrorKind::NotFound,
            ),
            (not_exec.clone(), std::io::ErrorKind::PermissionDenied),
            (
                std::path::PathBuf::from("/"),
                std::io::ErrorKind::PermissionDenied,
            ),
        ];
        for (program, kind) in cases {
            let err = sup.command(&program).spawn().unwrap_err();
            assert_eq!(err.operation(), Operation::Spawn, "{err}");
            assert_eq!(err.path(), Some(program.as_path()), "{err}");
            assert_eq!(err.io_kind(), Some(kind), "{err}");
            assert!(
                err.to_string().contains(&*program.to_string_lossy()),
                "{err}"
            );
        }
        let s = sup.stats();
        assert_eq!(s.kind(ResourceKind::Child).created, 0);
        assert!(sup.live().is_empty());
        std::fs::remove_file(&not_exec).unwrap();
        assert!(sup.shutdown().await.is_clean());
        vec![]
    });
}

#[test]
fn piped_stdio_and_output() {
    serial_process_test(async || {
        let sup = Supervisor::builder().start().unwrap();
        let mut cat = sup
            .command("cat")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = cat.id().unwrap();
        let mut input = cat.take_stdin().unwrap();
        let mut output = cat.take_stdout().unwrap();
        assert!(cat.take_stderr().is_none());
        input.write_all(b"frame 1\n").await.unwrap();
        drop(input);
        let mut got = String::new();
        output.read_to_string(&mut got).await.unwrap();
        assert_eq!(got, "frame 1\n");
        assert!(cat.wait().await.unwrap().success());
        drop((cat, output));
        let out = sup
            .command("sh")
            .args([
                "-c",
                "echo \"$GREETING\" from $(pwd); echo oops >&2; exit 4",
            ])
            .env("GREETING", "hello")
            .current_dir("/tmp")
            .output()
            .await
            .unwrap();
        assert_eq!(out.stdout, b"hello from /tmp\n");
        assert_eq!(out.stderr, b"oops\n");
        assert_eq!(out.status.code(), Some(4));
        assert!(group_members(&[pid]).is_empty());
        assert!(sup.shutdown().await.is_clean());
        vec![pid]
    });
}

#[test]
fn the_final_sweep_kills_what_an_exited_leader_left_in_its_group() {
    serial_process_test(async || {
        let sup = Supervisor::builder().start().unwrap();
        // The shell exits at once; its background sleep stays in the group, ignoring
        // SIGTERM. Only the group SIGKILL before the reap can reach it safely.
        let mut child = sup
            .command("sh")
            .args(["-c", "trap '' TERM; sleep 1000 >/dev/null & echo started"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.process_group();
        let mut line = String::new();
        child
            .take_stdout()
            .unwrap()
            .read_to_string(&mut line)
            .await
            .unwrap();
        assert_eq!(line, "started\n");
        assert!(child.wait().await.unwrap().success());
        assert!(!pid_exists(pid));
        drop(child);
        assert!(sup.shutdown().await.is_clean());
        vec![pid]
    });
}
