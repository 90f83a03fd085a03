//! Every release path, for `ManagedFile`, `TempFile` and `TempDir`: the path is recorded
//! in the stats, the temp path is gone, the fd is closed, and the counters add up. Each
//! test also checks (through `scenario`) that the process's fd count and the scratch
//! directory are back to their baseline once the runtime is gone.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Case, Guard, KINDS};
use custodian_suite::{Rt, eventually, exists, open_fds, scenario};
use tokio::sync::oneshot;
use tokio_custodian::{CancelReason, Error, ReleasePath};

#[test]
fn close_releases_and_reports() {
    scenario(Rt::Current, "close", async |base| {
        for kind in KINDS {
            let c = Case::start(&base, kind).await;
            let g = c.acquire(&c.sup.root()).await;
            let path = g.path();
            g.close().await.unwrap();
            c.released(&path, ReleasePath::Close, true).await;
            assert!(c.finish().await.is_clean());
        }
    });
}

#[test]
fn drop_releases() {
    scenario(Rt::Current, "drop", async |base| {
        for kind in KINDS {
            let c = Case::start(&base, kind).await;
            let g = c.acquire(&c.sup.root()).await;
            let path = g.path();
            drop(g);
            c.released(&path, ReleasePath::Drop, false).await;
            assert!(c.finish().await.is_clean());
        }
    });
}

#[test]
fn scope_return_releases_before_scope_returns() {
    scenario(Rt::Current, "scope-return", async |base| {
        for kind in KINDS {
            let c = Case::start(&base, kind).await;
            let path = c
                .sup
                .scope("s", async |s| {
                    let g = c.acquire(&s).await;
                    tokio::task::yield_now().await;
                    g.path()
                })
                .await
                .unwrap();
            c.released(&path, ReleasePath::Drop, true).await;
            assert!(c.finish().await.is_clean());
        }
    });
}

#[test]
fn scope_error_releases_before_scope_returns() {
    scenario(Rt::Current, "scope-error", async |base| {
        for kind in KINDS {
            let c = Case::start(&base, kind).await;
            let r: Result<(), _> = c
                .sup
                .scope("s", async |s| {
                    let g = c.acquire(&s).await;
                    Err(g.path())
                })
                .await
                .unwrap();
            c.released(&r.unwrap_err(), ReleasePath::Drop, true).await;
            assert!(c.finish().await.is_clean());
        }
    });
}

#[test]
fn a_guard_escaping_its_scope_is_reclaimed_as_a_leak() {
    scenario(Rt::Current, "escape", async |base| {
        for kind in KINDS {
            let c = Case::start(&base, kind).await;
            let g = c
                .sup
                .scope("s", async |s| c.acquire(&s).await)
                .await
                .unwrap();
            let path = g.path();
            assert!(!g.is_live());
            c.released(&path, ReleasePath::ScopeEnd, true).await;
            let leaks = c.sup.leaked();
            assert_eq!(leaks.len(), 1);
            assert_eq!((leaks[0].id(), leaks[0].scope()), (g.id(), "s"));
            // The escaped guard no longer owns anything: using it fails (a file's close
            // reports that it was reclaimed), and nothing is released twice.
            match g {
                Guard::Temp(mut t) => {
                    use tokio::io::AsyncWriteExt;
                    assert!(t.write_all(b"x").await.is_err());
                    assert!(t.close().await.is_err());
                }
                Guard::File(f) => assert!(f.close().await.is_err()),
                Guard::Dir(d) => d.close().await.unwrap(),
            }
            c.released(&path, ReleasePath::ScopeEnd, true).await;
            assert_eq!(c.finish().await.leaks.len(), 1);
        }
    });
}

#[test]
fn panic_in_the_body_releases_then_resumes() {
    scenario(Rt::Current, "panic", async |base| {
        for kind in KINDS {
            let c = Arc::new(Case::start(&base, kind).await);
            let seen = Arc::new(Mutex::new(None));
            let (c2, seen2) = (c.clone(), seen.clone());
            let task = tokio::spawn(async move {
                c2.sup
                    .scope("doomed", async |s| {
                        let g = c2.acquire(&s).await;
                        *seen2.lock().unwrap() = Some(g.path());
                        tokio::task::yield_now().await;
                        panic!("boom in the body");
                    })
                    .await
            });
            let err = task.await.unwrap_err();
            assert!(err.is_panic(), "the panic is resumed");
            let payload = err.into_panic();
            assert_eq!(payload.downcast_ref::<&str>(), Some(&"boom in the body"));
            let path = seen.lock().unwrap().take().unwrap();
            // The scope resumed the panic only after its clean-ups had finished.
            c.released(&path, ReleasePath::Panic, true).await;
            let c = Arc::into_inner(c).unwrap();
            assert!(c.finish().await.is_clean());
        }
    });
}

