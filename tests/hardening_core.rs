//! Regression tests for the core's edges (issue 8): failed clean-ups are retried, not
//! forgotten; `Duration::MAX` saturates; errors keep their kind and never put a label
//! where a path belongs; the temp prefix cannot widen the start-up reaper. Shutdown's
//! edges are in `hardening_shutdown.rs`.

use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use custodian_suite::{Rt, entries, eventually, exists, open_fds, scenario};
use tokio_custodian::{Cleanup, Error, Operation, Reclaim, ResourceKind, Supervisor};

/// A resource whose clean-up is whatever the test says.
struct Scripted(Box<dyn FnOnce() -> Cleanup + Send + Sync>);

impl Reclaim for Scripted {
    fn reclaim(self: Box<Self>) -> Cleanup {
        (self.0)()
    }
}

fn scripted(f: impl FnOnce() -> Cleanup + Send + Sync + 'static) -> Scripted {
    Scripted(Box::new(f))
}

#[test]
fn a_pathless_clean_up_error_keeps_its_kind_and_names_the_resource() {
    scenario(Rt::Current, "pathless-error", async |base| {
        let sup = Supervisor::builder().temp_base(&base).start().unwrap();
        let reg = sup
            .root()
            .register(
                ResourceKind::Lock,
                "db-lock",
                None,
                scripted(|| Cleanup::Done(Err(io::Error::from_raw_os_error(24)))),
            )
            .unwrap();
        let e = reg.close().await.unwrap_err();
        // No label dressed up as a path, and EMFILE stays EMFILE.
        assert_eq!(e.path(), None, "{e}");
        assert_eq!(
            e.io_kind(),
            Some(io::Error::from_raw_os_error(24).kind()),
            "{e}"
        );
        assert!(matches!(e, Error::ResourceIo { .. }), "{e:?}");
        assert!(e.to_string().contains("db-lock"), "{e}");
        assert_eq!(sup.failures().len(), 1);
        sup.shutdown().await;
    });
}

#[test]
fn a_panicking_clean_up_is_reported_as_a_panic() {
    scenario(Rt::Multi(2), "panicking-cleanup", async |base| {
        let sup = Supervisor::builder().temp_base(&base).start().unwrap();
        let path = base.join("x");
        let reg = sup
            .root()
            .register(
                ResourceKind::TempDir,
                "boom",
                Some(path.clone()),
                scripted(|| Cleanup::Blocking(Box::new(|| panic!("clean-up bug")))),
            )
            .unwrap();
        let e = reg.close().await.unwrap_err();
        match &e {
            Error::CleanupPanicked {
                op,
                resource,
                message,
            } => {
                assert_eq!(*op, Operation::RemoveTempDir);
                assert_eq!(resource, &path.display().to_string());
                assert!(message.contains("clean-up bug"), "{message}");
            }
            other => panic!("not a panic: {other:?}"),
        }
        assert_eq!(sup.failures().len(), 1, "a panicking clean-up is a failure");
        sup.shutdown().await;
    });
}

#[test]
fn audio_io_errors_keep_their_kind_when_folded_into_custodian_errors() {
    let e = tokio_custodian_audio::Error::Io {
        op: tokio_custodian_audio::Op::Open,
        path: "in.wav".into(),
        source: io::Error::from_raw_os_error(24),
    };
    let e = tokio_custodian::Error::from(e);
    assert_eq!(e.io_kind(), Some(io::Error::from_raw_os_error(24).kind()));
    assert_eq!(e.path(), Some(std::path::Path::new("in.wav")));
}

#[test]
fn grace_duration_max_saturates() {
    scenario(Rt::Multi(2), "grace-max", async |base| {
        let sup = Supervisor::builder()
            .temp_base(&base)
            .grace(Duration::MAX)
            .start()
            .unwrap();
        let s = sup.clone();
        let (ready_tx, ready) = tokio::sync::oneshot::channel();
        let t = tokio::spawn(async move {
            s.scope("short", async |s| {
                let _f = s.temp_file().await.unwrap();
                ready_tx.send(()).unwrap();
                s.cancelled().await;
            })
            .await
        });
        ready.await.unwrap();
        let first = sup.shutdown().await;
        let second = sup.shutdown().await;
        assert_eq!(first, second);
        assert!(first.is_clean(), "{first}");
        t.await.unwrap().unwrap();
    });
}

#[test]
fn short_or_hex_only_temp_prefixes_are_refused() {
    scenario(Rt::Current, "prefix", async |base| {
        for bad in ["", "x", "tmp", "abcd1234", "DEADBEEF", "a/b-c", "nul\0x"] {
            let e = Supervisor::builder()
                .temp_base(&base)
                .temp_prefix(bad)
                .start()
                .unwrap_err();
            assert_eq!(e.operation(), Operation::CreateTempRoot, "{bad:?}");
            assert_eq!(
                e.io_kind(),
                Some(io::ErrorKind::InvalidInput),
                "{bad:?}: {e}"
            );
            assert_eq!(e.path(), Some(base.as_path()));
        }
        assert!(
            entries(&base).is_empty(),
            "nothing created for a refused prefix"
        );
        let ok = Supervisor::builder()
            .temp_base(&base)
            .temp_prefix("job-")
            .start()
            .unwrap();
        ok.shutdown().await;
    });
}

