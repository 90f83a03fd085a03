//! Scopes: the unit of ownership users think in, and the cancellation tree.
//!
//! Invariants:
//! - each scope has one `CancellationToken`, a child of its parent's (tokens per scope,
//!   never per resource, so acquisitions never contend on a shared parent token);
//! - when a scope ends it is closed (no more registrations or transfers into it) and
//!   every resource still registered *to this scope* is released in reverse acquisition
//!   order (found by filtering the registry by scope, only when the scope's live count
//!   says something is left: see `registry::scope_state`);
//! - `scope()` does not return before the clean-ups of everything it owned have finished.

mod registration;
mod room;
mod run;
mod task;

pub use registration::Registration;
pub(crate) use run::grace_over;
use run::run;

use std::fmt;
use std::future::Future;
use std::panic::Location;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};
use tracing::Instrument;

use crate::error::{Operation, Result};
use crate::inner::{Inner, Spec, Supervisor};
use crate::kind::{CancelReason, ResourceKind};
use crate::label::Label;
use crate::registry::scope_name::ScopeName;
use crate::registry::{Permits, Reclaim, ScopeShared};

/// A handle to a scope: acquire resources in it, nest scopes, observe cancellation.
///
/// Cheap to clone. Resources acquired through a scope are released when the scope ends,
/// if their guards have not released them before. A handle that outlives its scope can
/// no longer acquire anything: acquisitions fail with [`Error::ScopeClosed`](crate::Error::ScopeClosed).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
/// let sup = tokio_custodian::Supervisor::builder().start()?;
/// let n = sup
///     .scope("job", async |s| {
///         let dir = s.temp_dir().await?;
///         tokio::fs::write(dir.path().join("a"), b"1").await.unwrap();
///         Ok::<_, tokio_custodian::Error>(s.live_count())
///     })
///     .await??;
/// assert_eq!(n, 1);
/// assert_eq!(sup.stats().live(), 0); // the dir is gone with its scope
/// # sup.shutdown().await; Ok(()) }
/// ```
#[derive(Clone)]
pub struct Scope {
    pub(crate) shared: Arc<ScopeShared>,
    pub(crate) sup: Supervisor,
}

impl Scope {
    /// The root scope of `sup`.
    pub(crate) fn root_of(sup: &Supervisor) -> Scope {
        Scope {
            shared: sup.inner.root_scope.clone(),
            sup: sup.clone(),
        }
    }

    pub(crate) fn inner(&self) -> &Arc<Inner> {
        &self.sup.inner
    }

    /// The scope's name.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// assert_eq!(sup.root().name(), "root");
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The supervisor this scope belongs to.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// assert_eq!(sup.root().supervisor().temp_root(), sup.temp_root());
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn supervisor(&self) -> &Supervisor {
        &self.sup
    }

    /// How many resources are registered to this scope now.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let root = sup.root();
    /// let f = root.temp_file().await?;
    /// assert_eq!(root.live_count(), 1);
    /// drop(f);
    /// assert_eq!(root.live_count(), 0);
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn live_count(&self) -> usize {
        // Relaxed: a gauge for people; no memory is published through it.
        self.shared.live.load(Ordering::Relaxed)
    }

    /// Cancels this scope and every scope nested in it. Bodies observe it through
    /// [`cancelled`](Self::cancelled); a body still running after the grace period is
    /// dropped, which releases its guards.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// use tokio_custodian::CancelReason;
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let r = sup
    ///     .scope("s", async |s| {
    ///         s.cancel();
    ///         s.cancelled().await;
    ///         s.cancel_reason()
    ///     })
    ///     .await?;
    /// assert_eq!(r, Some(CancelReason::Requested));
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn cancel(&self) {
        self.shared.cancel(CancelReason::Requested);
    }