#[test]
fn scope_future_dropped_mid_await_releases() {
    scenario(Rt::Current, "dropped", async |base| {
        for kind in KINDS {
            let c = Case::start(&base, kind).await;
            let (tx, rx) = oneshot::channel();
            let slow = c.sup.scope("slow", async |s| {
                let g = c.acquire(&s).await;
                tx.send(g.path()).unwrap();
                std::future::pending::<()>().await;
                drop(g);
            });
            let path = tokio::select! {
                _ = slow => panic!("the slow scope cannot finish"),
                path = async {
                    let path = rx.await.unwrap();
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    path
                } => path,
            };
            c.released(&path, ReleasePath::Cancelled, false).await;
            assert!(c.finish().await.is_clean());
        }
    });
}

#[test]
fn aborting_a_task_releases_its_guards() {
    scenario(Rt::Multi(2), "abort", async |base| {
        for kind in KINDS {
            let c = Arc::new(Case::start(&base, kind).await);
            let (tx, rx) = oneshot::channel();
            let c2 = c.clone();
            let task = tokio::spawn(async move {
                c2.sup
                    .scope("task", async |s| {
                        let g = c2.acquire(&s).await;
                        tx.send(g.path()).unwrap();
                        std::future::pending::<()>().await;
                        drop(g);
                    })
                    .await
            });
            let path = rx.await.unwrap();
            task.abort();
            assert!(task.await.unwrap_err().is_cancelled());
            c.released(&path, ReleasePath::Cancelled, false).await;
            let c = Arc::into_inner(c).unwrap();
            assert!(c.finish().await.is_clean());
        }
    });
}

#[test]
fn cancelling_a_parent_scope_releases_a_cooperative_child() {
    scenario(Rt::Current, "parent-cancel", async |base| {
        for kind in KINDS {
            let c = Case::start(&base, kind).await;
            let (path, reason) = c
                .sup
                .scope("parent", async |parent| {
                    let (tx, rx) = oneshot::channel();
                    let child = parent.scope("child", async |s| {
                        let g = c.acquire(&s).await;
                        tx.send(()).unwrap();
                        s.cancelled().await;
                        (g.path(), s.cancel_reason())
                    });
                    let canceller = async {
                        rx.await.unwrap();
                        parent.cancel();
                    };
                    tokio::join!(child, canceller).0.unwrap()
                })
                .await
                .unwrap();
            assert_eq!(reason, Some(CancelReason::Requested));
            c.released(&path, ReleasePath::Cancelled, true).await;
            assert!(c.finish().await.is_clean());
        }
    });
}

/// A child that ignores its parent's cancellation is dropped after its grace period
/// (paused time: the 2 s pass at once) and its guards are released; the parent, with a
/// longer grace, sees the child's `Cancelled` error.
#[test]
fn cancelling_a_parent_drops_a_stubborn_child_after_the_grace_period() {
    scenario(Rt::Paused, "parent-cancel-grace", async |base| {
        for kind in KINDS {
            let b = tokio_custodian::Supervisor::builder().grace(Duration::from_secs(5));
            let c = Case::start_with(&base, kind, b).await;
            let t0 = tokio::time::Instant::now();
            let (r, path) = c
                .sup
                .scope("parent", async |parent| {
                    let (tx, rx) = oneshot::channel();
                    let grace = Duration::from_secs(2);
                    let child = parent.scope_with_grace("child", grace, async |s| {
                        let g = c.acquire(&s).await;
                        tx.send(g.path()).unwrap();
                        std::future::pending::<()>().await;
                        drop(g);
                    });
                    let canceller = async {
                        let p = rx.await.unwrap();
                        parent.cancel();
                        p
                    };
                    tokio::join!(child, canceller)
                })
                .await
                .unwrap();
            let waited = t0.elapsed();
            assert!(waited >= Duration::from_secs(2), "{waited:?}");
            assert!(waited < Duration::from_secs(5), "{waited:?}");
            match r {
                Err(Error::Cancelled { scope, reason }) => {
                    assert_eq!((scope.as_str(), reason), ("child", CancelReason::Requested));
                }
                other => panic!("expected Cancelled, got {other:?}"),
            }
            c.released(&path, ReleasePath::Cancelled, true).await;
            assert!(c.finish().await.is_clean());
        }
    });
}

