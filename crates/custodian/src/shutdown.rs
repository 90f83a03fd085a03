//! Shutdown: its phases, and forcing it.
//!
//! The builder's grace is the **total** bound of a graceful shutdown: one deadline,
//! counted from phase 1, cuts every graceful wait (hooks whatever their budgets, scopes,
//! clean-ups, a child's own stop grace) by firing `Inner::cut`, as a forced request does
//! at once. After the cut, shutdown waits at most [`SWEEP_WAIT`] for cut-off scopes to
//! sweep and [`AFTER_CUT`] for clean-ups (SIGKILLed children reaped, last retries).
//!
//! Phases, each timed in the report:
//! 1. *refuse and cancel*: new acquisitions are refused; the root token is cancelled
//!    with [`CancelReason::Shutdown`] (or `ForcedShutdown`);
//! 2. *run hooks*: last registered first, each within its budget (cut at the deadline,
//!    skipped when forced);
//! 3. *wait for scopes*: until every scope and scoped task has ended, or the cut (the
//!    deadline raises the reason to `Deadline`); scopes cut off then sweep their own;
//! 4. *release remaining*: everything still registered, newest first, by the path its
//!    scope would give it (`ScopeShared::shutdown_path`); graceful: through `reclaim`,
//!    forced: through `reclaim_now` on the blocking pool; then wait for the clean-ups until
//!    the cut, and [`AFTER_CUT`] after it;
//! 5. *remove temp root*.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::hook::run_hooks;
use crate::inner::Inner;
use crate::kind::{CancelReason, ReleasePath};
use crate::leak::LiveResource;
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
    // The grace bounds the whole graceful shutdown: hooks, scopes and clean-ups all end
    // by this instant. `Duration::MAX` means "never cut": saturate instead of panicking.
    let deadline = saturating_deadline(grace);
    // One watcher cuts every graceful wait at the deadline: hooks (whatever their own
    // budgets), scopes and clean-ups alike.
    let watcher = {
        let inner = inner.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(deadline).await;
            cut(&inner, CancelReason::Deadline);
        })
    };
    let t = phase("refuse and cancel", t);

    let hooks = run_hooks(&inner).await;
    let t = phase("run hooks", t);

    inner.scopes.close();
    let scopes_finished = tokio::select! {
        biased;
        () = inner.scopes.wait() => true,
        () = inner.cut.cancelled() => inner.scopes.is_empty(),
    };
    if !scopes_finished {
        tracing::warn!(
            running = inner.scopes.len(),
            "shutdown: scopes cut off (grace period over, or forced)"
        );
    }
    // Scopes cut off drop their bodies and sweep as soon as they are polled. Let them:
    // what a scope releases itself gets the scope's own path, and what shutdown reclaims
    // below gets the path the scope would have given it (`ScopeShared::shutdown_path`).
    inner.unswept.close();
    if !scopes_finished {
        let _ = tokio::time::timeout(SWEEP_WAIT, inner.unswept.wait()).await;
    }
    let t = phase("wait for scopes", t);

    let mut ids: Vec<ResourceId> = inner.registry.map.iter().map(|e| *e.key()).collect();
    ids.sort_unstable_by(|a, b| b.cmp(a));
    let snapshot: HashMap<ResourceId, LiveResource> =
        inner.live().into_iter().map(|r| (r.id, r)).collect();
    let released: Vec<(ResourceId, ReleasePath)> = if inner.is_forced() {
        let i = inner.clone();
        tokio::task::spawn_blocking(move || {
            ids.into_iter()
                .filter_map(|id| i.release_now(id, None).map(|(_, path)| (id, path)))
                .collect()
        })
        .await
        .unwrap_or_default()
    } else {
        ids.into_iter()
            .filter_map(|id| {
                let (p, path) = inner.release_for_shutdown(id)?;
                p.spawn(&inner);
                Some((id, path))
            })
            .collect()
    };
    let (mut alive_at_shutdown, mut cut_off) = (Vec::new(), Vec::new());
    for (id, path) in released {
        if let Some(r) = snapshot.get(&id).cloned() {
            if path.is_leak() {
                alive_at_shutdown.push(r);
            } else {
                cut_off.push(r);
            }
        }
    }
    alive_at_shutdown.sort_by_key(|r| r.id);
    cut_off.sort_by_key(|r| r.id);
    inner.cleanups.close();
    // Graceful: clean-ups (a child's TERM and grace, a recursive removal, a retry) run
    // until the deadline; then `cut` makes children go straight to SIGKILL and pending
    // retries make their last attempt, and what that takes is bounded by `AFTER_CUT`.
    let mut cleanups_finished = tokio::select! {
        biased;
        () = inner.cleanups.wait() => true,
        () = inner.cut.cancelled() => false,
    };
    if !cleanups_finished {
        cleanups_finished = tokio::time::timeout(AFTER_CUT, inner.cleanups.wait())
            .await
            .is_ok();
    }
    watcher.abort();
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
        cut_off,
        leaks: inner.leak_records(),
        failures: inner.failure_records(),
        stats: inner.records.stats.snapshot(),
        temp_root: inner.temp_root.path().to_path_buf(),
        temp_root_error,
    };
    tracing::info!(took = ?report.took, clean = report.is_clean(), forced = report.forced, "shutdown complete");
    report
}

/// How long shutdown lets scopes that were cut off sweep their own resources.
const SWEEP_WAIT: Duration = Duration::from_millis(250);

/// How long shutdown waits, after cutting, for clean-ups to finish: children killed
/// with SIGKILL and reaped, last attempts of pending retries.
const AFTER_CUT: Duration = Duration::from_secs(1);

/// `now + grace`, or a point decades away if that overflows.
pub(crate) fn saturating_deadline(grace: Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    now.checked_add(grace)
        .or_else(|| now.checked_add(Duration::from_secs(86_400 * 365 * 30)))
        .unwrap_or(now)
}

/// Stops waiting: raises the root's reason (unless forced) and fires `cut`.
fn cut(inner: &Inner, reason: CancelReason) {
    if !inner.cut.is_cancelled() {
        if !inner.is_forced() {
            inner.root_scope.raise(reason);
        }
        inner.cut.cancel();
    }
}
