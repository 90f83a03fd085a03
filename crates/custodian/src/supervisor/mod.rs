//! The public handle (layer 8): [`Supervisor`]'s methods, its [`Builder`], and the
//! supervisor task. The type itself is declared with the state it points to
//! (`inner::handle`), so that the layers below can hold one.
//!
//! - `mod.rs`: the root scope, the temp root, and observation (stats, live, leaks);
//! - `lifecycle.rs`: shutdown, forcing, hooks, signals, emergency clean-up;
//! - `shortcuts.rs`: acquisitions that forward to [`Supervisor::root`];
//! - `builder.rs`: configuration, `start`, and the leak scanner task;
//! - `recovery.rs`: the crash journal's sweeps;
//! - `adoption.rs`: the child-subreaper opt-in's counters and its scan task.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::leak::{FailureRecord, LeakRecord, LiveResource, PendingCleanup};
use crate::scope::Scope;
use crate::stats::StatsSnapshot;

mod adoption;
mod builder;
pub(crate) mod census;
mod inspect;
mod lifecycle;
mod recovery;
mod shortcuts;

pub use crate::inner::Supervisor;
pub use builder::Builder;

impl Supervisor {
    /// A builder with the defaults.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// The supervisor's root scope: resources acquired in it live until they are
    /// released or the supervisor shuts down.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let t = sup.root().temp_file().await?;
    /// assert_eq!(sup.live()[0].scope(), "root");
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn root(&self) -> Scope {
        Scope::root_of(self)
    }
    /// The private temp root (mode 0700) where temp files and dirs are created.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// use std::os::unix::fs::PermissionsExt;
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let mode = std::fs::metadata(sup.temp_root()).unwrap().permissions().mode();
    /// assert_eq!(mode & 0o777, 0o700);
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn temp_root(&self) -> &Path {
        self.inner.temp_root.path()
    }

    /// The temp roots of dead supervisors (SIGKILLed, aborted) that `start` removed,
    /// once that removal has finished. See [`Builder::reap_abandoned`].
    ///
    /// `start` hands the removal to the blocking pool (a dead owner may have left
    /// millions of files), so it may still be running when `start` returns; this waits
    /// for it. Empty if reaping was off.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the removal runs on its own; dropping this future only stops waiting.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// for path in sup.reaped_at_start().await {
    ///     println!("cleaned up after a crash: {}", path.display());
    /// }
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub async fn reaped_at_start(&self) -> Vec<PathBuf> {
        let mut rx = self.inner.reaped_at_start.clone();
        match rx.wait_for(Option::is_some).await {
            Ok(paths) => paths.clone().unwrap_or_default(),
            // The removal was dropped unrun (the runtime is shutting down).
            Err(_) => Vec::new(),
        }
    }

    /// A snapshot of the counters.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let _t = sup.temp_file().await?;
    /// let s = sup.stats();
    /// assert_eq!(s.kind(tokio_custodian::ResourceKind::TempFile).live, 1);
    /// assert_eq!(s.journal_write_failures, 0);
    /// println!("{}", serde_json::to_string(&s).unwrap());
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn stats(&self) -> StatsSnapshot {
        let mut s = self.inner.records.stats.snapshot();
        s.quotas = self.quotas();
        s.journal_write_failures = self.inner.journal.as_ref().map_or(0, |j| j.failed_writes());
        s
    }

    /// Each [`Quota`](crate::Quota)'s use: taken now, waiting now, waited and refused
    /// since start, in the order they were added (empty without quotas).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().quota(tokio_custodian::Quota::fds(8)).start()?;
    /// let _t = sup.temp_file().await?;
    /// let q = sup.quotas();
    /// assert_eq!((q[0].in_use, q[0].refused), (1, 0));
    /// println!("{}", serde_json::to_string(&q).unwrap());
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn quotas(&self) -> Vec<crate::quota::QuotaUsage> {
        self.inner
            .quotas
            .as_ref()
            .map(|q| q.usage())
            .unwrap_or_default()
    }

    /// Every live resource, in acquisition order: kind, label, scope, creation site, age.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let _t = sup.temp_file().await?;
    /// let live = sup.live();
    /// assert_eq!(live[0].kind(), tokio_custodian::ResourceKind::TempFile);
    /// assert!(live[0].site().file.ends_with(".rs"));
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn live(&self) -> Vec<LiveResource> {
        self.inner.live()
    }

    /// Live resources older than `older_than`, with their creation sites.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// use std::time::Duration;
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let _t = sup.temp_file().await?;
    /// assert!(sup.leaks(Duration::from_secs(3600)).is_empty());
    /// assert_eq!(sup.leaks(Duration::ZERO).len(), 1);
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn leaks(&self, older_than: Duration) -> Vec<LiveResource> {
        let mut v = self.live();
        v.retain(|r| r.age() >= older_than);
        v
    }

    /// Resources released without their guard so far (escaped their scope, forgotten,
    /// or alive at shutdown), most recent last; the last 1024 are kept.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// sup.scope("s", async |s| std::mem::forget(s.temp_file().await)).await?;
    /// assert_eq!(sup.leaked().len(), 1);
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn leaked(&self) -> Vec<LeakRecord> {
        self.inner.leak_records()
    }

    /// Clean-ups that failed so far, most recent last; the last 1024 are kept.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// assert!(sup.failures().is_empty());
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn failures(&self) -> Vec<FailureRecord> {
        self.inner.failure_records()
    }

    /// Clean-ups that failed with a transient error (out of fds or memory, busy) and are
    /// being retried with backoff: released by their guard but not yet cleaned up. They
    /// are counted in [`KindStats::pending`](crate::KindStats::pending), not as failures;
    /// one that still fails when shutdown stops waiting becomes a [`FailureRecord`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// drop(sup.temp_dir().await?);
    /// for p in sup.pending_cleanups() {
    ///     eprintln!("still trying: {p}");
    /// }
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn pending_cleanups(&self) -> Vec<PendingCleanup> {
        self.inner.pending_cleanups()
    }
}

impl fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.inner, f)
    }
}
