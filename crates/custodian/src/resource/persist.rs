//! The escape hatches of temp files and dirs, on tempfile's model and the same on both
//! guards: `keep()` moves the entry to the temp base (the root's parent) under its own
//! name, no-clobber; `persist(path)` renames like `rename(2)`; `persist_noclobber(path)`
//! uses `RENAME_NOREPLACE`. All go through [`move_out`]: the entry leaves the registry
//! first ([`Parked`]), so no sweep can unlink or empty it mid-move; the move runs as one
//! unit on the blocking pool; a failed rename registers it again and hands the guard back
//! in a [`PersistError`].

use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::panic::Location;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{CWD, RenameFlags, renameat_with};

use crate::error::{Error, Operation, Result};
use crate::inner::{Inner, Spec, Supervisor};
use crate::kind::{ReleasePath, ResourceKind};
use crate::registry::{Permits, Reclaim, ScopeShared};
use crate::resource::slot::revoked;
use crate::resource::temp::spawn_unit;
use crate::scope::{Registration, Scope};
use crate::sys::FileId;
use crate::sys::remove::replaced_error;
use crate::sys::root::TempRoot;

/// A temp file or dir taken out of the registry while it is moved out of the root
/// (`persist`): no sweep (scope end, shutdown) can run its clean-up meanwhile. What is
/// needed to register it again if the move fails.
pub(crate) struct Parked {
    home: Arc<ScopeShared>,
    label: crate::label::Label,
    site: &'static Location<'static>,
    /// The entry's quota permits, kept while the file is still in the root: a failed
    /// move registers it again with them (never refused for room a waiter took
    /// meanwhile, its temp bytes still charged to the same guard).
    permits: Option<Box<Permits>>,
}

impl Parked {
    /// Removes `reg`'s entry from the registry without running its clean-up (the release
    /// decision, as `Detached`). `None` if a sweep had already released it.
    pub(crate) fn take(inner: &Inner, reg: &Registration) -> Option<Parked> {
        let id = reg.id();
        // The map's write guard is dropped inside `map`, before the removal below.
        let (home, label, site, permits) = inner.registry.map.get_mut(&id).map(|mut e| {
            let permits = e.permits.take();
            (e.scope.clone(), e.label.clone(), e.site, permits)
        })?;
        inner.release(id, Some(ReleasePath::Detached))?;
        Some(Parked {
            home,
            label,
            site,
            permits,
        })
    }

    /// After a successful move: the permits the moved file, registered again as `kind`,
    /// takes over from the temp entry (see `Quotas::convert`); what it does not need
    /// returns when `self` drops. `None`: nothing to carry over (no quota applies).
    pub(crate) fn carry_over(
        &mut self,
        sup: &Supervisor,
        kind: ResourceKind,
    ) -> Result<Option<Permits>> {
        match (sup.inner.quotas.as_ref(), self.permits.take()) {
            (Some(q), Some(held)) if q.applies(kind) => {
                q.convert(*held, kind, Operation::Persist).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// Where to live now: its own scope if still open, else the root scope.
    pub(crate) fn scope(&self, sup: &Supervisor) -> Scope {
        let shared = if self.home.is_closed() {
            sup.inner.root_scope.clone()
        } else {
            self.home.clone()
        };
        Scope {
            shared,
            sup: sup.clone(),
        }
    }

    /// Registers it again, in [`scope`](Self::scope). On refusal (shutting down, or the
    /// scope ended meanwhile) the registry reclaims it at once (removes it).
    pub(crate) fn register(
        mut self,
        sup: &Supervisor,
        kind: ResourceKind,
        path: &Path,
        reclaim: Box<dyn Reclaim>,
    ) -> Result<Registration> {
        let spec = Spec {
            kind,
            label: self.label.clone(),
            path: Some(path.to_path_buf()),
            site: self.site,
            op: Operation::Persist,
        };
        let permits = self.permits.take().map(|p| *p);
        self.scope(sup).register_with(spec, reclaim, permits)
    }
}

/// A failed escape hatch ([`keep`](crate::TempFile::keep), [`persist`](crate::TempFile::persist),
/// [`persist_noclobber`](crate::TempFile::persist_noclobber), the same on [`TempDir`](crate::TempDir)): the
/// error, and the guard handed back, still managed, when it could be.
///
/// `.map_err(|e| e.error)` turns it into an [`Error`] (dropping the guard handed back,
/// so releasing it). There is no `From` impl on purpose: a generic one would break type
/// inference of `?` in closures that return `tokio_custodian::Result`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
/// let sup = tokio_custodian::Supervisor::builder().start()?;
/// let t = sup.temp_file().await?;
/// let e = t.persist("/no/such/dir/out").await.unwrap_err();
/// assert_eq!(e.error.io_kind(), Some(std::io::ErrorKind::NotFound));
/// let t = e.into_guard().expect("handed back");
/// assert!(t.registration().is_live()); // still managed: removed when dropped
/// # sup.shutdown().await; Ok(()) }
/// ```
#[derive(thiserror::Error)]
#[error("{error}")]
#[non_exhaustive]
pub struct PersistError<T> {
    /// What went wrong, naming the target path.
    #[source]
    pub error: Error,
    /// The guard, still managed (registered again, possibly under a new id); `None` if
    /// the failure happened after the move, or if it could not be managed any more
    /// (reclaimed by its scope's end, or shutting down: then it was removed).
    pub guard: Option<T>,
}

impl<T> PersistError<T> {
    pub(crate) fn new(error: Error, guard: T) -> Self {
        PersistError {
            error,
            guard: Some(guard),
        }
    }

    pub(crate) fn lost(error: Error) -> Self {
        PersistError { error, guard: None }
    }

    /// The guard handed back, if any.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let t = sup.temp_file().await?;
    /// let err = t.persist("/no/such/dir/out.wav").await.unwrap_err();
    /// let t = err.into_guard().expect("handed back, still managed");
    /// assert!(t.path().exists());
    /// # drop(t); sup.shutdown().await; Ok(()) }
    /// ```
    pub fn into_guard(self) -> Option<T> {
        self.guard
    }
}

impl<T> From<PersistError<T>> for Error {
    /// Keeps the error and drops the guard handed back (which releases it: the temp file
    /// or dir is removed), so that `?` works in a body returning [`Result`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let err = sup
    ///     .try_scope("save", async |s| {
    ///         let t = s.temp_file().await?;
    ///         t.persist("/no/such/dir/out.wav").await?; // PersistError<TempFile> -> Error
    ///         Ok(())
    ///     })
    ///     .await
    ///     .unwrap_err();
    /// assert_eq!(err.io_kind(), Some(std::io::ErrorKind::NotFound));
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    fn from(e: PersistError<T>) -> Self {
        e.error
    }
}

impl<T: fmt::Debug> fmt::Debug for PersistError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PersistError")
            .field("error", &self.error)
            .field("guard", &self.guard)
            .finish()
    }
}

/// Whether a move may replace what is at its target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Clobber {
    /// Like `rename(2)`: a file replaces a file, a dir replaces an empty dir.
    Replace,
    /// `RENAME_NOREPLACE`: fails with `AlreadyExists`, atomically.
    Refuse,
}

