//! Tasks spawned in a scope: tracked so that shutdown waits for them, cancelled with
//! the scope (they observe its token, and are aborted after its grace period).

use std::future::Future;
use std::panic::Location;

use tokio::task::JoinHandle;
use tracing::Instrument;

use super::{Scope, grace_over};
use crate::error::{Operation, Result};

impl Scope {
    /// Spawns `fut` as a Tokio task owned by this scope. The task is tracked by the
    /// supervisor (its shutdown waits for it, up to the grace period); when the scope is
    /// cancelled or ends, the task may finish on its own within the scope's grace period
    /// (it can watch [`cancelled`](Self::cancelled) on a clone of the scope), after which
    /// it is aborted and its `JoinHandle` yields a cancelled `JoinError`. A forced
    /// shutdown aborts it at once.
    ///
    /// # Errors
    ///
    /// [`Error::ShuttingDown`](crate::Error::ShuttingDown) or
    /// [`Error::ScopeClosed`](crate::Error::ScopeClosed) with [`Operation::SpawnTask`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let root = sup.root();
    /// let s = root.clone();
    /// let task = root.spawn(async move {
    ///     s.cancelled().await;
    ///     "stopped"
    /// })?;
    /// let report = sup.shutdown().await; // cancels the root, waits for the task
    /// assert_eq!(task.await.unwrap(), "stopped");
    /// assert!(report.scopes_finished);
    /// # Ok(()) }
    /// ```
    #[track_caller]
    pub fn spawn<F>(&self, fut: F) -> Result<JoinHandle<F::Output>>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let site = Location::caller();
        let inner = self.inner();
        inner.admit(&self.shared, Operation::SpawnTask)?;
        let token = self.shared.lend_token().clone();
        let cut = inner.cut.clone();
        let grace = self.shared.grace;
        let tracked = inner.scopes.token();
        // The task aborts itself after the grace period: it needs its own abort handle,
        // which exists only once it has been spawned.
        let (tx, rx) = tokio::sync::oneshot::channel::<tokio::task::AbortHandle>();
        let span = tracing::debug_span!("scoped_task", scope = &*self.shared.name, site = %site);
        let task = async move {
            let _tracked = tracked;
            tokio::select! {
                biased;
                v = fut => v,
                () = grace_over(&token, grace, &cut) => {
                    if let Ok(me) = rx.await {
                        me.abort();
                    }
                    // Aborted at its next yield, which is this one.
                    std::future::pending().await
                }
            }
        };
        let handle = inner.handle.spawn(task.instrument(span));
        // The receiver is gone only if the task already finished.
        let _ = tx.send(handle.abort_handle());
        Ok(handle)
    }
}
