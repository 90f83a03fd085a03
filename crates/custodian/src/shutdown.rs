//! Shutdown: its phases and its report.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::inner::Inner;
use crate::kind::{CancelReason, ReleasePath};
use crate::leak::{FailureRecord, LeakRecord, LiveResource, duration_ms};
use crate::registry::ResourceId;
use crate::stats::StatsSnapshot;

/// How long one phase of shutdown took.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Phase {
    /// The phase's name.
    pub name: String,
    /// How long it took.
    #[serde(with = "duration_ms")]
    pub took: Duration,
}

/// What [`Supervisor::shutdown`](crate::Supervisor::shutdown) did: readable as a table
/// (`Display`), serialisable for machines.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// The whole shutdown.
    #[serde(with = "duration_ms")]
    pub took: Duration,
    /// Each phase, in order.
    pub phases: Vec<Phase>,
    /// Whether every scope finished within the grace period.
    pub scopes_finished: bool,
    /// Whether every background clean-up finished within the grace period.
    pub cleanups_finished: bool,
    /// Resources still registered when shutdown began sweeping, with their creation sites.
    pub alive_at_shutdown: Vec<LiveResource>,
    /// Every resource released without its guard during the supervisor's life.
    pub leaks: Vec<LeakRecord>,
    /// Every clean-up that failed during the supervisor's life.
    pub failures: Vec<FailureRecord>,
    /// The counters after shutdown.
    pub stats: StatsSnapshot,
    /// The temp root.
    pub temp_root: PathBuf,
    /// Why the temp root could not be removed, if it could not.
    pub temp_root_error: Option<String>,
}

impl ShutdownReport {
    /// Nothing leaked, nothing failed, nothing was left over.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> custodian::Result<()> {
    /// let sup = custodian::Supervisor::builder().start()?;
    /// drop(sup.temp_file().await?);
    /// assert!(sup.shutdown().await.is_clean());
    /// # Ok(()) }
    /// ```
    pub fn is_clean(&self) -> bool {
        self.alive_at_shutdown.is_empty()
            && self.leaks.is_empty()
            && self.failures.is_empty()
            && self.scopes_finished
            && self.cleanups_finished
            && self.temp_root_error.is_none()
            && self.stats.live() == 0
    }
}

impl fmt::Display for ShutdownReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "shutdown took {:.3?}", self.took)?;
        for p in &self.phases {
            writeln!(f, "  {:<24} {:>10.3?}", p.name, p.took)?;
        }
        writeln!(f)?;
        write!(f, "{}", self.stats)?;
        if !self.alive_at_shutdown.is_empty() {
            writeln!(f, "\nalive at shutdown ({}):", self.alive_at_shutdown.len())?;
            for r in &self.alive_at_shutdown {
                writeln!(f, "  {r}")?;
            }
        }
        if !self.leaks.is_empty() {
            writeln!(f, "\nleaked ({}):", self.leaks.len())?;
            for r in &self.leaks {
                writeln!(f, "  {r}")?;
            }
        }
        if !self.failures.is_empty() {
            writeln!(f, "\nclean-up failures ({}):", self.failures.len())?;
            for r in &self.failures {
                writeln!(f, "  {r}")?;
            }
        }
        match &self.temp_root_error {
            None => writeln!(f, "\ntemp root {} removed", self.temp_root.display()),
            Some(e) => writeln!(
                f,
                "\ntemp root {} NOT removed: {e}",
                self.temp_root.display()
            ),
        }
    }
}

pub(crate) async fn run(inner: Arc<Inner>) -> ShutdownReport {
    let start = Instant::now();
    let grace = inner.config.grace;
    let mut phases = Vec::new();
    let mut phase = |name: &str, since: Instant| {
        phases.push(Phase {
            name: name.to_owned(),
            took: since.elapsed(),
        });
        Instant::now()
    };
    tracing::info!("shutdown: refusing new acquisitions");
    let t = Instant::now();
    inner.begin_shutdown();
    inner.root_scope.cancel(CancelReason::Shutdown);
    let t = phase("refuse and cancel", t);

    inner.scopes.close();
    let scopes_finished = tokio::time::timeout(grace, inner.scopes.wait())
        .await
        .is_ok();
    let t = phase("wait for scopes", t);

    let alive_at_shutdown = inner.live();
    let mut ids: Vec<ResourceId> = alive_at_shutdown.iter().map(|r| r.id).collect();
    ids.sort_unstable_by(|a, b| b.cmp(a));
    for id in ids {
        if let Some(p) = inner.release(id, Some(ReleasePath::Shutdown)) {
            p.spawn(&inner);
        }
    }
    inner.cleanups.close();
    let cleanups_finished = tokio::time::timeout(grace, inner.cleanups.wait())
        .await
        .is_ok();
    let t = phase("release remaining", t);

    let root = inner.temp_root.clone();
    let removed = tokio::task::spawn_blocking(move || root.remove())
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map(drop).map_err(|e| e.to_string()));
    let temp_root_error = removed.err();
    phase("remove temp root", t);

    let report = ShutdownReport {
        took: start.elapsed(),
        phases,
        scopes_finished,
        cleanups_finished,
        alive_at_shutdown,
        leaks: inner.leak_records(),
        failures: inner.failure_records(),
        stats: inner.records.stats.snapshot(),
        temp_root: inner.temp_root.path().to_path_buf(),
        temp_root_error,
    };
    tracing::info!(took = ?report.took, clean = report.is_clean(), "shutdown complete");
    report
}
