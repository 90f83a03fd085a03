//! The supervisor handle, its builder, and its background task.

use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::WaitForCancellationFutureOwned;

use crate::builder::Builder;
use crate::error::Result;
use crate::inner::Inner;
use crate::leak::{FailureRecord, LeakRecord, LiveResource, PendingCleanup};
use crate::report::ShutdownReport;
use crate::resource::{ManagedFile, OpenOptions, TempBuilder, TempDir, TempFile};
use crate::scope::Scope;
use crate::stats::StatsSnapshot;

/// The owner of every resource acquired through it: a cheap, cloneable handle.
///
/// A supervisor owns a registry of live resources, a private temp root, a cancellation
/// tree of [scopes](Scope), and counters. Start one per service with
/// [`Supervisor::builder`], acquire resources in scopes, and call
/// [`shutdown`](Self::shutdown) before the runtime stops.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> custodian::Result<()> {
/// use tokio::io::AsyncWriteExt;
/// let sup = custodian::Supervisor::builder().start()?;
/// sup.scope("request", async |s| {
///     let mut t = s.temp_file().await?;
///     t.write_all(b"intermediate").await.unwrap();
///     custodian::Result::Ok(())
/// })
/// .await??;
/// let report = sup.shutdown().await;
/// assert!(report.is_clean());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Supervisor {
    pub(crate) inner: Arc<Inner>,
}

impl Supervisor {
    /// A builder with the defaults.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> custodian::Result<()> {
    /// let sup = custodian::Supervisor::builder().start()?;
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// The supervisor's root scope: resources acquired in it live until they are
    /// released or the supervisor shuts down.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> custodian::Result<()> {
    /// let sup = custodian::Supervisor::builder().start()?;
    /// let t = sup.root().temp_file().await?;
    /// assert_eq!(sup.live()[0].scope, "root");
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn root(&self) -> Scope {
        Scope {
            shared: self.inner.root_scope.clone(),
            sup: self.clone(),
        }
    }

    /// Runs `body` in a new scope and releases, in reverse acquisition order, whatever it
    /// still owns when the body returns, fails, panics, is cancelled, or when this future
    /// is dropped. Does not return before those clean-ups have finished.
    ///
    /// If the scope is cancelled (by [`Scope::cancel`], a parent, or shutdown), the body
    /// may finish on its own within the grace period; after it, the body is dropped and
    /// the result is [`Error::Cancelled`](crate::Error::Cancelled). A panic in the body is resumed after clean-up.
    ///
    /// # Errors
    ///
    /// [`Error::Cancelled`](crate::Error::Cancelled) if the body was dropped after the grace period;
    /// [`Error::ShuttingDown`](crate::Error::ShuttingDown) if the supervisor is shutting down. The body's own result,
    /// `T`, is returned as it is (often a `Result` itself).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future cancels the scope: the body is dropped, its resources are
    /// released at once (a temp dir's removal finishes in the background).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> custodian::Result<()> {
    /// let sup = custodian::Supervisor::builder().start()?;
    /// let out = sup.scope("job", async |s| {
    ///     let d = s.temp_dir().await?;
    ///     custodian::Result::Ok(d.path().exists())
    /// });
    /// assert!(out.await??);
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    #[track_caller]
    pub fn scope<F, T>(&self, name: &str, body: F) -> impl Future<Output = Result<T>> + use<F, T>
    where
        F: AsyncFnOnce(Scope) -> T,
    {
        self.root().scope(name, body)
    }

    /// Creates a temp file in the root scope. See [`Scope::temp_file`].
    ///
    /// # Errors
    ///
    /// See [`TempBuilder::file`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> custodian::Result<()> {
    /// let sup = custodian::Supervisor::builder().start()?;
    /// let t = sup.temp_file().await?;
    /// assert!(t.path().exists());
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    #[track_caller]
    pub fn temp_file(&self) -> impl Future<Output = Result<TempFile>> + use<> {
        self.root().temp_file()
    }

