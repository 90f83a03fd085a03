//! Guards of the three core kinds behind one type, so that every scenario runs for
//! `ManagedFile`, `TempFile` and `TempDir` alike.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use custodian_suite::{entries, eventually, exists, open_fds};
use tokio_custodian::{
    ManagedFile, ResourceId, ResourceKind, Scope, Supervisor, TempDir, TempFile,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Temp,
    Dir,
}

pub const KINDS: [Kind; 3] = [Kind::File, Kind::Temp, Kind::Dir];

impl Kind {
    pub fn resource(self) -> ResourceKind {
        match self {
            Kind::File => ResourceKind::File,
            Kind::Temp => ResourceKind::TempFile,
            Kind::Dir => ResourceKind::TempDir,
        }
    }

    /// Fds a live guard of this kind holds.
    pub fn fds(self) -> usize {
        usize::from(self != Kind::Dir)
    }
}

#[derive(Debug)]
pub enum Guard {
    File(ManagedFile),
    Temp(TempFile),
    Dir(TempDir),
}

impl Guard {
    pub fn path(&self) -> PathBuf {
        match self {
            Guard::File(g) => g.path().to_path_buf(),
            Guard::Temp(g) => g.path().to_path_buf(),
            Guard::Dir(g) => g.path().to_path_buf(),
        }
    }

    pub fn id(&self) -> ResourceId {
        match self {
            Guard::File(g) => g.id(),
            Guard::Temp(g) => g.id(),
            Guard::Dir(g) => g.id(),
        }
    }

    pub fn is_live(&self) -> bool {
        match self {
            Guard::File(g) => g.registration().is_live(),
            Guard::Temp(g) => g.registration().is_live(),
            Guard::Dir(g) => g.registration().is_live(),
        }
    }

    pub async fn close(self) -> tokio_custodian::Result<()> {
        match self {
            Guard::File(g) => g.close().await,
            Guard::Temp(g) => g.close().await,
            Guard::Dir(g) => g.close().await,
        }
    }
}

/// Acquires one resource of `kind` in `s`. A managed file is created in `files` (outside
/// the temp root); a temp dir gets a small tree so that its removal is recursive.
pub async fn acquire(s: &Scope, kind: Kind, files: &Path) -> tokio_custodian::Result<Guard> {
    static N: AtomicU64 = AtomicU64::new(0);
    Ok(match kind {
        Kind::File => {
            let p = files.join(format!("f-{}", N.fetch_add(1, Ordering::Relaxed)));
            Guard::File(s.create(p).await?)
        }
        Kind::Temp => Guard::Temp(s.temp_file().await?),
        Kind::Dir => {
            let d = s.temp_dir().await?;
            std::fs::create_dir_all(d.path().join("a/b")).unwrap();
            std::fs::write(d.path().join("a/b/frame"), b"x").unwrap();
            Guard::Dir(d)
        }
    })
}

/// One supervisor for one kind, with the fd count taken once it is running.
pub struct Case {
    pub sup: Supervisor,
    pub kind: Kind,
    pub files: PathBuf,
    pub fds: usize,
}

impl Case {
    pub async fn start(base: &Path, kind: Kind) -> Case {
        Self::start_with(base, kind, tokio_custodian::Supervisor::builder()).await
    }

    pub async fn start_with(base: &Path, kind: Kind, b: tokio_custodian::Builder) -> Case {
        let sup = b.temp_base(base).start().unwrap();
        // The start-up reap runs on the blocking pool: let it close its fds before the
        // fd baseline is taken.
        sup.reaped_at_start().await;
        let files = base.join("files");
        std::fs::create_dir_all(&files).unwrap();
        Case {
            sup,
            kind,
            files,
            fds: open_fds(),
        }
    }

    pub async fn acquire(&self, s: &Scope) -> Guard {
        let before = open_fds();
        let g = acquire(s, self.kind, &self.files).await.unwrap();
        assert!(exists(&g.path()));
        assert!(g.is_live());
        assert_eq!(
            open_fds(),
            before + self.kind.fds(),
            "{:?} holds its fd",
            self.kind
        );
        g
    }

    /// Checks that the one resource of this case was released by `by`: its temp path is
    /// gone (a managed file is never deleted), its fd closed, the counters add up.
    /// `at_once`: the clean-up must already be finished (a scope returned); otherwise it
    /// may still be running on the blocking pool.
    pub async fn released(&self, path: &Path, by: tokio_custodian::ReleasePath, at_once: bool) {
        let what = format!("{:?} released by {by}", self.kind);
        if self.kind == Kind::File {
            assert!(exists(path), "{what}: a managed file is never deleted");
        } else if at_once {
            assert!(!exists(path), "{what}: {} still exists", path.display());
        } else {
            eventually(&what, || !exists(path)).await;
        }
        if at_once {
            assert_eq!(open_fds(), self.fds, "{what}: fd closed");
        } else {
            eventually(&what, || open_fds() == self.fds).await;
        }
        let stats = self.sup.stats();
        let k = stats.kind(self.kind.resource());
        assert_eq!(
            (k.created, k.live, k.released_total(), k.released(by)),
            (1, 0, 1, 1),
            "{what}:\n{stats}{:?}",
            k.released
        );
        assert!(stats.is_consistent(), "{what}: {stats}");
        assert!(self.sup.live().is_empty(), "{what}");
        assert!(entries(self.sup.temp_root()).is_empty(), "{what}");
    }

    /// Shuts down and removes the managed files; returns the report.
    pub async fn finish(self) -> tokio_custodian::ShutdownReport {
        let report = self.sup.shutdown().await;
        assert!(!exists(self.sup.temp_root()), "temp root removed");
        assert!(report.stats.is_consistent(), "{report}");
        assert_eq!(report.stats.live(), 0, "{report}");
        std::fs::remove_dir_all(&self.files).unwrap();
        report
    }
}
