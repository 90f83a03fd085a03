//! The leak check (`tokio_custodian::testing`, issue 20): a test that leaks a raw fd, a
//! raw child, a `setsid` grandchild, a raw temp file and a forgotten custodian guard gets
//! all five named; the same test releasing everything is clean; both runtime flavours;
//! checks running in parallel; a clean-up in flight at `finish` is waited for.
//!
//! Every test here runs through `LeakCheckBuilder::run` (the exact mode): libtest runs
//! these tests in parallel, and each builds its runtime and runs its body inside the
//! process-wide lock, so each check sees only its own test.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio_custodian::testing::{LeakCheck, LeakCheckBuilder};
use tokio_custodian::{ResourceKind, Supervisor};

/// A fresh dir for a test to watch as "the temp dir" (the real one is shared with every
/// other process of the machine).
fn watched(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("leak-check-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn watching(dir: &Path) -> LeakCheckBuilder {
    LeakCheck::builder().no_temp_dir().watch_dir(dir)
}

fn current() -> tokio::runtime::Builder {
    tokio::runtime::Builder::new_current_thread()
}

fn multi() -> tokio::runtime::Builder {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    b.worker_threads(2);
    b
}

/// Starts `sh`, which starts a `setsid` grandchild and exits; returns the grandchild's pid.
fn setsid_grandchild(secs: &str) -> u32 {
    let out = std::process::Command::new("sh")
        .args([
            "-c",
            &format!("setsid sleep {secs} >/dev/null 2>&1 & echo $!"),
        ])
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn kill_and_reap(pid: u32) {
    let p = rustix::process::Pid::from_raw(pid as i32).unwrap();
    let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
    let _ = rustix::process::waitpid(Some(p), rustix::process::WaitOptions::empty());
}

#[test]
fn five_leaks_are_named() {
    let dir = watched("five");
    let raw_temp = dir.join("raw-temp-file");
    let ((sup, raw_fd, mut raw_child, escapee, forgotten_path, line), report) =
        watching(&dir).run(current(), async || {
            let sup = Supervisor::builder().start().unwrap();
            let raw_fd = std::fs::File::open("/etc/hostname").unwrap();
            let raw_child = std::process::Command::new("sleep")
                .arg("41")
                .spawn()
                .unwrap();
            let escapee = setsid_grandchild("42");
            std::fs::write(&raw_temp, b"left behind").unwrap();
            let forgotten = sup.temp().label("forgotten").file().await.unwrap();
            let forgotten_path = forgotten.path().to_path_buf();
            std::mem::forget(forgotten);
            let line = line!() - 3;
            (sup, raw_fd, raw_child, escapee, forgotten_path, line)
        });
    let text = report.to_string();
    println!("{text}");
    // 1. the raw fd, by its target
    assert!(
        report.fds.iter().any(|f| f.target == "/etc/hostname"),
        "{text}"
    );
    // 2. the raw child, by pid and command line
    let child = report
        .processes
        .iter()
        .find(|p| p.pid == raw_child.id())
        .expect(&text);
    assert_eq!(child.cmdline, "sleep 41");
    // 3. the setsid grandchild, adopted because the check holds the subreaper setting
    let esc = report
        .processes
        .iter()
        .find(|p| p.pid == escapee)
        .expect(&text);
    assert_eq!((esc.cmdline.as_str(), esc.pgid), ("sleep 42", escapee));
    // 4. the raw temp file, by path
    assert!(report.paths.iter().any(|p| p.path == raw_temp), "{text}");
    // 5. the forgotten guard: kind, label, creation site (its path is not listed twice)
    let r = &report.resources[0].resource;
    assert_eq!((r.kind(), r.label()), (ResourceKind::TempFile, "forgotten"));
    assert_eq!((&*r.site().file, r.site().line), (file!(), line), "{text}");
    assert_eq!(r.path(), Some(&*forgotten_path));
    assert!(
        !report.paths.iter().any(|p| p.path == forgotten_path),
        "{text}"
    );
    // The supervisor itself, started inside the check and not dropped, is named too.
    assert_eq!(report.supervisors, vec![sup.temp_root().to_path_buf()]);
    for needle in [
        "/etc/hostname",
        "sleep 41",
        "sleep 42",
        "raw-temp-file",
        "forgotten",
    ] {
        assert!(text.contains(needle), "{needle} not in {text}");
    }
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["resources"][0]["label"], "forgotten");
    assert_eq!(json["resources"][0]["kind"], "temp_file");
    assert!(json["waited_ms"].is_f64());

    drop(raw_fd);
    raw_child.kill().unwrap();
    raw_child.wait().unwrap();
    kill_and_reap(escapee);
    std::fs::remove_dir_all(&dir).unwrap();
    drop(sup); // the emergency path removes the forgotten file
}

#[test]
fn the_same_test_released_is_clean() {
    let dir = watched("clean");
    let ((), report) = watching(&dir).run(current(), async || {
        let sup = Supervisor::builder().start().unwrap();

        let raw_fd = std::fs::File::open("/etc/hostname").unwrap();
        let mut raw_child = std::process::Command::new("sleep")
            .arg("41")
            .spawn()
            .unwrap();
        let escapee = setsid_grandchild("42");
        let raw_temp = dir.join("raw-temp-file");
        std::fs::write(&raw_temp, b"left behind").unwrap();
        let t = sup.temp().label("kept").file().await.unwrap();

        drop(raw_fd);
        raw_child.kill().unwrap();
        raw_child.wait().unwrap();
        kill_and_reap(escapee);
        std::fs::remove_file(&raw_temp).unwrap();
        t.close().await.unwrap();
        sup.shutdown().await;
    });
    assert!(report.is_clean(), "{report}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Custodian work of every kind, all released: temp files and dirs, a managed child, a
/// lock, a scoped task, a supervisor started and shut down inside the check.
async fn busy_and_released() {
    let sup = Supervisor::builder().start().unwrap();
    sup.scope("work", async |s| {
        let d = s.temp_dir().await?;
        std::fs::write(d.path().join("x"), b"x").unwrap();
        let _t = s.temp_file().await?;
        let lock_path = d.path().join("lock");
        let _l = s.file_lock(&lock_path).exclusive().acquire().await?;
        let out = s.command("sh").args(["-c", "echo hi"]).output().await?;
        assert_eq!(out.stdout, b"hi\n");
        let task = s.spawn(async { tokio::time::sleep(Duration::from_millis(5)).await })?;
        task.await.unwrap();
        Ok::<_, tokio_custodian::Error>(())
    })
    .await
    .unwrap()
    .unwrap();
    assert!(sup.shutdown().await.is_clean());
}

#[test]
fn current_thread_runtime_is_clean() {
    let dir = watched("ct");
    let ((), report) = watching(&dir).run(current(), busy_and_released);
    assert!(report.is_clean(), "{report}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn multi_thread_runtime_is_clean() {
    let dir = watched("mt");
    let ((), report) = watching(&dir).run(multi(), busy_and_released);
    assert!(report.is_clean(), "{report}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Eight checked bodies started from eight threads at once (each its own runtime, as
/// parallel tests), while libtest runs this file's other tests: exact-mode checks run
/// one after another, and the one that leaks an fd is the only one that reports it.
#[test]
fn parallel_checks_attribute_exactly() {
    let threads: Vec<_> = (0..8)
        .map(|i| {
            std::thread::spawn(move || {
                let dir = watched(&format!("par{i}"));
                let rt = if i % 2 == 0 { current() } else { multi() };
                let (keep, report) = watching(&dir).run(rt, async || {
                    let f = std::fs::File::open("/dev/null").unwrap();
                    let sup = Supervisor::builder().start().unwrap();
                    drop(sup.temp_dir().await.unwrap());
                    sup.shutdown().await;
                    (i == 3).then_some(f)
                });
                std::fs::remove_dir_all(&dir).unwrap();
                (report, keep)
            })
        })
        .collect();
    for (i, t) in threads.into_iter().enumerate() {
        let (report, _keep) = t.join().unwrap();
        if i == 3 {
            assert_eq!(report.len(), 1, "{report}");
            assert_eq!(report.fds[0].target, "/dev/null");
        } else {
            assert!(report.is_clean(), "check {i}: {report}");
        }
    }
}

/// A temp dir of 3,000 files dropped just before `finish`: its removal is in flight,
/// waited for and not reported; with no wait at all, it is reported.
#[test]
fn a_clean_up_in_flight_is_waited_for() {
    let dir = watched("flight");
    for wait in [Duration::from_secs(10), Duration::ZERO] {
        let (path, report) = watching(&dir).wait(wait).run(multi(), async || {
            let sup = Supervisor::builder().start().unwrap();
            let d = sup.temp_dir().await.unwrap();
            let path = d.path().to_path_buf();
            for n in 0..3000 {
                std::fs::write(path.join(n.to_string()), b"").unwrap();
            }
            drop(d);
            assert!(
                path.exists(),
                "the removal had not finished when finish began"
            );
            // Shut down in the background: its wait for the removal is still in flight
            // when `finish` begins, and the supervisor's own fds close when it ends.
            tokio::spawn(async move { sup.shutdown().await });
            path
        });
        if wait.is_zero() {
            assert!(
                report.cleanups_in_flight == 1 || report.paths.iter().any(|p| p.path == path),
                "{report}"
            );
        } else {
            assert!(report.is_clean(), "{report}");
            assert!(report.waited > Duration::ZERO);
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
