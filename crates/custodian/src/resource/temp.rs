//! Creating temp files and temp dirs inside the supervisor's private root.

use std::fmt;
use std::future::Future;
use std::io;
use std::panic::Location;
use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, Operation, Result};
use crate::inner::{Inner, Spec, Supervisor};
use crate::kind::{ReleasePath, ResourceKind};
use crate::registry::Reclaim;
use crate::registry::ScopeShared;
use crate::resource::{TempDir, TempFile};
use crate::scope::{Registration, Scope};
use crate::sys::create::check_affixes;
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
    /// Cancel safe. The creation and the registration run as one unit on the blocking
    /// pool, which finishes even if this future is dropped: the file is then registered
    /// and, its guard being dropped with the unit's output, released (counted as
    /// created and released; nothing is left unregistered in the root).
    #[track_caller]
    pub fn file(&self) -> impl Future<Output = Result<TempFile>> + use<> {
        let site = Location::caller();
        let this = self.clone();
        async move {
            this.create(Operation::CreateTempFile, move |scope, root, b| {
                TempFile::create(scope, root, &b.prefix, &b.suffix, b.label.take(), site)
            })
            .await
        }
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
    pub fn dir(&self) -> impl Future<Output = Result<TempDir>> + use<> {
        let site = Location::caller();
        let this = self.clone();
        async move {
            this.create(Operation::CreateTempDir, move |scope, root, b| {
                TempDir::create(scope, root, &b.prefix, &b.suffix, b.label.take(), site)
            })
            .await
        }
    }

    /// Runs `make` (create relative to the root's fd, then register) as one unit on the
    /// blocking pool. The unit owns everything it needs, so it completes even if the
    /// awaiting future is dropped, and then its output (the registered guard) is dropped
    /// and so released: an acquisition never leaves an unregistered name in the root.
    async fn create<T, F>(mut self, op: Operation, make: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Scope, &Arc<TempRoot>, &mut TempBuilder) -> Result<T> + Send + 'static,
    {
        let inner = self.scope.inner().clone();
        // Fail fast, before anything is spawned; the unit checks again.
        inner.admit(&self.scope.shared, op)?;
        let root_path = || inner.temp_root.path().to_path_buf();
        check_affixes(&self.prefix, &self.suffix).map_err(|e| Error::io(op, root_path(), e))?;
        let joined = spawn_unit(&inner, move || {
            let made = self.checked_root(op).and_then(|root| {
                let scope = self.scope.clone();
                make(&scope, &root, &mut self)
            });
            made.map_err(|e| self.lost_to_shutdown(op, e))
        })
        .await;
        // A panic or a runtime shutting down: nothing was handed out.
        joined.unwrap_or_else(|e| Err(Error::io(op, root_path(), io::Error::other(e))))
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
    pub fn temp_file(&self) -> impl Future<Output = Result<TempFile>> + use<> {
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
    pub fn temp_dir(&self) -> impl Future<Output = Result<TempDir>> + use<> {
        self.temp().dir()
    }
}
