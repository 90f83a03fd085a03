//! The RAII handle every guard embeds: releasing it is releasing the resource.

use std::fmt;
use std::sync::{Arc, Weak};

use crate::error::{Error, Result};
use crate::id::ResourceId;
use crate::inner::{Inner, Supervisor};
use crate::kind::ReleasePath;
use crate::registry::scope_state::Adopted;
use crate::scope::Scope;

/// A resource's place in its supervisor's registry.
///
/// Every guard of custodian holds one, and extension crates get one from
/// [`Scope::register`]. Dropping it releases the resource (constant work, never
/// blocking); [`close`](Self::close) releases it and reports the clean-up's outcome.
/// If the resource was already reclaimed by its scope's end or by shutdown, both do
/// nothing.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
/// # use tokio_custodian::{Cleanup, Reclaim, ResourceKind};
/// # struct Nothing;
/// # impl Reclaim for Nothing { fn reclaim(self: Box<Self>) -> Cleanup { Cleanup::Done(Ok(())) } }
/// let sup = tokio_custodian::Supervisor::builder().start()?;
/// let reg = sup.root().register(ResourceKind::Lock, "l", None, Nothing)?;
/// assert!(reg.is_live());
/// reg.close().await?;
/// assert_eq!(sup.stats().live(), 0);
/// # sup.shutdown().await; Ok(()) }
/// ```
#[must_use = "dropping a Registration releases its resource at once"]
pub struct Registration {
    // Weak: a forgotten guard must not keep the supervisor (its fds, its registry) alive.
    inner: Weak<Inner>,
    id: ResourceId,
    done: bool,
}

impl Registration {
    pub(crate) fn new(inner: &Arc<Inner>, id: ResourceId) -> Self {
        Registration {
            inner: Arc::downgrade(inner),
            id,
            done: false,
        }
    }

    /// The resource's id in the registry.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let f = sup.temp_file().await?;
    /// assert_eq!(sup.live()[0].id(), f.id());
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn id(&self) -> ResourceId {
        self.id
    }

    /// Whether the resource is still registered: `false` once its scope ended or the
    /// supervisor shut down while the guard was still alive.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let escaped = sup.scope("s", async |s| s.temp_file().await).await??;
    /// assert!(!escaped.registration().is_live()); // reclaimed when its scope ended
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn is_live(&self) -> bool {
        self.inner
            .upgrade()
            .is_some_and(|i| i.registry.map.contains_key(&self.id))
    }

    /// The supervisor the resource is registered with, unless every handle to it has
    /// been dropped.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let f = sup.temp_file().await?;
    /// assert_eq!(f.registration().supervisor().unwrap().temp_root(), sup.temp_root());
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn supervisor(&self) -> Option<Supervisor> {
        self.inner.upgrade().map(|inner| Supervisor { inner })
    }

    /// Releases the resource and waits for its clean-up.
    ///
    /// # Errors
    ///
    /// The clean-up's error (for example a temp file that could not be removed), naming
    /// the resource's path. The resource is released either way.
    ///
    /// # Cancel safety
    ///
    /// The release happens at the first poll; if the future is dropped after that, the
    /// remaining clean-up still runs, unreported.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// use tokio_custodian::{Cleanup, Reclaim, ReleasePath, ResourceKind};
    /// struct Nothing;
    /// impl Reclaim for Nothing {
    ///     fn reclaim(self: Box<Self>) -> Cleanup { Cleanup::Done(Ok(())) }
    /// }
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let reg = sup.root().register(ResourceKind::File, "thing", None, Nothing)?;
    /// reg.close().await?;
    /// assert_eq!(sup.stats().kind(ResourceKind::File).released(ReleasePath::Close), 1);
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub async fn close(mut self) -> Result<()> {
        self.done = true;
        let Some(inner) = self.inner.upgrade() else {
            return Ok(());
        };
        match inner.release(self.id, Some(ReleasePath::Close)) {
            Some(p) => p.clean_up_and_wait(&inner).await,
            None => Ok(()),
        }
    }

    /// Marks the resource as released by someone else, so that dropping this does not
    /// look it up in the registry. Only for a guard that has proof its entry is gone
    /// (a temp file alone with its slot: see `TempFile`'s `Drop`).
    pub(crate) fn released_elsewhere(&mut self) {
        self.done = true;
    }

    /// Takes the registration out of a guard that implements `Drop` (to `close` it),
    /// leaving one that releases nothing.
    pub(crate) fn take(&mut self) -> Registration {
        let inert = Registration {
            inner: Weak::new(),
            id: self.id,
            done: true,
        };
        std::mem::replace(self, inert)
    }

    /// Gives the resource up without cleaning it up: custodian stops tracking it and the
    /// caller owns it from now on. Returns `false` if it had already been reclaimed.
    pub(crate) fn detach(mut self) -> bool {
        self.done = true;
        self.inner
            .upgrade()
            .and_then(|i| i.release(self.id, Some(ReleasePath::Detached)))
            .is_some()
    }

    /// Moves the resource to another scope of the same supervisor (a parent scope, or
    /// [`Supervisor::root`] to keep it until shutdown). This is the only way a resource
    /// outlives the scope that acquired it.
    ///
    /// # Errors
    ///
    /// [`Error::ScopeClosed`] if `to` has ended, or if the resource was already reclaimed;
    /// the resource then stays where it was. A transfer that races with `to`'s end and
    /// loses is not an error: the resource moved, and `to`'s end released it (as
    /// [`ReleasePath::ScopeEnd`](crate::ReleasePath::ScopeEnd)), as if it had moved just
    /// before.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let root = sup.root();
    /// let kept = sup
    ///     .scope("s", async |s| {
    ///         let f = s.temp_file().await?;
    ///         f.registration().transfer(&root)?;
    ///         Ok::<_, tokio_custodian::Error>(f)
    ///     })
    ///     .await??;
    /// assert!(kept.registration().is_live());
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn transfer(&self, to: &Scope) -> Result<()> {
        let closed = || Error::ScopeClosed {
            op: crate::Operation::Register,
            scope: to.name().to_owned(),
        };
        let Some(inner) = self.inner.upgrade() else {
            return Err(closed());
        };
        if !Arc::ptr_eq(&to.sup.inner, &inner) {
            return Err(closed());
        }
        match to.shared.adopt(self.id, &inner.registry) {
            Adopted::Moved => Ok(()),
            Adopted::Refused => Err(closed()),
            Adopted::ClosedMeanwhile => {
                // `to` closed while the resource moved in: it moved, then `to`'s end
                // released it, as if its sweep had found it (whoever removes the entry
                // first does it). So the transfer succeeded: an error would tell the
                // caller the resource stayed where it was, and it is gone.
                if let Some(p) = inner.release_in(self.id, &to.shared, ReleasePath::ScopeEnd) {
                    p.clean_up_in_background(&inner);
                }
                Ok(())
            }
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if let Some(inner) = self.inner.upgrade() {
            inner.release_dropped(self.id);
        }
    }
}

impl fmt::Debug for Registration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registration")
            .field("id", &self.id)
            .field("live", &self.is_live())
            .finish()
    }
}