const EMFILE_RETRY_CHILD: &str = "CUSTODIAN_SUITE_EMFILE_RETRY_CHILD";

/// Runs [`emfile_retry_child`] alone in a child process (it lowers its own fd limit).
#[test]
fn a_removal_failing_with_emfile_is_retried_not_forgotten() {
    custodian_suite::run_isolated("emfile_retry_child", EMFILE_RETRY_CHILD, false);
}

/// The body of [`a_removal_failing_with_emfile_is_retried_not_forgotten`].
#[test]
#[ignore = "run by a_removal_failing_with_emfile_is_retried_not_forgotten"]
fn emfile_retry_child() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    if !custodian_suite::is_isolated(EMFILE_RETRY_CHILD, "emfile_retry_child") {
        return;
    }
    scenario(Rt::Multi(2), "emfile-retry", async |base| {
        let sup = Supervisor::builder().temp_base(&base).start().unwrap();
        sup.reaped_at_start().await;
        let dirs: Vec<tokio_custodian::TempDir> = {
            let mut v = Vec::new();
            for _ in 0..8 {
                let d = sup.temp_dir().await.unwrap();
                std::fs::create_dir_all(d.path().join("a/b")).unwrap();
                std::fs::write(d.path().join("a/b/f"), b"x").unwrap();
                v.push(d);
            }
            v
        };
        let paths: Vec<PathBuf> = dirs.iter().map(|d| d.path().to_path_buf()).collect();
        let old = getrlimit(Resource::Nofile);
        let mut low = old;
        low.current = Some(u64::try_from(open_fds() + 16).unwrap());
        setrlimit(Resource::Nofile, low).unwrap();
        let mut fillers = Vec::new();
        while let Ok(fd) = rustix::fs::open(
            "/dev/null",
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        ) {
            fillers.push(fd);
        }
        // Out of fds: every removal's first attempt fails with EMFILE.
        drop(dirs);
        eventually("the failures show as pending", || {
            sup.pending_cleanups().len() == paths.len()
        })
        .await;
        let stats = sup.stats();
        assert_eq!(stats.pending(), paths.len() as u64, "{stats}");
        assert!(sup.failures().is_empty(), "{:?}", sup.failures());
        let p = &sup.pending_cleanups()[0];
        assert_eq!(p.kind, ResourceKind::TempDir);
        assert!(p.path.is_some() && p.attempts >= 1, "{p}");
        // Still out of fds: the retries run on the fds kept in reserve.
        let deadline = Instant::now() + Duration::from_secs(10);
        while paths.iter().any(|p| exists(p)) {
            assert!(
                Instant::now() < deadline,
                "dirs left while out of fds: {:#?}",
                sup.pending_cleanups()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        eventually("nothing pending", || sup.pending_cleanups().is_empty()).await;
        drop(fillers);
        setrlimit(Resource::Nofile, old).unwrap();
        let report = sup.shutdown().await;
        assert!(report.is_clean(), "{report}");
        assert_eq!(report.stats.pending(), 0);
    });
}

/// A clean-up that keeps failing transiently is retried until shutdown stops waiting,
/// then reported as a failure with its attempts; the shutdown stays bounded.
#[test]
fn a_clean_up_that_never_recovers_becomes_a_failure_at_the_deadline() {
    scenario(Rt::Multi(2), "retry-gives-up", async |base| {
        let sup = Supervisor::builder()
            .temp_base(&base)
            .grace(Duration::from_millis(300))
            .start()
            .unwrap();
        let attempts = Arc::new(Mutex::new(0u32));
        let a = attempts.clone();
        drop(
            sup.root()
                .register(
                    ResourceKind::TempDir,
                    "busy",
                    Some(base.join("busy")),
                    scripted(move || {
                        Cleanup::Blocking(Box::new(move || {
                            *a.lock().unwrap() += 1;
                            Err(io::Error::from_raw_os_error(16)) // EBUSY
                        }))
                    }),
                )
                .unwrap(),
        );
        eventually("retried", || *attempts.lock().unwrap() >= 3).await;
        assert_eq!(sup.stats().pending(), 1);
        let t = Instant::now();
        let report = sup.shutdown().await;
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        assert_eq!(report.stats.pending(), 0);
        assert_eq!(report.failures.len(), 1, "{report}");
        assert!(
            report.failures[0].error.contains("gave up after"),
            "{report}"
        );
        assert!(!report.is_clean());
    });
}
