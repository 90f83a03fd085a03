//! A forgotten (`mem::forget`) or escaped guard is still reclaimed, at scope end or
//! shutdown, and reported as a leak with the creation site of the acquiring line.

mod common;

use std::time::Duration;

use common::{Case, KINDS, Kind};
use custodian_suite::{Rt, entries, exists, open_fds, scenario};
use tokio_custodian::{ReleasePath, Supervisor};

#[test]
fn a_forgotten_guard_is_reclaimed_at_scope_end_with_its_site() {
    scenario(Rt::Current, "forget-scope", async |base| {
        for kind in KINDS {
            let c = Case::start(&base, kind).await;
            let files = c.files.clone();
            let (path, id, line) = c
                .sup
                .scope("forgetful", async |s| {
                    let fds = open_fds();
                    let (g, line) = match kind {
                        Kind::File => (
                            common::Guard::File(s.create(files.join("forgotten")).await.unwrap()),
                            line!() - 1,
                        ),
                        Kind::Temp => (common::Guard::Temp(s.temp_file().await.unwrap()), line!()),
                        Kind::Dir => (common::Guard::Dir(s.temp_dir().await.unwrap()), line!()),
                    };
                    assert_eq!(open_fds(), fds + kind.fds());
                    let out = (g.path(), g.id(), line);
                    std::mem::forget(g);
                    assert_eq!(s.live_count(), 1, "forgetting does not release");
                    out
                })
                .await
                .unwrap();
            // Removed (and its fd closed) before `scope` returned.
            c.released(&path, ReleasePath::ScopeEnd, true).await;
            let leaks = c.sup.leaked();
            assert_eq!(leaks.len(), 1, "{kind:?}");
            let leak = &leaks[0];
            assert_eq!(leak.id(), id);
            assert_eq!(leak.kind(), kind.resource());
            assert_eq!(leak.scope(), "forgetful");
            assert_eq!(leak.released_by(), ReleasePath::ScopeEnd);
            assert_eq!(leak.path(), Some(path.as_path()));
            assert_eq!((&*leak.site().file, leak.site().line), (file!(), line));
            assert!(leak.to_string().contains(&format!("{}:{line}:", file!())));
            let report = c.finish().await;
            assert_eq!(report.leaks, leaks, "the report lists the leak");
            assert!(!report.is_clean());
        }
    });
}

#[test]
fn a_forgotten_guard_in_the_root_scope_is_reclaimed_at_shutdown() {
    scenario(Rt::Current, "forget-root", async |base| {
        let fds = open_fds();
        let sup = Supervisor::builder().temp_base(&base).start().unwrap();
        // The start-up reap runs on the blocking pool: let it close its fds first.
        sup.reaped_at_start().await;
        let fds_running = open_fds();
        let (t, line) = (sup.temp_file().await.unwrap(), line!());
        let (d, dline) = (sup.temp().label("frames").dir().await.unwrap(), line!());
        let paths = [t.path().to_path_buf(), d.path().to_path_buf()];
        std::mem::forget(t);
        std::mem::forget(d);
        // Listed as live with their sites while they are held.
        let live = sup.leaks(Duration::ZERO);
        assert_eq!(live.len(), 2);
        assert_eq!((live[0].site().line, live[1].site().line), (line, dline));
        assert_eq!(live[1].label(), "frames");
        let report = sup.shutdown().await;
        assert_eq!(report.alive_at_shutdown.len(), 2);
        let sites: Vec<u32> = report.leaks.iter().map(|l| l.site().line).collect();
        // Force-released in reverse acquisition order.
        assert_eq!(sites, [dline, line]);
        assert!(
            report
                .leaks
                .iter()
                .all(|l| l.released_by() == ReleasePath::Shutdown)
        );
        assert!(paths.iter().all(|p| !exists(p)));
        assert!(report.stats.is_consistent());
        assert_eq!(open_fds(), fds_running, "the forgotten file's fd is closed");
        drop(sup);
        assert_eq!(open_fds(), fds);
    });
}

/// A guard escaping through an `Arc` cycle (never dropped) is reclaimed at scope end.
#[test]
fn a_guard_kept_alive_by_a_cycle_is_reclaimed() {
    use std::sync::{Arc, Mutex};
    struct Node {
        _file: tokio_custodian::TempFile,
        next: Mutex<Option<Arc<Node>>>,
    }
    scenario(Rt::Current, "cycle", async |base| {
        let sup = Supervisor::builder().temp_base(&base).start().unwrap();
        // The start-up reap runs on the blocking pool: let it close its fds first.
        sup.reaped_at_start().await;
        let fds = open_fds();
        let path = sup
            .scope("cyclic", async |s| {
                let n = Arc::new(Node {
                    _file: s.temp_file().await.unwrap(),
                    next: Mutex::new(None),
                });
                *n.next.lock().unwrap() = Some(n.clone());
                let path = n._file.path().to_path_buf();
                drop(n); // still referenced by itself
                path
            })
            .await
            .unwrap();
        assert!(!exists(&path));
        assert_eq!(open_fds(), fds);
        assert!(entries(sup.temp_root()).is_empty());
        assert_eq!(sup.leaked().len(), 1);
        sup.shutdown().await;
    });
}
