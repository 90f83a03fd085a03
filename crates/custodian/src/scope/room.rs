//! Registering a resource once a quota has room for it: the waiting form of
//! `Scope::register_at`, for kinds other crates register (tokio-custodian-audio's
//! decoders wait like the core's files and children).

use std::future::Future;
use std::panic::Location;
use std::path::PathBuf;

use crate::error::{Operation, Result};
use crate::inner::Spec;
use crate::kind::ResourceKind;
use crate::label::Label;
use crate::registry::Reclaim;

use super::{Registration, Scope};

impl Scope {
    /// Like [`register_at`](Self::register_at), but first waits for room in the
    /// [`Quota`](crate::Quota)s that count `kind` (first come, first served) instead of
    /// failing with [`Error::QuotaExceeded`](crate::Error::QuotaExceeded). Call it
    /// *before* acquiring what `reclaim` will release, so that the acquisition happens
    /// within the quota (an audio decoder registers, then opens its file). Without such
    /// quotas it registers at once.
    ///
    /// # Errors
    ///
    /// As [`register`](Self::register); [`Error::ShuttingDown`](crate::Error::ShuttingDown)
    /// if shutdown cancels the root while it waits; [`Error::Cancelled`](crate::Error::Cancelled)
    /// if this scope is cancelled while it waits; [`Error::QuotaExceeded`](crate::Error::QuotaExceeded)
    /// if waiting would close a wait-for cycle (see [`Builder::quota`](crate::Builder::quota)).
    /// `reclaim` has then already run.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropped while it waits, it takes nothing and registers nothing
    /// (`reclaim` is dropped without running: nothing was acquired yet).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// use tokio_custodian::{Cleanup, Quota, Reclaim, ResourceKind};
    /// struct Nothing;
    /// impl Reclaim for Nothing {
    ///     fn reclaim(self: Box<Self>) -> Cleanup { Cleanup::Done(Ok(())) }
    /// }
    /// let sup = tokio_custodian::Supervisor::builder()
    ///     .quota(Quota::live(ResourceKind::AudioDecoder, 1))
    ///     .start()?;
    /// let site = std::panic::Location::caller();
    /// let root = sup.root();
    /// let first = root.register_when_room(ResourceKind::AudioDecoder, "a", None, Nothing, site).await?;
    /// let second = root.register_when_room(ResourceKind::AudioDecoder, "b", None, Nothing, site);
    /// drop(first); // room for the second
    /// let second = second.await?;
    /// assert_eq!(sup.live().len(), 1);
    /// # drop(second); sup.shutdown().await; Ok(()) }
    /// ```
    pub fn register_when_room(
        &self,
        kind: ResourceKind,
        label: impl Into<Label>,
        path: Option<PathBuf>,
        reclaim: impl Reclaim,
        site: &'static Location<'static>,
    ) -> impl Future<Output = Result<Registration>> + Send + 'static {
        let (scope, label) = (self.clone(), label.into());
        async move {
            let op = Operation::Register;
            let inner = scope.inner().clone();
            inner.admit(&scope.shared, op)?;
            let permits = inner.room(&scope.shared, kind.into(), op).await?;
            let spec = Spec {
                kind,
                label,
                path,
                site,
                op,
            };
            scope.register_with(spec, Box::new(reclaim), permits)
        }
    }
}
