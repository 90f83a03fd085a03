//! The scope runner: runs a body to its end, whatever that end is, then sweeps.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::task_tracker::TaskTrackerToken;

use super::Scope;
use crate::error::{Error, Result};
use crate::inner::Inner;
use crate::kind::{CancelReason, ReleasePath};
use crate::registry::ScopeShared;

/// Runs a scope body to its end, whatever that end is.
pub(super) async fn run<F, T>(scope: Scope, body: F) -> Result<T>
where
    F: AsyncFnOnce(Scope) -> T,
{
    // The runner's own references (the body gets `scope`); everything below borrows
    // them: each clone and drop of an `Arc` is an atomic operation on a shared line.
    let shared = scope.shared.clone();
    let inner = scope.sup.inner.clone();
    // Declared before the body, dropped after it: if this future is dropped mid-body,
    // the body is dropped (its guards release as `Cancelled`) before the sweep runs.
    let mut end = EndOnDrop {
        inner: &inner,
        shared: &shared,
        unswept: Some(inner.unswept.token()),
    };
    let outcome = {
        let body = pin!(CatchUnwind(body(scope)));
        let mut cancel = CancelOnDrop(Some(&shared));
        let grace_over = grace_over(&shared.token, shared.grace, &inner.cut);
        let out = tokio::select! {
            biased;
            r = body => Some(r),
            () = grace_over => None,
        };
        cancel.0 = None;
        if matches!(out, Some(Err(_))) {
            // Guards still held by the body are dropped below, after the unwind: tell
            // them they are released by a panic.
            shared.panicked.store(true, Ordering::Relaxed);
        }
        out
    };
    let unswept = end.unswept.take();
    sweep(&inner, &shared, ReleasePath::ScopeEnd);
    drop(unswept);
    // Escaped handles and nested scopes must not outlive the scope. The body (and its
    // handle) is gone: `shared` is the runner's own reference.
    shared.cancel_at_end(1);
    shared.cleanups_done().await;
    match outcome {
        Some(Ok(v)) => Ok(v),
        Some(Err(panic)) => std::panic::resume_unwind(panic),
        None => Err(Error::Cancelled {
            scope: String::from(&*shared.name),
            reason: shared.reason().unwrap_or(CancelReason::Requested),
        }),
    }
}

/// Completes `grace` after `token` is cancelled, or as soon as shutdown stops waiting
/// (`force`: a forced shutdown or the shutdown's deadline).
pub(crate) async fn grace_over(
    token: &CancellationToken,
    grace: Duration,
    force: &CancellationToken,
) {
    tokio::select! {
        () = async {
            token.cancelled().await;
            tokio::time::sleep(grace).await;
        } => {}
        () = force.cancelled() => {}
    }
}

/// Sweeps the scope if the runner is dropped before it could. Holds the scope's
/// `unswept` token until the sweep is done (`None` once the runner swept itself).
struct EndOnDrop<'a> {
    inner: &'a Inner,
    shared: &'a Arc<ScopeShared>,
    unswept: Option<TaskTrackerToken>,
}

impl Drop for EndOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(token) = self.unswept.take() {
            sweep(self.inner, self.shared, ReleasePath::ScopeEnd);
            // Dropped mid-body: `CancelOnDrop` has cancelled the token already.
            self.shared.token.cancel();
            drop(token);
        }
    }
}

struct CancelOnDrop<'a>(Option<&'a ScopeShared>);

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(s) = self.0 {
            s.cancel(CancelReason::Dropped);
        }
    }
}

/// Catches a panic of the inner future so that the scope can clean up before resuming it.
#[pin_project::pin_project]
struct CatchUnwind<F>(#[pin] F);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = std::thread::Result<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let f = self.project().0;
        match std::panic::catch_unwind(AssertUnwindSafe(|| f.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

/// Sweeps `scope`: releases, in reverse acquisition order, everything still registered
/// to it, and closes it to new registrations.
pub(super) fn sweep(inner: &Inner, scope: &Arc<ScopeShared>, path: ReleasePath) {
    let ids = scope.close();
    if ids.is_empty() {
        // Most scopes end with every guard already released (and popped, see
        // `ScopeShared::forget_top`): nothing to release, nothing to clean up.
        return;
    }
    let released: Vec<_> = ids
        .into_iter()
        .rev()
        .filter_map(|id| inner.release_in(id, scope, path))
        .collect();
    // Children stopped before dirs are removed (see `clean_up_sweep`).
    crate::inner::clean_up_sweep(inner, released);
}