    /// Completes when this scope (or an ancestor, or the supervisor) is cancelled.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future loses nothing.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let root = sup.root();
    /// root.cancel();
    /// root.cancelled().await;
    /// assert!(root.is_cancelled());
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn cancelled(&self) -> WaitForCancellationFuture<'_> {
        self.shared.token.cancelled()
    }

    /// Whether this scope has been cancelled.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// assert!(!sup.root().is_cancelled());
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn is_cancelled(&self) -> bool {
        self.shared.token.is_cancelled()
    }

    /// Why this scope was cancelled, once it has been.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// assert_eq!(sup.root().cancel_reason(), None);
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn cancel_reason(&self) -> Option<CancelReason> {
        self.shared.reason()
    }

    /// A child token of this scope's token, to hand to code that speaks
    /// `tokio_util::sync::CancellationToken`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let t = sup.root().token();
    /// sup.root().cancel();
    /// assert!(t.is_cancelled());
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn token(&self) -> CancellationToken {
        self.shared.lend_token().child_token()
    }

    /// Runs `body` in a scope nested in this one. See [`Supervisor::scope`].
    ///
    /// # Errors
    ///
    /// As [`Supervisor::scope`].
    ///
    /// # Cancel safety
    ///
    /// Dropping the future cancels the scope ([`CancelReason::Dropped`]): the body is
    /// dropped, its resources are released at once (a temp dir's removal finishes in the
    /// background).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let inner_name = sup
    ///     .scope("outer", async |outer| {
    ///         outer.scope("inner", async |inner| inner.name().to_owned()).await
    ///     })
    ///     .await??;
    /// assert_eq!(inner_name, "inner");
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    #[track_caller]
    #[inline]
    pub fn scope<F, T>(&self, name: &str, body: F) -> impl Future<Output = Result<T>> + use<F, T>
    where
        F: AsyncFnOnce(Scope) -> T,
    {
        let grace = self.sup.inner.config.grace;
        self.scope_with_grace(name, grace, body)
    }

    /// Like [`scope`](Self::scope) for a body that returns [`Result`](crate::Result):
    /// the body's error type is pinned to [`Error`](crate::Error) (no
    /// `Ok::<_, tokio_custodian::Error>(..)` needed) and the two layers of result are
    /// flattened (one `?`). See [`Supervisor::try_scope`].
    ///
    /// # Errors
    ///
    /// The body's error, or the scope's own (as [`scope`](Self::scope)).
    ///
    /// # Cancel safety
    ///
    /// As [`scope`](Self::scope).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let exists = sup
    ///     .root()
    ///     .try_scope("nested", async |s| Ok(s.temp_dir().await?.path().exists()))
    ///     .await?;
    /// assert!(exists);
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    #[track_caller]
    pub fn try_scope<F, T>(
        &self,
        name: &str,
        body: F,
    ) -> impl Future<Output = Result<T>> + use<F, T>
    where
        F: AsyncFnOnce(Scope) -> Result<T>,
    {
        let scope = self.scope(name, body);
        async move { scope.await.and_then(|r| r) }
    }

    /// Like [`scope`](Self::scope), with its own grace period: how long the body may keep
    /// running after the scope is cancelled before it is dropped.
    ///
    /// # Errors
    ///
    /// As [`Supervisor::scope`].
    ///
    /// # Cancel safety
    ///
    /// As [`scope`](Self::scope): dropping the future cancels the scope and releases
    /// what it owns.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// use std::time::Duration;
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let root = sup.root();
    /// let r = root
    ///     .scope_with_grace("stubborn", Duration::from_millis(10), async |s| {
    ///         s.cancel();
    ///         std::future::pending::<()>().await // ignores cancellation
    ///     })
    ///     .await;
    /// assert!(matches!(r, Err(tokio_custodian::Error::Cancelled { .. })));
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    #[track_caller]
    #[inline]
    pub fn scope_with_grace<F, T>(
        &self,
        name: &str,
        grace: Duration,
        body: F,
    ) -> impl Future<Output = Result<T>> + use<F, T>
    where
        F: AsyncFnOnce(Scope) -> T,
    {
        self.clone().into_scope(name, grace, body)
    }

    /// [`scope_with_grace`](Self::scope_with_grace) on an owned handle, whose references
    /// move into the new scope (the supervisor's shortcuts make one for the root scope:
    /// no clone and drop of it beside).
    ///
    /// Always inlined, as its callers should be: the future it returns is large, and
    /// returned from a call it is copied (`memcpy`) into the caller's state; built in
    /// place, it is not (about 170 instructions a scope when it is not inlined).
    #[track_caller]
    #[inline(always)]
    pub(crate) fn into_scope<F, T>(
        self,
        name: &str,
        grace: Duration,
        body: F,
    ) -> impl Future<Output = Result<T>> + use<F, T>
    where
        F: AsyncFnOnce(Scope) -> T,
    {
        let site = Location::caller();
        let Scope {
            shared: parent,
            sup,
        } = self;
        let name = ScopeName::new(name);
        async move {
            // The parent's and the supervisor's references move into the new scope
            // instead of being cloned again, and `inner` is borrowed below: each clone
            // and drop of an `Arc` is an atomic operation on a line every scope shares.
            let inner = sup.inner.clone();
            // Taken before the admission check: a drain that begins in between either
            // waits for this scope or refuses it (see `inner::DrainState`).
            // Only a drain reads the count (`drain::run` returns at once without a
            // budget): without one, a top-level scope takes no `top` token.
            let mut top =
                (parent.is_root() && inner.config.drain != Duration::ZERO).then(|| TopScope {
                    inner: &inner,
                    late: inner.drain.top_scope_started(),
                    admitted: false,
                });
            inner.admit(&parent, Operation::EnterScope)?;
            if let Some(top) = &mut top {
                top.admitted = true;
            }
            let id = inner.next_scope_id();
            let scope = Scope {
                shared: ScopeShared::child(parent, id, name, grace),
                sup,
            };
            let span = tracing::info_span!("scope", name = &*scope.shared.name, id, site = %site);
            let tracked = inner.scopes.token();
            // No subscriber wants the span: the runner is polled bare (entering and
            // leaving a disabled span at every poll, and on drop, is still a cost). The
            // runner is built in each branch: built before, it would be moved (copied).
            let result = if span.is_disabled() {
                run(scope, body, tracked, &inner).await
            } else {
                run(scope, body, tracked, &inner).instrument(span).await
            };
            if let Some(top) = top {
                drop(top); // no call to the drop glue when there is none
            }
            result
        }
    }

    /// Registers a resource of another crate (for example an audio decoder) in this
    /// scope. The returned [`Registration`] releases it when dropped; `reclaim` releases
    /// it if the guard escapes or is forgotten, at scope end or shutdown.
    ///
    /// # Errors
    ///
    /// [`Error::ShuttingDown`](crate::Error::ShuttingDown) or [`Error::ScopeClosed`](crate::Error::ScopeClosed); `reclaim` has then already run.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// use tokio_custodian::{Cleanup, Reclaim, ResourceKind};
    /// struct Nothing;
    /// impl Reclaim for Nothing {
    ///     fn reclaim(self: Box<Self>) -> Cleanup {
    ///         Cleanup::Done(Ok(()))
    ///     }
    /// }
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let reg = sup.root().register(ResourceKind::Lock, "demo lock", None, Nothing)?;
    /// assert_eq!(sup.live().len(), 1);
    /// drop(reg);
    /// assert!(sup.live().is_empty());
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    #[track_caller]
    pub fn register(
        &self,
        kind: ResourceKind,
        label: impl Into<Label>,
        path: Option<PathBuf>,
        reclaim: impl Reclaim,
    ) -> Result<Registration> {
        self.register_at(kind, label, path, reclaim, Location::caller())
    }

    /// Like [`register`](Self::register), with an explicit creation site (for acquiring
    /// functions that captured `Location::caller()` before an `.await`).
    ///
    /// # Errors
    ///
    /// As [`register`](Self::register).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// # use tokio_custodian::{Cleanup, Reclaim, ResourceKind};
    /// # struct Nothing;
    /// # impl Reclaim for Nothing { fn reclaim(self: Box<Self>) -> Cleanup { Cleanup::Done(Ok(())) } }
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let site = std::panic::Location::caller();
    /// let reg = sup.root().register_at(ResourceKind::Lock, "l", None, Nothing, site)?;
    /// assert_eq!(sup.live()[0].site().line, site.line());
    /// # drop(reg); sup.shutdown().await; Ok(()) }
    /// ```
    pub fn register_at(
        &self,
        kind: ResourceKind,
        label: impl Into<Label>,
        path: Option<PathBuf>,
        reclaim: impl Reclaim,
        site: &'static Location<'static>,
    ) -> Result<Registration> {
        let spec = Spec {
            kind,
            label: label.into(),
            path,
            site,
            op: Operation::Register,
        };
        self.register_boxed(spec, Box::new(reclaim))
    }

    pub(crate) fn register_boxed(
        &self,
        spec: Spec,
        reclaim: Box<dyn Reclaim>,
    ) -> Result<Registration> {
        self.register_with(spec, reclaim, None)
    }

    /// Registers with the quota permits an acquisition already took (see
    /// `Inner::register`).
    pub(crate) fn register_with(
        &self,
        spec: Spec,
        reclaim: Box<dyn Reclaim>,
        permits: Option<Permits>,
    ) -> Result<Registration> {
        let inner = self.inner();
        let id = inner.register(&self.shared, spec, reclaim, permits)?;
        Ok(Registration::new(inner, id))
    }
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scope")
            .field("name", &self.shared.name)
            .field("id", &self.shared.id)
            .field("live", &self.live_count())
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

/// A top-level scope as the drain counts it (only with a drain configured): its end,
/// returned or dropped (a request whose client hung up), leaves the count.
struct TopScope<'a> {
    inner: &'a Inner,
    /// Started after the drain counted (so refused): it has already left the count.
    late: bool,
    admitted: bool,
}

impl Drop for TopScope<'_> {
    fn drop(&mut self) {
        if self.late {
            return;
        }
        // `cut` is read only when the drain counted the scope: it locks the token's node.
        let cut = &self.inner.cut;
        self.inner
            .drain
            .top_scope_ended(self.admitted, || cut.is_cancelled());
    }
}

#[cfg(test)]
mod tests;