    /// Creates a temp dir in the root scope. See [`Scope::temp_dir`].
    ///
    /// # Errors
    ///
    /// See [`TempBuilder::dir`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> custodian::Result<()> {
    /// let sup = custodian::Supervisor::builder().start()?;
    /// assert!(sup.temp_dir().await?.path().is_dir());
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    #[track_caller]
    pub fn temp_dir(&self) -> impl Future<Output = Result<TempDir>> + use<> {
        self.root().temp_dir()
    }

    /// Temp file or dir options in the root scope. See [`Scope::temp`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> custodian::Result<()> {
    /// let sup = custodian::Supervisor::builder().start()?;
    /// let t = sup.temp().suffix(".json").file().await?;
    /// assert_eq!(t.path().extension().unwrap(), "json");
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn temp(&self) -> TempBuilder {
        self.root().temp()
    }

    /// Opens a file for reading in the root scope. See [`Scope::open`].
    ///
    /// # Errors
    ///
    /// See [`OpenOptions::open`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> custodian::Result<()> {
    /// let sup = custodian::Supervisor::builder().start()?;
    /// let f = sup.open("/dev/null").await?;
    /// # drop(f); sup.shutdown().await; Ok(()) }
    /// ```
    #[track_caller]
    pub fn open<P: AsRef<Path>>(
        &self,
        path: P,
    ) -> impl Future<Output = Result<ManagedFile>> + use<P> {
        self.root().open(path)
    }

    /// Creates (or truncates) a file for writing in the root scope. See
    /// [`Scope::create`].
    ///
    /// # Errors
    ///
    /// See [`OpenOptions::open`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> custodian::Result<()> {
    /// let sup = custodian::Supervisor::builder().start()?;
    /// let f = sup.create(sup.temp_root().join("out.txt")).await?;
    /// # drop(f); sup.shutdown().await; Ok(()) }
    /// ```
    #[track_caller]
    pub fn create<P: AsRef<Path>>(
        &self,
        path: P,
    ) -> impl Future<Output = Result<ManagedFile>> + use<P> {
        self.root().create(path)
    }

    /// File options in the root scope. See [`Scope::file_options`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> custodian::Result<()> {
    /// let sup = custodian::Supervisor::builder().start()?;
    /// let f = sup.file_options().read(true).open("/dev/null").await?;
    /// # drop(f); sup.shutdown().await; Ok(()) }
    /// ```
    pub fn file_options(&self) -> OpenOptions {
        self.root().file_options()
    }