/// What a temp guard lends the move unit.
pub(crate) trait Movable: Sized + Send + 'static {
    const KIND: ResourceKind;
    fn reg(&self) -> &Registration;
    fn set_reg(&mut self, reg: Registration);
    fn root(&self) -> Option<Arc<TempRoot>>;
    fn name(&self) -> &OsStr;
    fn fid(&self) -> FileId;
    fn path(&self) -> &Path;
    /// The clean-up to register again if the move fails.
    fn reclaim(&self, root: Arc<TempRoot>) -> Box<dyn Reclaim>;
}

/// Where [`keep`](crate::TempFile::keep) puts an entry: the temp base (the root's parent, same
/// file system), under the same name.
pub(crate) fn kept_path(path: &Path) -> PathBuf {
    let base = path
        .parent()
        .and_then(Path::parent)
        .unwrap_or(Path::new("/"));
    base.join(path.file_name().unwrap_or_default())
}

/// Moves `guard`'s entry out of the root to `target` as one unit on the blocking pool,
/// then runs `moved` (still inside the unit). The unit owns the guard, so dropping the
/// returned future cannot interrupt the move; a join failure (a panic) hands nothing
/// back.
pub(crate) async fn move_out<T, R, F>(
    guard: T,
    target: PathBuf,
    clobber: Clobber,
    moved: F,
) -> std::result::Result<R, PersistError<T>>
where
    T: Movable,
    R: Send + 'static,
    F: FnOnce(T, &Supervisor, Parked) -> std::result::Result<R, PersistError<T>> + Send + 'static,
{
    let op = Operation::Persist;
    let Some(sup) = guard.reg().supervisor() else {
        return Err(PersistError::new(Error::ShuttingDown { op }, guard));
    };
    let inner = sup.inner.clone();
    let to = target.clone();
    let unit = spawn_unit(&inner, move || {
        move_unit(guard, &sup, &to, clobber).and_then(|(guard, parked)| moved(guard, &sup, parked))
    });
    match unit.await {
        Ok(r) => r,
        Err(join) => Err(PersistError::lost(Error::io(
            op,
            &target,
            io::Error::other(join),
        ))),
    }
}

/// The move itself (blocking): out of the registry, rename, and back into the registry
/// if the rename failed. On success the guard's registration is no longer in the
/// registry (dropping it does nothing) and `Parked` says where it lived.
fn move_unit<T: Movable>(
    mut guard: T,
    sup: &Supervisor,
    target: &Path,
    clobber: Clobber,
) -> std::result::Result<(T, Parked), PersistError<T>> {
    let op = Operation::Persist;
    let inner = &sup.inner;
    // Shutdown waits for tracked clean-ups before it removes the temp root; taken
    // before the entry leaves the registry, so that either shutdown's sweep finds the
    // entry or its wait finds this token.
    let _token = inner.cleanups.token();
    if inner.is_shutting_down() {
        return Err(PersistError::new(Error::ShuttingDown { op }, guard));
    }
    let Some(root) = guard.root() else {
        return Err(PersistError::new(Error::io(op, target, revoked()), guard));
    };
    let Some(parked) = Parked::take(inner, guard.reg()) else {
        return Err(PersistError::new(Error::io(op, target, revoked()), guard));
    };
    // Out of the registry: no sweep can close, unlink or empty it now. Still check the
    // name is the entry we created before moving it.
    let flags = match clobber {
        Clobber::Replace => RenameFlags::empty(),
        Clobber::Refuse => RenameFlags::NOREPLACE,
    };
    let moved = match root.contains(guard.name(), guard.fid()) {
        Ok(true) => {
            renameat_with(root.fd(), guard.name(), CWD, target, flags).map_err(io::Error::from)
        }
        Ok(false) => Err(replaced_error()),
        Err(e) => Err(e),
    };
    let Err(e) = moved else {
        return Ok((guard, parked));
    };
    let error = Error::io(op, target, e);
    let reclaim = guard.reclaim(root);
    let path = guard.path().to_path_buf();
    match parked.register(sup, T::KIND, &path, reclaim) {
        Ok(reg) => {
            guard.set_reg(reg);
            Err(PersistError::new(error, guard))
        }
        // Refused (shutting down, or the scope ended): the registry has removed it.
        Err(_) => Err(PersistError::lost(error)),
    }
}
