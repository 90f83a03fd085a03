//! Creating temp files and temp dirs inside the supervisor's private root, and the one
//! model their escape hatches share.
//!
//! Creation: [`TempBuilder::file`] / [`TempBuilder::dir`] return named futures
//! ([`CreateTempFile`], [`CreateTempDir`]) that admit the acquisition at their first poll,
//! then create and register as one unit on the blocking pool (cancel safe: the unit
//! finishes, and a guard nobody awaits is dropped, so released).
//!
//! Escape hatches (tempfile's model, the same on both guards): `keep()` moves the entry
//! to the temp base (the root's parent) under its own name, no-clobber; `persist(path)`
//! renames like `rename(2)`; `persist_noclobber(path)` uses `RENAME_NOREPLACE`. All go
//! through [`move_out`]: the entry leaves the registry first ([`Parked`]), so no sweep
//! can unlink or empty it mid-move; the move runs as one unit on the blocking pool; a
//! failed rename registers it again and hands the guard back in a [`PersistError`].

use std::ffi::OsStr;
use std::fmt;
use std::future::Future;
use std::io;
use std::panic::Location;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustix::fs::{CWD, RenameFlags, renameat_with};
use tokio::task::JoinHandle;

use crate::error::{Error, Operation, Result};
use crate::inner::{Inner, Spec, Supervisor};
use crate::kind::{ReleasePath, ResourceKind};
use crate::registry::Reclaim;
use crate::registry::ScopeShared;
use crate::resource::slot::revoked;
use crate::resource::{TempDir, TempFile};
use crate::scope::{Registration, Scope};
use crate::sys::FileId;
use crate::sys::create::check_affixes;
use crate::sys::remove::replaced_error;
use crate::sys::root::TempRoot;

/// Options for a temp file or temp dir: name prefix and suffix, and the label shown in
/// reports. Made by [`Scope::temp`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> custodian::Result<()> {
/// let sup = custodian::Supervisor::builder().start()?;
/// let f = sup.root().temp().prefix("upload-").suffix(".wav").label("upload").file().await?;
/// let name = f.path().file_name().unwrap().to_str().unwrap();
/// assert!(name.starts_with("upload-") && name.ends_with(".wav"));
/// assert_eq!(sup.live()[0].label, "upload");
/// # sup.shutdown().await; Ok(()) }
/// ```
#[derive(Clone)]
#[must_use = "options do nothing until `file` or `dir` is called"]
pub struct TempBuilder {
    scope: Scope,
    prefix: String,
    suffix: String,
    label: Option<String>,
}

impl TempBuilder {
    /// The start of the random name (no path separator allowed).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The end of the random name, such as an extension (no path separator allowed).
    pub fn suffix(mut self, suffix: impl Into<String>) -> Self {
        self.suffix = suffix.into();
        self
    }

    /// The label shown in [`live`](crate::Supervisor::live) listings and reports.
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    /// Creates the temp file (exclusively, with a random name, mode 0600 whatever the
    /// umask) and registers it.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] with [`Operation::CreateTempFile`] naming the temp root (full disk,
    /// too many open files, a prefix or suffix containing `/` or NUL:
    /// [`InvalidInput`](io::ErrorKind::InvalidInput)...), [`Error::TempRootReplaced`],
    /// [`Error::ShuttingDown`] or [`Error::ScopeClosed`]. Nothing is left on disk or
    /// registered on error.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe. Nothing happens before the first poll. The creation and the
    /// registration then run as one unit on the blocking pool, which finishes even if
    /// the future is dropped: the file is then registered and, its guard being dropped
    /// with the unit's output, released (counted as created and released; nothing is
    /// left unregistered in the root).
    #[track_caller]
    pub fn file(&self) -> CreateTempFile {
        CreateTempFile(Create::new(
            self.clone(),
            Operation::CreateTempFile,
            Location::caller(),
            |scope, root, b, site| {
                TempFile::create(scope, root, &b.prefix, &b.suffix, b.label.take(), site)
            },
        ))
    }

    /// Creates the temp dir (exclusively, with a random name, mode 0700 whatever the
    /// umask) and registers it.
    ///
    /// # Errors
    ///
    /// As [`file`](Self::file), with [`Operation::CreateTempDir`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`file`](Self::file): a dir created for a dropped future is
    /// registered and then released (removed).
    #[track_caller]
    pub fn dir(&self) -> CreateTempDir {
        CreateTempDir(Create::new(
            self.clone(),
            Operation::CreateTempDir,
            Location::caller(),
            |scope, root, b, site| {
                TempDir::create(scope, root, &b.prefix, &b.suffix, b.label.take(), site)
            },
        ))
    }

    /// An acquisition that passed `admit` but then lost a race with shutdown, which
    /// removes the temp root, trips over the missing root (`NotFound`): report the
    /// shutdown, not the symptom.
    fn lost_to_shutdown(&self, op: Operation, e: Error) -> Error {
        if !e.is_cancellation() && self.scope.inner().is_shutting_down() {
            Error::ShuttingDown { op }
        } else {
            e
        }
    }

