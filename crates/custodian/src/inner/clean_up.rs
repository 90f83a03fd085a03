//! A released entry whose clean-up has not run yet ([`Released`]), and the two ways to
//! run its clean-up: in the background (guard drop, sweeps) or awaited (`close().await`).

use crate::error::{Error, Operation};
use crate::id::ResourceId;
use crate::kind::ResourceKind;
use crate::label::Label;
use crate::registry::{Cleanup, ScopeShared};
use std::path::PathBuf;
use std::sync::Arc;
use tokio_util::task::task_tracker::TaskTrackerToken;

use tokio::runtime::Handle;
use tokio_util::task::TaskTracker;

use super::retry::{PanickedCleanup, Retrier};
use super::{Inner, Records};

/// A released entry whose clean-up has not run yet: what the release decision hands its
/// caller, who must run the clean-up one way or the other.
pub(crate) struct Released {
    pub(super) id: ResourceId,
    pub(super) kind: ResourceKind,
    pub(super) label: Label,
    pub(super) path: Option<PathBuf>,
    pub(super) scope: Arc<ScopeShared>,
    pub(super) cleanup: Option<Cleanup>,
}

#[derive(Clone)]
pub(crate) struct ReleasedInfo {
    pub(super) id: ResourceId,
    pub(super) kind: ResourceKind,
    pub(super) label: Label,
    pub(super) path: Option<PathBuf>,
}

impl ReleasedInfo {
    /// The error of a failed clean-up: the path when there is one, else the label and id
    /// (never a label where a path belongs); the `io::ErrorKind` is kept.
    fn error(&self, op: Operation, e: std::io::Error) -> Error {
        match &self.path {
            Some(path) => Error::io(op, path, e),
            None => Error::ResourceIo {
                op,
                resource: self.name(),
                source: e,
            },
        }
    }

    fn name(&self) -> String {
        match &self.path {
            Some(p) => p.display().to_string(),
            None => format!("{} `{}` {}", self.kind, self.label, self.id),
        }
    }
}

impl Released {
    pub(super) fn split(self) -> (ReleasedInfo, Arc<ScopeShared>, Option<Cleanup>) {
        (
            ReleasedInfo {
                id: self.id,
                kind: self.kind,
                label: self.label,
                path: self.path,
            },
            self.scope,
            self.cleanup,
        )
    }

    /// Runs the clean-up without waiting: inline if it is done, otherwise on the
    /// runtime, tracked by the owning scope and the supervisor. Never blocks.
    pub(crate) fn clean_up_in_background(self, inner: &Inner) {
        self.run_in_background(&Janitor::borrow(inner), None);
    }

    /// [`clean_up_in_background`](Self::clean_up_in_background); an asynchronous clean-up
    /// also holds `extra` until it ends (a sweep's stops, see [`clean_up_sweep`]).
    fn run_in_background(self, j: &Janitor<'_>, extra: Option<TaskTrackerToken>) {
        let (info, scope, cleanup) = self.split();
        // Taken only for work that outlives this call: each token is two atomic writes
        // on counters every thread shares, and most releases are done inline.
        let tokens = || (j.cleanups.token(), scope.cleanup_token());
        match cleanup {
            None | Some(Cleanup::Done(Ok(()))) => {}
            Some(Cleanup::Done(Err(e))) => j.records.record_failure(&info, &e),
            Some(Cleanup::Blocking(work)) => {
                let tokens = tokens();
                let retrier = Arc::clone(j.retrier);
                let job = Deferred::new(move || {
                    let (cleanups, scope) = tokens;
                    let _ = retrier.first_attempt(work, info, cleanups);
                    drop(scope);
                });
                // If the runtime is gone the closure is dropped unrun, and `Deferred`
                // runs it inline: the only case where clean-up blocks the dropping thread.
                drop(j.handle.spawn_blocking(move || job.run()));
            }
            Some(Cleanup::Async(fut)) => {
                let tokens = tokens();
                let records = Arc::clone(j.records);
                drop(j.handle.spawn(async move {
                    let _tokens: (TaskTrackerToken, TaskTrackerToken) = tokens;
                    let _extra = extra;
                    if let Err(e) = fut.await {
                        records.record_failure(&info, &e);
                    }
                }));
            }
        }
    }

