//! Shutdown: its phases, and forcing it.
//!
//! Phases, each timed in the report:
//! 1. *refuse and cancel*: new acquisitions are refused; the root token is cancelled
//!    with [`CancelReason::Shutdown`] (or `ForcedShutdown`);
//! 2. *run hooks*: last registered first, each within its budget (skipped when forced);
//! 3. *wait for scopes*: until every scope and scoped task has ended, or the grace period
//!    (counted from phase 1) is over — then the reason is raised to `Deadline` — or a
//!    forced request arrives;
//! 4. *release remaining*: everything still registered, newest first; graceful: through
//!    `reclaim`, then wait for the clean-ups up to the grace period; forced: through
//!    `reclaim_now` on the blocking pool;
//! 5. *remove temp root*.
//!
//! Every wait selects on `Inner::cut`, which a forced request (or the deadline) fires,
//! so a forced request arriving mid-shutdown cuts the graceful waits short.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::hook::run_hooks;
use crate::inner::Inner;
use crate::kind::{CancelReason, ReleasePath};
use crate::registry::ResourceId;
use crate::report::{Phase, ShutdownReport};
use crate::supervisor::Supervisor;

impl Inner {
    pub(crate) fn is_forced(&self) -> bool {
        // Relaxed: a flag for the report; `cut` publishes the cancellation itself.
        self.forced.load(Ordering::Relaxed)
    }

    pub(crate) fn force(&self) {
        self.forced.store(true, Ordering::Relaxed);
        self.root_scope.raise(CancelReason::ForcedShutdown);
        self.cut.cancel();
    }
}

impl Supervisor {
    /// Forces shutdown: a shutdown that is running stops waiting (hooks are cut, scopes
    /// are not waited for, what is left is released at once with
    /// [`reclaim_now`](crate::Reclaim::reclaim_now)), and one that starts later is
    /// forced from the start. Every scope is cancelled with
    /// [`CancelReason::ForcedShutdown`] and its body dropped without a grace period.
    /// Does not itself run the shutdown; see [`shutdown_now`](Self::shutdown_now).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> custodian::Result<()> {
    /// let sup = custodian::Supervisor::builder().start()?;
    /// sup.force();
    /// let report = sup.shutdown().await;
    /// assert!(report.forced);
    /// assert_eq!(report.reason, custodian::CancelReason::ForcedShutdown);
    /// # Ok(()) }
    /// ```
    pub fn force(&self) {
        self.inner.force();
    }

    /// A forced shutdown: [`force`](Self::force), then [`shutdown`](Self::shutdown).
    ///
    /// # Cancel safety
    ///
    /// As [`shutdown`](Self::shutdown).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> custodian::Result<()> {
    /// use std::time::Duration;
    /// let sup = custodian::Supervisor::builder().grace(Duration::from_secs(60)).start()?;
    /// let s = sup.clone();
    /// let stuck = tokio::spawn(async move {
    ///     s.scope("stuck", async |_| std::future::pending::<()>().await).await
    /// });
    /// tokio::task::yield_now().await;
    /// let report = sup.shutdown_now().await; // does not wait 60 s
    /// assert!(report.took < Duration::from_secs(30));
    /// assert!(stuck.await.unwrap().is_err());
    /// # Ok(()) }
    /// ```
    pub async fn shutdown_now(&self) -> ShutdownReport {
        self.force();
        self.shutdown().await
    }

    /// Completes with the report once a shutdown started elsewhere (for example by a
    /// signal, see [`install_signal_handlers`](Self::install_signal_handlers)) has
    /// finished. Does not start one.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> custodian::Result<()> {
    /// let sup = custodian::Supervisor::builder().start()?;
    /// let s = sup.clone();
    /// tokio::spawn(async move { s.shutdown().await });
    /// let report = sup.wait_for_shutdown().await;
    /// assert!(report.is_clean());
    /// # Ok(()) }
    /// ```
    pub async fn wait_for_shutdown(&self) -> ShutdownReport {
        self.inner.done.cancelled().await;
        self.shutdown().await
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
    tracing::info!(
        forced = inner.is_forced(),
        "shutdown: refusing new acquisitions"
    );
    let t = Instant::now();
    inner.begin_shutdown();
    let reason = if inner.is_forced() {
        CancelReason::ForcedShutdown
    } else {
        CancelReason::Shutdown
    };
    inner.root_scope.cancel(reason);
    let deadline = tokio::time::Instant::now() + grace;
    let t = phase("refuse and cancel", t);

    let hooks = run_hooks(&inner).await;
    let t = phase("run hooks", t);

    inner.scopes.close();
    let scopes_finished = tokio::select! {
        biased;
        () = inner.scopes.wait() => true,
        () = inner.cut.cancelled() => inner.scopes.is_empty(),
        () = tokio::time::sleep_until(deadline) => {
            tracing::warn!(running = inner.scopes.len(), "shutdown: grace period over, cutting scopes off");
            inner.root_scope.raise(CancelReason::Deadline);
            inner.cut.cancel();
            false
        }
    };
    let t = phase("wait for scopes", t);

    let alive_at_shutdown = inner.live();
    let mut ids: Vec<ResourceId> = alive_at_shutdown.iter().map(|r| r.id).collect();
    ids.sort_unstable_by(|a, b| b.cmp(a));
    if inner.is_forced() {
        let i = inner.clone();
        let _ = tokio::task::spawn_blocking(move || {
            for id in ids {
                i.release_now(id, ReleasePath::Shutdown);
            }
        })
        .await;
    } else {
        for id in ids {
            if let Some(p) = inner.release(id, Some(ReleasePath::Shutdown)) {
                p.spawn(&inner);
            }
        }
    }
    inner.cleanups.close();
    // Clean-ups are the releases themselves: they get the grace period even when forced.
    let cleanups_finished = tokio::time::timeout(grace, inner.cleanups.wait())
        .await
        .is_ok();
    let t = phase("release remaining", t);

    let i = inner.clone();
    let removed = tokio::task::spawn_blocking(move || i.remove_temp_root())
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.unwrap_or(Ok(())).map_err(|e| e.to_string()));
    let temp_root_error = removed.err();
    phase("remove temp root", t);

    let report = ShutdownReport {
        took: start.elapsed(),
        phases,
        reason: inner.root_scope.reason().unwrap_or(reason),
        forced: inner.is_forced(),
        hooks,
        scopes_finished,
        cleanups_finished,
        alive_at_shutdown,
        leaks: inner.leak_records(),
        failures: inner.failure_records(),
        stats: inner.records.stats.snapshot(),
        temp_root: inner.temp_root.path().to_path_buf(),
        temp_root_error,
    };
    tracing::info!(took = ?report.took, clean = report.is_clean(), forced = report.forced, "shutdown complete");
    report
}