    /// Admits the acquisition and checks that the root's path still names the root
    /// (renamed away or swapped for a symlink: [`Error::TempRootReplaced`]). Creation is
    /// relative to the root's fd anyway; the check refuses a root the user can no
    /// longer see at its path.
    fn checked_root(&self, op: Operation) -> Result<Arc<TempRoot>> {
        let inner = self.scope.inner();
        inner.admit(&self.scope.shared, op)?;
        let root = inner.temp_root.clone();
        root.check().map_err(|e| {
            if crate::sys::remove::is_replaced(&e) {
                // Another object at its name (a symlink, a directory renamed in).
                Error::TempRootReplaced {
                    op,
                    path: root.path().to_path_buf(),
                }
            } else {
                // The check itself failed (`EMFILE`, `EACCES`...): keep its kind.
                Error::io(op, root.path(), e)
            }
        })?;
        Ok(root)
    }
}

/// The future of [`TempBuilder::file`] and [`Scope::temp_file`]: resolves to the new,
/// registered [`TempFile`].
///
/// Nothing happens before its first poll; from then on the creation runs as one unit on
/// the blocking pool that completes even if this future is dropped (see the cancel
/// safety of [`TempBuilder::file`]).
#[must_use = "futures do nothing unless polled; a dropped one creates nothing"]
pub struct CreateTempFile(Create<TempFile>);

/// The future of [`TempBuilder::dir`] and [`Scope::temp_dir`]: resolves to the new,
/// registered [`TempDir`].
///
/// Nothing happens before its first poll; from then on the creation runs as one unit on
/// the blocking pool that completes even if this future is dropped (see the cancel
/// safety of [`TempBuilder::dir`]).
#[must_use = "futures do nothing unless polled; a dropped one creates nothing"]
pub struct CreateTempDir(Create<TempDir>);

impl Future for CreateTempFile {
    type Output = Result<TempFile>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx)
    }
}

impl Future for CreateTempDir {
    type Output = Result<TempDir>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx)
    }
}

impl fmt::Debug for CreateTempFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CreateTempFile").field(&self.0).finish()
    }
}

impl fmt::Debug for CreateTempDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CreateTempDir").field(&self.0).finish()
    }
}

/// Creates the entry relative to the root's fd and registers it (blocking).
type Make<T> =
    fn(&Scope, &Arc<TempRoot>, &mut TempBuilder, &'static Location<'static>) -> Result<T>;

/// The state machine behind both creation futures. `Unpin`: every state is.
struct Create<T> {
    op: Operation,
    state: State<T>,
}

enum State<T> {
    /// Not polled yet: nothing admitted, nothing spawned.
    Start {
        builder: TempBuilder,
        site: &'static Location<'static>,
        make: Make<T>,
    },
    /// The unit runs on the blocking pool; `root` names the root in a join error.
    Running {
        unit: JoinHandle<Result<T>>,
        root: PathBuf,
    },
    Done,
}

impl<T: Send + 'static> Create<T> {
    fn new(
        builder: TempBuilder,
        op: Operation,
        site: &'static Location<'static>,
        make: Make<T>,
    ) -> Self {
        Create {
            op,
            state: State::Start {
                builder,
                site,
                make,
            },
        }
    }

    /// Admits the acquisition, checks the affixes, then runs `make` (create, register)
    /// as one unit on the blocking pool. The unit owns everything it needs, so it
    /// completes even if the future is dropped, and then its output (the registered
    /// guard) is dropped and so released: an acquisition never leaves an unregistered
    /// name in the root.
    fn start(
        op: Operation,
        mut builder: TempBuilder,
        site: &'static Location<'static>,
        make: Make<T>,
    ) -> std::result::Result<State<T>, Error> {
        let inner = builder.scope.inner().clone();
        // Fail fast, before anything is spawned; the unit checks again.
        inner.admit(&builder.scope.shared, op)?;
        let root = inner.temp_root.path().to_path_buf();
        check_affixes(&builder.prefix, &builder.suffix).map_err(|e| Error::io(op, &root, e))?;
        let unit = spawn_unit(&inner, move || {
            let made = builder.checked_root(op).and_then(|root| {
                let scope = builder.scope.clone();
                make(&scope, &root, &mut builder, site)
            });
            made.map_err(|e| builder.lost_to_shutdown(op, e))
        });
        Ok(State::Running { unit, root })
    }
}

impl<T: Send + 'static> Future for Create<T> {
    type Output = Result<T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        let op = self.op;
        loop {
            match std::mem::replace(&mut self.state, State::Done) {
                State::Start {
                    builder,
                    site,
                    make,
                } => match Self::start(op, builder, site, make) {
                    Ok(running) => self.state = running,
                    Err(e) => return Poll::Ready(Err(e)),
                },
                State::Running { mut unit, root } => {
                    let Poll::Ready(joined) = Pin::new(&mut unit).poll(cx) else {
                        self.state = State::Running { unit, root };
                        return Poll::Pending;
                    };
                    // A panic or a runtime shutting down: nothing was handed out.
                    return Poll::Ready(
                        joined.unwrap_or_else(|e| Err(Error::io(op, root, io::Error::other(e)))),
                    );
                }
                State::Done => panic!("`{op:?}` future polled after completion"),
            }
        }
    }
}