    /// Runs the clean-up and reports its outcome (explicit `close().await`). A
    /// transient failure is reported *and* retried in the background.
    pub(crate) async fn clean_up_and_wait(self, inner: &Inner) -> Result<(), Error> {
        let op = match self.kind {
            ResourceKind::File => Operation::CloseFile,
            ResourceKind::TempFile => Operation::RemoveTempFile,
            ResourceKind::TempDir => Operation::RemoveTempDir,
            ResourceKind::Child => Operation::StopChild,
            _ => Operation::Cleanup,
        };
        let (info, scope, cleanup) = self.split();
        // The clean-up runs as its own tracked task, and the caller only awaits its
        // handle: if the caller's future is dropped (a `close()` that lost a race), the
        // clean-up still finishes, and the scope and shutdown still wait for it.
        let tokens = (inner.cleanups.token(), scope.cleanup_token());
        let records = inner.records.clone();
        let joined = match cleanup {
            None => return Ok(()),
            Some(Cleanup::Done(Ok(()))) => return Ok(()),
            Some(Cleanup::Done(Err(e))) => {
                records.record_failure(&info, &e);
                return Err(info.error(op, e));
            }
            Some(Cleanup::Blocking(work)) => {
                let retrier = inner.retrier.clone();
                let info = info.clone();
                inner
                    .handle
                    .spawn_blocking(move || {
                        let (cleanups, scope) = tokens;
                        let r = retrier.first_attempt(work, info, cleanups);
                        drop(scope);
                        r
                    })
                    .await
            }
            Some(Cleanup::Async(fut)) => {
                let info = info.clone();
                inner
                    .handle
                    .spawn(async move {
                        let _tokens = tokens;
                        fut.await.inspect_err(|e| records.record_failure(&info, e))
                    })
                    .await
            }
        };
        match joined {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => match e
                .get_ref()
                .and_then(|e| e.downcast_ref::<PanickedCleanup>())
            {
                Some(p) => Err(Error::CleanupPanicked {
                    op,
                    resource: info.name(),
                    message: p.0.clone(),
                }),
                None => Err(info.error(op, e)),
            },
            Err(join) if join.is_panic() => Err(Error::CleanupPanicked {
                op,
                resource: info.name(),
                message: crate::error::panic_message(join.into_panic()),
            }),
            Err(join) => Err(info.error(op, std::io::Error::other(join))),
        }
    }
}

/// A blocking job that runs when dropped if it never ran, so that clean-up handed to a
/// runtime that has shut down still happens.
pub(crate) struct Deferred<F: FnOnce()>(Option<F>);

impl<F: FnOnce()> Deferred<F> {
    pub(crate) fn new(f: F) -> Self {
        Deferred(Some(f))
    }
    pub(crate) fn run(mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}

impl<F: FnOnce()> Drop for Deferred<F> {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}

/// What running a clean-up in the background needs, borrowed from `Inner` or from an
/// [`OwnedJanitor`].
struct Janitor<'a> {
    cleanups: &'a TaskTracker,
    records: &'a Arc<Records>,
    retrier: &'a Arc<Retrier>,
    handle: &'a Handle,
}

impl<'a> Janitor<'a> {
    fn borrow(inner: &'a Inner) -> Self {
        Janitor {
            cleanups: &inner.cleanups,
            records: &inner.records,
            retrier: &inner.retrier,
            handle: &inner.handle,
        }
    }
}

/// A [`Janitor`] a task can own (it must not keep the whole supervisor alive).
struct OwnedJanitor {
    cleanups: TaskTracker,
    records: Arc<Records>,
    retrier: Arc<Retrier>,
    handle: Handle,
}

impl OwnedJanitor {
    fn of(inner: &Inner) -> Self {
        OwnedJanitor {
            cleanups: inner.cleanups.clone(),
            records: inner.records.clone(),
            retrier: inner.retrier.clone(),
            handle: inner.handle.clone(),
        }
    }

    fn get(&self) -> Janitor<'_> {
        Janitor {
            cleanups: &self.cleanups,
            records: &self.records,
            retrier: &self.retrier,
            handle: &self.handle,
        }
    }
}

/// Runs the clean-ups of one sweep (a scope's end, shutdown's release of what is left):
/// processes are stopped before directories are removed, so that a child using its grace
/// to flush into its temp dir, or to move its results out of it, never races that dir's
/// removal. The rest runs at once. Never blocks.
pub(crate) fn clean_up_sweep(inner: &Inner, released: Vec<Released>) {
    let is = |r: &Released, blocking: bool| match &r.cleanup {
        Some(Cleanup::Async(_)) => !blocking,
        Some(Cleanup::Blocking(_)) => blocking,
        _ => false,
    };
    let any_stop = released.iter().any(|r| is(r, false));
    let j = Janitor::borrow(inner);
    if !any_stop {
        for r in released {
            r.run_in_background(&j, None);
        }
        return;
    }
    let stops = TaskTracker::new();
    let mut removals = Vec::new();
    for r in released {
        if is(&r, true) {
            removals.push(r);
        } else {
            let extra = is(&r, false).then(|| stops.token());
            r.run_in_background(&j, extra);
        }
    }
    stops.close();
    if removals.is_empty() {
        return;
    }
    // Held until the removals are spawned: the scopes and shutdown keep waiting.
    let hold: Vec<_> = removals
        .iter()
        .map(|r| (inner.cleanups.token(), r.scope.cleanup_token()))
        .collect();
    let later = Later(removals, OwnedJanitor::of(inner));
    drop(inner.handle.spawn(async move {
        stops.wait().await;
        drop(later);
        drop(hold);
    }));
}

/// A sweep's removals, waiting for its stops. Run when dropped: after the stops, or at
/// once if the runtime drops the waiting task unrun.
struct Later(Vec<Released>, OwnedJanitor);

impl Drop for Later {
    fn drop(&mut self) {
        let j = self.1.get();
        for r in self.0.drain(..) {
            r.run_in_background(&j, None);
        }
    }
}