#[test]
fn shutdown_releases_what_is_still_held() {
    scenario(Rt::Current, "shutdown", async |base| {
        for kind in KINDS {
            let c = Case::start(&base, kind).await;
            let g = c.acquire(&c.sup.root()).await;
            let path = g.path();
            let report = c.sup.shutdown().await;
            assert_eq!(report.alive_at_shutdown.len(), 1);
            assert_eq!(report.alive_at_shutdown[0].id(), g.id());
            assert_eq!(report.leaks.len(), 1);
            assert_eq!(report.leaks[0].released_by(), ReleasePath::Shutdown);
            // The guard is still alive, but its resource is released.
            assert!(!g.is_live());
            c.released(&path, ReleasePath::Shutdown, true).await;
            drop(g);
            c.released(&path, ReleasePath::Shutdown, true).await;
            c.finish().await;
        }
    });
}

/// A scope running when shutdown begins is cancelled (reason `Shutdown`); its body
/// returns, its guards are released as `Cancelled` before shutdown completes.
#[test]
fn shutdown_cancels_running_scopes() {
    scenario(Rt::Multi(2), "shutdown-scope", async |base| {
        for kind in KINDS {
            let c = Arc::new(Case::start(&base, kind).await);
            let (tx, rx) = oneshot::channel();
            let c2 = c.clone();
            let task = tokio::spawn(async move {
                c2.sup
                    .scope("worker", async |s| {
                        let g = c2.acquire(&s).await;
                        tx.send(()).unwrap();
                        s.cancelled().await;
                        (g.path(), s.cancel_reason())
                    })
                    .await
            });
            rx.await.unwrap();
            let report = c.sup.shutdown().await;
            assert!(report.scopes_finished, "{report}");
            assert!(report.alive_at_shutdown.is_empty(), "{report}");
            let (path, reason) = task.await.unwrap().unwrap();
            assert_eq!(reason, Some(CancelReason::Shutdown));
            c.released(&path, ReleasePath::Cancelled, true).await;
            let c = Arc::into_inner(c).unwrap();
            assert!(c.finish().await.is_clean());
        }
    });
}

/// Dropping every supervisor handle without `shutdown()` still removes everything
/// (emergency clean-up), even a guard that is still alive.
#[test]
fn last_handle_dropped_without_shutdown() {
    scenario(Rt::Current, "emergency", async |base| {
        let fds = open_fds();
        let sup = tokio_custodian::Supervisor::builder()
            .temp_base(&base)
            .start()
            .unwrap();
        let root = sup.temp_root().to_path_buf();
        let t = sup.temp_file().await.unwrap();
        let d = sup.temp_dir().await.unwrap();
        let paths = (t.path().to_path_buf(), d.path().to_path_buf());
        // The emergency clean-up runs on the blocking pool, off the dropping thread.
        drop(sup);
        eventually("emergency clean-up", || {
            !exists(&paths.0) && !exists(&paths.1) && !exists(&root) && open_fds() == fds
        })
        .await;
        drop((t, d));
    });
}

/// `transfer` is the one way out of a scope: the resource survives its first scope's end
/// and is released by its guard later, by its new owner's path.
#[test]
fn a_transferred_guard_outlives_its_scope() {
    scenario(Rt::Current, "transfer", async |base| {
        for kind in KINDS {
            let c = Case::start(&base, kind).await;
            let root = c.sup.root();
            let g = c
                .sup
                .scope("s", async |s| {
                    let g = c.acquire(&s).await;
                    match &g {
                        Guard::File(f) => f.registration().transfer(&root),
                        Guard::Temp(t) => t.registration().transfer(&root),
                        Guard::Dir(d) => d.registration().transfer(&root),
                    }
                    .unwrap();
                    g
                })
                .await
                .unwrap();
            assert!(g.is_live() && exists(&g.path()));
            assert_eq!(c.sup.live()[0].scope(), "root");
            assert!(c.sup.leaked().is_empty());
            let path = g.path();
            drop(g);
            c.released(&path, ReleasePath::Drop, false).await;
            assert!(c.finish().await.is_clean());
        }
    });
}
