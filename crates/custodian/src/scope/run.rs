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

/// Runs a scope body to its end, whatever that end is. `tracked` is the scope's token
/// of the supervisor's `scopes` tracker: it counts the scope as running until its sweep
/// is done (shutdown waits on it, then lets cut-off scopes sweep). `inner` is the
/// caller's reference, borrowed.
pub(super) async fn run<F, T>(
    scope: Scope,
    body: F,
    tracked: TaskTrackerToken,
    inner: &Inner,
) -> Result<T>
where
    F: AsyncFnOnce(Scope) -> T,
{
    // The runner's own reference to the state (the body gets `scope`); everything below
    // borrows it: each clone and drop of an `Arc` is an atomic operation on a shared line.
    let shared = scope.shared.clone();
    // Declared before the body, dropped after it: if this future is dropped mid-body,
    // the body is dropped (its guards release as `Cancelled`) before the sweep runs.
    let mut end = EndOnDrop {
        inner,
        shared: &shared,
        tracked: Some(tracked),
    };
    let outcome = {
        // Declared before `cancel`, so dropped after it: a body dropped mid-await
        // releases its guards as `Cancelled`.
        let mut body = pin!(BodyOrGrace {
            body: CatchUnwind(body(scope)),
            grace: None,
            shared: &shared,
            cut: &inner.cut,
        });
        let cancel = CancelOnDrop(&shared);
        let out = body.as_mut().await;
        // Disarmed: the body ended by itself (forgetting it leaks nothing, a reference).
        std::mem::forget(cancel);
        if matches!(out, Some(Err(_))) {
            // Guards still held by the body are dropped below, after the unwind: tell
            // them they are released by a panic.
            shared.panicked.store(true, Ordering::Relaxed);
        }
        out
    };
    let tracked = end.tracked.take();
    // Disarmed (it holds references and an empty `Option`: nothing to leak), which
    // spares every scope's end the call to its drop.
    std::mem::forget(end);
    if Arc::strong_count(&shared) == 1 {
        // The runner's is the last reference (the body's handle, nested scopes and
        // registry entries each hold one, and no `Weak` is ever made): nothing is left
        // registered to the scope, and nothing can register to it or read its flags any
        // more. No close (a SeqCst store, a locked instruction on x86), no sweep.
        // Acquire: the other holders' drops (Release) happen before what follows.
        std::sync::atomic::fence(Ordering::Acquire);
        drop(tracked);
        // Escaped handles and nested scopes must not outlive the scope. The body (and
        // its handle) is gone: `shared` is the runner's own reference.
        shared.cancel_at_end(1);
    } else {
        end_shared(inner, &shared, tracked);
    }
    if let Some(wait) = shared.cleanups_done() {
        // Boxed: most scopes have no clean-up left to wait for, and the wait's state
        // would otherwise make every runner larger (it is moved, whole, into its caller).
        Box::pin(wait).await;
    }
    match outcome {
        Some(Ok(v)) => Ok(v),
        Some(Err(panic)) => std::panic::resume_unwind(panic),
        None => Err(Error::Cancelled {
            scope: String::from(&*shared.name),
            reason: shared.reason().unwrap_or(CancelReason::Requested),
        }),
    }
}

/// The body, or the end of its grace once the scope is cancelled (`None`), whichever
/// comes first; the body first when both are ready. The grace's wait (two cancellation
/// waiters and a timer) is built, boxed, only when the body first has to wait: a body
/// that completes at its first poll never pays for it, and every runner stays small
/// (a runner is moved whole into its caller's state, each move a `memcpy` of its size).
#[pin_project::pin_project]
struct BodyOrGrace<'a, B> {
    #[pin]
    body: B,
    grace: Option<Pin<Box<dyn Future<Output = ()> + Send + 'a>>>,
    shared: &'a ScopeShared,
    cut: &'a CancellationToken,
}

impl<B: Future> Future for BodyOrGrace<'_, B> {
    type Output = Option<B::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(v) = this.body.poll(cx) {
            return Poll::Ready(Some(v));
        }
        let (shared, cut) = (*this.shared, *this.cut);
        let grace = this
            .grace
            .get_or_insert_with(|| Box::pin(grace_over(&shared.token, shared.grace, cut)));
        grace.as_mut().poll(cx).map(|()| None)
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

/// The end of a scope whose state others still hold: sweeps it, lets its `scopes` token
/// go and cancels it ([`ScopeShared::cancel_at_end`]). A reclaim's panic in the sweep is
/// resumed after all of that (before the runner's wait for clean-ups): out of line, so
/// that the common end, with the runner alone, holds no panic to resume.
#[inline(never)]
fn end_shared(inner: &Inner, shared: &Arc<ScopeShared>, tracked: Option<TaskTrackerToken>) {
    let panicked = if shared.close() {
        sweep_left(inner, shared, ReleasePath::ScopeEnd)
    } else {
        None
    };
    drop(tracked);
    // Escaped handles and nested scopes must not outlive the scope.
    shared.cancel_at_end(1);
    if let Some(panic) = panicked {
        std::panic::resume_unwind(panic);
    }
}

/// Sweeps the scope if the runner is dropped before it could. Holds the scope's
/// token of the `scopes` tracker until the sweep is done (`None` once the runner swept
/// itself).
struct EndOnDrop<'a> {
    inner: &'a Inner,
    shared: &'a Arc<ScopeShared>,
    tracked: Option<TaskTrackerToken>,
}

impl Drop for EndOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(token) = self.tracked.take() {
            sweep(self.inner, self.shared, ReleasePath::ScopeEnd);
            // Dropped mid-body: `CancelOnDrop` has cancelled the token already.
            self.shared.cancel_token();
            drop(token);
        }
    }
}

/// Cancels the scope if the runner is dropped mid-body (disarmed by `mem::forget`).
struct CancelOnDrop<'a>(&'a ScopeShared);

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        self.0.cancel(CancelReason::Dropped);
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
#[inline]
pub(super) fn sweep(inner: &Inner, scope: &Arc<ScopeShared>, path: ReleasePath) {
    // Most scopes end with every guard already released: nothing to release, nothing
    // to clean up, no call.
    if scope.close()
        && let Some(panic) = sweep_left(inner, scope, path)
    {
        std::panic::resume_unwind(panic);
    }
}

/// The leak path of [`sweep`]: something is still registered to the closed scope. A
/// reclaim that panics (the trait is public) does not abandon the releases after it:
/// the first panic is returned once every other resource is released and its clean-up
/// started, for the caller to resume.
fn sweep_left(
    inner: &Inner,
    scope: &Arc<ScopeShared>,
    path: ReleasePath,
) -> Option<Box<dyn std::any::Any + Send>> {
    let ids = scope.left(&inner.registry);
    let mut panicked = None;
    let released: Vec<_> = ids
        .into_iter()
        .filter_map(|id| {
            std::panic::catch_unwind(AssertUnwindSafe(|| inner.release_in(id, scope, path)))
                .unwrap_or_else(|p| {
                    panicked.get_or_insert(p);
                    None
                })
        })
        .collect();
    // Children stopped before dirs are removed (see `clean_up_sweep`).
    crate::inner::clean_up_sweep(inner, released);
    panicked
}