impl<T> fmt::Debug for Create<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Start { builder, .. } => return builder.fmt(f),
            State::Running { .. } => "running",
            State::Done => "done",
        };
        f.write_str(state)
    }
}

/// Runs `unit` on the blocking pool, where it completes even if the returned handle is
/// dropped, in the caller's `tracing` context (its subscriber and current span): the
/// unit's `acquired` / `released` events are the caller's, as if emitted inline.
pub(crate) fn spawn_unit<R, F>(inner: &Inner, unit: F) -> tokio::task::JoinHandle<R>
where
    R: Send + 'static,
    F: FnOnce() -> R + Send + 'static,
{
    let dispatch = tracing::dispatcher::get_default(Clone::clone);
    let span = tracing::Span::current();
    inner.handle.spawn_blocking(move || {
        tracing::dispatcher::with_default(&dispatch, || span.in_scope(unit))
    })
}

/// A temp file or dir taken out of the registry while it is moved out of the root
/// (`persist`): no sweep (scope end, shutdown) can run its clean-up meanwhile. What is
/// needed to register it again if the move fails.
pub(crate) struct Parked {
    home: Arc<ScopeShared>,
    label: Box<str>,
    site: &'static Location<'static>,
}

impl Parked {
    /// Removes `reg`'s entry from the registry without running its clean-up (the release
    /// decision, as `Detached`). `None` if a sweep had already released it.
    pub(crate) fn take(inner: &Inner, reg: &Registration) -> Option<Parked> {
        let id = reg.id();
        // The map's read guard is dropped inside `map`, before the removal below.
        let (home, label, site) = inner
            .registry
            .map
            .get(&id)
            .map(|e| (e.scope.clone(), e.label.clone(), e.site))?;
        inner.release(id, Some(ReleasePath::Detached))?;
        Some(Parked { home, label, site })
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
        self,
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
        self.scope(sup).register_boxed(spec, reclaim)
    }
}

/// A failed escape hatch ([`keep`](TempFile::keep), [`persist`](TempFile::persist),
/// [`persist_noclobber`](TempFile::persist_noclobber), the same on [`TempDir`]): the
/// error, and the guard handed back, still managed, when it could be.
///
/// `.map_err(|e| e.error)` turns it into an [`Error`] (dropping the guard handed back,
/// so releasing it). There is no `From` impl on purpose: a generic one would break type
/// inference of `?` in closures that return `custodian::Result`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> custodian::Result<()> {
/// let sup = custodian::Supervisor::builder().start()?;
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
    pub fn into_guard(self) -> Option<T> {
        self.guard
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

/// Where [`keep`](TempFile::keep) puts an entry: the temp base (the root's parent, same
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

impl fmt::Debug for TempBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TempBuilder")
            .field("scope", &self.scope.name())
            .field("prefix", &self.prefix)
            .field("suffix", &self.suffix)
            .field("label", &self.label)
            .finish()
    }
}

impl Scope {
    /// Options for a temp file or dir in this scope (prefix, suffix, label).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> custodian::Result<()> {
    /// let sup = custodian::Supervisor::builder().start()?;
    /// let d = sup.root().temp().prefix("work-").dir().await?;
    /// assert!(d.path().starts_with(sup.temp_root()));
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn temp(&self) -> TempBuilder {
        TempBuilder {
            scope: self.clone(),
            prefix: "tmp-".into(),
            suffix: String::new(),
            label: None,
        }
    }

    /// Creates a temp file in this scope, inside the supervisor's private temp root.
    ///
    /// # Errors
    ///
    /// See [`TempBuilder::file`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a file created for a dropped future is registered, then released.
    /// See [`TempBuilder::file`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> custodian::Result<()> {
    /// let sup = custodian::Supervisor::builder().start()?;
    /// let path = sup
    ///     .scope("job", async |s| {
    ///         let f = s.temp_file().await?;
    ///         custodian::Result::Ok(f.path().to_path_buf())
    ///     })
    ///     .await??;
    /// assert!(!path.exists()); // removed when the guard dropped
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    #[track_caller]
    pub fn temp_file(&self) -> CreateTempFile {
        self.temp().file()
    }

    /// Creates a temp dir in this scope, inside the supervisor's private temp root.
    ///
    /// # Errors
    ///
    /// See [`TempBuilder::dir`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a dir created for a dropped future is registered, then released.
    /// See [`TempBuilder::dir`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> custodian::Result<()> {
    /// let sup = custodian::Supervisor::builder().start()?;
    /// let d = sup.root().temp_dir().await?;
    /// std::fs::create_dir_all(d.path().join("a/b")).unwrap();
    /// let path = d.path().to_path_buf();
    /// d.close().await?; // recursive removal, off the async threads
    /// assert!(!path.exists());
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    #[track_caller]
    pub fn temp_dir(&self) -> CreateTempDir {
        self.temp().dir()
    }
}