    /// The private temp root (mode 0700) where temp files and dirs are created.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> custodian::Result<()> {
    /// use std::os::unix::fs::PermissionsExt;
    /// let sup = custodian::Supervisor::builder().start()?;
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
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> custodian::Result<()> {
    /// let sup = custodian::Supervisor::builder().start()?;
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
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> custodian::Result<()> {
    /// let sup = custodian::Supervisor::builder().start()?;
    /// let _t = sup.temp_file().await?;
    /// let s = sup.stats();
    /// assert_eq!(s.kind(custodian::ResourceKind::TempFile).live, 1);
    /// println!("{}", serde_json::to_string(&s).unwrap());
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn stats(&self) -> StatsSnapshot {
        self.inner.records.stats.snapshot()
    }

    /// Every live resource, in acquisition order: kind, label, scope, creation site, age.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> custodian::Result<()> {
    /// let sup = custodian::Supervisor::builder().start()?;
    /// let _t = sup.temp_file().await?;
    /// let live = sup.live();
    /// assert_eq!(live[0].kind, custodian::ResourceKind::TempFile);
    /// assert!(live[0].site.file.ends_with(".rs"));
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn live(&self) -> Vec<LiveResource> {
        self.inner.live()
    }

    /// Live resources older than `older_than`, with their creation sites.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> custodian::Result<()> {
    /// use std::time::Duration;
    /// let sup = custodian::Supervisor::builder().start()?;
    /// let _t = sup.temp_file().await?;
    /// assert!(sup.leaks(Duration::from_secs(3600)).is_empty());
    /// assert_eq!(sup.leaks(Duration::ZERO).len(), 1);
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn leaks(&self, older_than: Duration) -> Vec<LiveResource> {
        let mut v = self.live();
        v.retain(|r| r.age >= older_than);
        v
    }

    /// Resources released without their guard so far (escaped their scope, forgotten,
    /// or alive at shutdown), most recent last; the last 1024 are kept.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> custodian::Result<()> {
    /// let sup = custodian::Supervisor::builder().start()?;
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
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> custodian::Result<()> {
    /// let sup = custodian::Supervisor::builder().start()?;
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
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> custodian::Result<()> {
    /// let sup = custodian::Supervisor::builder().start()?;
    /// drop(sup.temp_dir().await?);
    /// for p in sup.pending_cleanups() {
    ///     eprintln!("still trying: {p}");
    /// }
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn pending_cleanups(&self) -> Vec<PendingCleanup> {
        self.inner.pending_cleanups()
    }

    /// Completes when the supervisor starts shutting down: the future to hand to a
    /// server's graceful shutdown.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> custodian::Result<()> {
    /// let sup = custodian::Supervisor::builder().start()?;
    /// let stop = sup.cancelled();
    /// sup.shutdown().await;
    /// stop.await;
    /// # Ok(()) }
    /// ```
    pub fn cancelled(&self) -> WaitForCancellationFutureOwned {
        self.inner.root_token.clone().cancelled_owned()
    }

    /// Whether shutdown has begun (new acquisitions are refused).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> custodian::Result<()> {
    /// let sup = custodian::Supervisor::builder().start()?;
    /// assert!(!sup.is_shutting_down());
    /// sup.shutdown().await;
    /// assert!(sup.is_shutting_down());
    /// # Ok(()) }
    /// ```
    pub fn is_shutting_down(&self) -> bool {
        self.inner.is_shutting_down()
    }

    /// Shuts down: refuses new acquisitions, cancels every scope, waits for them up to
    /// the grace period, releases whatever is still registered (reverse acquisition
    /// order), removes the temp root, and reports. Calling it again returns the same
    /// report.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the shutdown runs as its own task, so dropping this future does not
    /// stop it, and a later call waits for the same run.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> custodian::Result<()> {
    /// let sup = custodian::Supervisor::builder().start()?;
    /// let t = sup.temp_file().await?;
    /// let report = sup.shutdown().await;
    /// assert_eq!(report.alive_at_shutdown.len(), 1);
    /// assert!(!sup.temp_root().exists());
    /// # drop(t); Ok(()) }
    /// ```
    pub async fn shutdown(&self) -> ShutdownReport {
        // The shutdown runs once, as its own task: a caller that stops waiting (its future
        // dropped) does not cancel it, and every later call waits for the same run.
        let mut rx = self
            .inner
            .shutdown_run
            .get_or_init(|| {
                let (tx, rx) = tokio::sync::watch::channel(None);
                let inner = self.inner.clone();
                drop(self.inner.handle.spawn(async move {
                    let report = crate::shutdown::run(inner.clone()).await;
                    let _ = inner.report.set(report.clone());
                    // After the report is stored: `wait_for_shutdown` reads it.
                    inner.done.cancel();
                    // Before the waiters wake: a caller that drops its last handle right
                    // after `shutdown()` returns must find the supervisor gone, fds closed.
                    drop(inner);
                    let _ = tx.send(Some(report));
                }));
                rx
            })
            .clone();
        let finished = rx
            .wait_for(Option::is_some)
            .await
            .ok()
            .and_then(|r| r.clone());
        match finished {
            Some(report) => report,
            // The runtime dropped the task unrun (it is shutting down): run it here.
            None => {
                let inner = self.inner.clone();
                let report = self
                    .inner
                    .report
                    .get_or_init(|| crate::shutdown::run(inner))
                    .await
                    .clone();
                self.inner.done.cancel();
                report
            }
        }
    }
}

impl fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.inner, f)
    }
}
