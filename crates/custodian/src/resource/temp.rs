//! Creating temp files and temp dirs inside the supervisor's private root.
//!
//! [`TempBuilder::file`] / [`TempBuilder::dir`] return named futures ([`CreateTempFile`],
//! [`CreateTempDir`]) that admit the acquisition at their first poll, then create and
//! register as one unit on the blocking pool (cancel safe: the unit finishes, and a guard
//! nobody awaits is dropped, so released). Their escape hatches live in `persist.rs`.

use std::fmt;
use std::future::Future;
use std::io;
use std::panic::Location;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::task::JoinHandle;
use tokio_util::task::task_tracker::TaskTrackerToken;

use crate::error::{Error, Operation, Result};
use crate::inner::Inner;
use crate::inner::quota_owner;
use crate::kind::ResourceKind;
use crate::registry::Permits;
use crate::resource::{TempDir, TempFile};
use crate::scope::Scope;
use crate::sys::create::check_affixes;
use crate::sys::root::TempRoot;

/// Options for a temp file or temp dir: name prefix and suffix, and the label shown in
/// reports. Made by [`Scope::temp`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
/// let sup = tokio_custodian::Supervisor::builder().start()?;
/// let f = sup.root().temp().prefix("upload-").suffix(".wav").label("upload").file().await?;
/// let name = f.path().file_name().unwrap().to_str().unwrap();
/// assert!(name.starts_with("upload-") && name.ends_with(".wav"));
/// assert_eq!(sup.live()[0].label(), "upload");
/// # sup.shutdown().await; Ok(()) }
/// ```
#[derive(Clone)]
#[must_use = "options do nothing until `file` or `dir` is called"]
pub struct TempBuilder {
    scope: Scope,
    prefix: String,
    suffix: String,
    label: Option<String>,
    /// Wait for quota room (the default) rather than fail fast.
    wait: bool,
}

impl TempBuilder {
    /// Fail fast instead of waiting when a [`Quota`](crate::Quota) has no room: the
    /// creation is refused with [`Error::QuotaExceeded`] (`io_kind()`:
    /// [`QuotaExceeded`](io::ErrorKind::QuotaExceeded)) and nothing is created. Without
    /// quotas it changes nothing.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// use tokio_custodian::{Error, Quota, QuotaOn};
    /// let sup = tokio_custodian::Supervisor::builder().quota(Quota::open_files(0)).start()?;
    /// let err = sup.temp().no_wait().file().await.unwrap_err();
    /// assert!(matches!(err, Error::QuotaExceeded { quota, .. } if quota.on() == QuotaOn::OpenFiles));
    /// assert!(std::fs::read_dir(sup.temp_root()).unwrap().next().is_none());
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn no_wait(mut self) -> Self {
        self.wait = false;
        self
    }

    /// The start of the random name (no path separator allowed).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let t = sup.temp().prefix("upload-").file().await?;
    /// assert!(t.path().file_name().unwrap().to_string_lossy().starts_with("upload-"));
    /// # drop(t); sup.shutdown().await; Ok(()) }
    /// ```
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The end of the random name, such as an extension (no path separator allowed).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let t = sup.temp().suffix(".wav").file().await?;
    /// assert_eq!(t.path().extension().unwrap(), "wav");
    /// # drop(t); sup.shutdown().await; Ok(()) }
    /// ```
    pub fn suffix(mut self, suffix: impl Into<String>) -> Self {
        self.suffix = suffix.into();
        self
    }

    /// The label shown in [`live`](crate::Supervisor::live) listings and reports.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let t = sup.temp().label("spool").file().await?;
    /// assert_eq!(sup.live()[0].label(), "spool");
    /// # drop(t); sup.shutdown().await; Ok(()) }
    /// ```
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
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let builder = sup.temp().prefix("part-");
    /// let (a, b) = (builder.file().await?, builder.file().await?); // one builder, many files
    /// assert_ne!(a.path(), b.path());
    /// # drop((a, b)); sup.shutdown().await; Ok(()) }
    /// ```
    #[track_caller]
    pub fn file(&self) -> CreateTempFile {
        CreateTempFile(Create::new(
            self.clone(),
            Operation::CreateTempFile,
            Location::caller(),
            ResourceKind::TempFile,
            |scope, root, b, site, permits| {
                let label = b.label.take();
                TempFile::create(scope, root, &b.prefix, &b.suffix, label, site, permits)
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
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// use std::os::unix::fs::PermissionsExt;
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let d = sup.temp().prefix("work-").dir().await?;
    /// assert_eq!(std::fs::metadata(d.path()).unwrap().permissions().mode() & 0o777, 0o700);
    /// # drop(d); sup.shutdown().await; Ok(()) }
    /// ```
    #[track_caller]
    pub fn dir(&self) -> CreateTempDir {
        CreateTempDir(Create::new(
            self.clone(),
            Operation::CreateTempDir,
            Location::caller(),
            ResourceKind::TempDir,
            |scope, root, b, site, permits| {
                let label = b.label.take();
                TempDir::create(scope, root, &b.prefix, &b.suffix, label, site, permits)
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
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
/// let sup = tokio_custodian::Supervisor::builder().start()?;
/// let creating: tokio_custodian::CreateTempFile = sup.temp_file();
/// drop(creating); // dropped before its first poll: nothing was created
/// assert_eq!(sup.stats().kind(tokio_custodian::ResourceKind::TempFile).created, 0);
/// let t = sup.temp_file().await?;
/// assert!(t.path().is_file());
/// # drop(t); sup.shutdown().await; Ok(()) }
/// ```
#[must_use = "futures do nothing unless polled; a dropped one creates nothing"]
pub struct CreateTempFile(Create<TempFile>);

/// The future of [`TempBuilder::dir`] and [`Scope::temp_dir`]: resolves to the new,
/// registered [`TempDir`].
///
/// Nothing happens before its first poll; from then on the creation runs as one unit on
/// the blocking pool that completes even if this future is dropped (see the cancel
/// safety of [`TempBuilder::dir`]).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
/// let sup = tokio_custodian::Supervisor::builder().start()?;
/// let creating: tokio_custodian::CreateTempDir = sup.temp_dir();
/// let d = creating.await?;
/// assert!(d.path().is_dir());
/// # drop(d); sup.shutdown().await; Ok(()) }
/// ```
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

/// Creates the entry relative to the root's fd and registers it (blocking), with the
/// quota permits taken for it.
type Make<T> = fn(
    &Scope,
    &Arc<TempRoot>,
    &mut TempBuilder,
    &'static Location<'static>,
    Option<Permits>,
) -> Result<T>;

/// Waiting for quota room.
type TakePermits = Pin<Box<dyn Future<Output = Result<Permits>> + Send>>;

/// The state machine behind both creation futures. `Unpin`: every state is.
struct Create<T> {
    op: Operation,
    kind: ResourceKind,
    state: State<T>,
}

enum State<T> {
    /// Not polled yet: nothing admitted, nothing spawned.
    Start {
        builder: TempBuilder,
        site: &'static Location<'static>,
        make: Make<T>,
    },
    /// Admitted, waiting for quota room: dropping it returns what it took.
    Waiting {
        take: TakePermits,
        builder: TempBuilder,
        site: &'static Location<'static>,
        make: Make<T>,
    },
    /// The unit runs on the blocking pool; `root` names the root in a join error.
    Running {
        unit: Unit<Result<T>>,
        root: PathBuf,
    },
    Done,
}

impl<T: Send + 'static> Create<T> {
    fn new(
        builder: TempBuilder,
        op: Operation,
        site: &'static Location<'static>,
        kind: ResourceKind,
        make: Make<T>,
    ) -> Self {
        Create {
            op,
            kind,
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
        kind: ResourceKind,
        mut builder: TempBuilder,
        site: &'static Location<'static>,
        make: Make<T>,
        mut permits: Option<Permits>,
    ) -> std::result::Result<State<T>, Error> {
        let inner = builder.scope.inner().clone();
        // Fail fast, before anything is spawned (or waited for); the unit checks again.
        inner.admit(&builder.scope.shared, op)?;
        let root = inner.temp_root.path().to_path_buf();
        check_affixes(&builder.prefix, &builder.suffix).map_err(|e| Error::io(op, &root, e))?;
        if permits.is_none()
            && let Some(q) = inner.quotas.as_ref().filter(|q| q.applies(kind))
        {
            let shared = &builder.scope.shared;
            permits = q.take_if_room(kind, quota_owner(shared));
            if permits.is_none() && builder.wait {
                let take = Box::pin(q.take(kind, op, shared, inner.root_token.clone()));
                return Ok(State::Waiting {
                    take,
                    builder,
                    site,
                    make,
                });
            }
            if permits.is_none() {
                permits = Some(q.try_take(kind, op, quota_owner(&builder.scope.shared))?);
            }
        }
        let unit = spawn_unit(&inner, move || {
            let made = builder.checked_root(op).and_then(|root| {
                let scope = builder.scope.clone();
                make(&scope, &root, &mut builder, site, permits)
            });
            made.map_err(|e| builder.lost_to_shutdown(op, e))
        });
        Ok(State::Running { unit, root })
    }
}

impl<T: Send + 'static> Future for Create<T> {
    type Output = Result<T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        let (op, kind) = (self.op, self.kind);
        loop {
            match std::mem::replace(&mut self.state, State::Done) {
                State::Start {
                    builder,
                    site,
                    make,
                } => match Self::start(op, kind, builder, site, make, None) {
                    Ok(next) => self.state = next,
                    Err(e) => return Poll::Ready(Err(e)),
                },
                State::Waiting {
                    mut take,
                    builder,
                    site,
                    make,
                } => {
                    let Poll::Ready(taken) = take.as_mut().poll(cx) else {
                        self.state = State::Waiting {
                            take,
                            builder,
                            site,
                            make,
                        };
                        return Poll::Pending;
                    };
                    // Admitted again: shutdown or the scope's end may have come meanwhile.
                    match taken.and_then(|p| Self::start(op, kind, builder, site, make, Some(p))) {
                        Ok(next) => self.state = next,
                        Err(e) => return Poll::Ready(Err(e)),
                    }
                }
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
            State::Waiting { .. } => "waiting for quota room",
            State::Running { .. } => "running",
            State::Done => "done",
        };
        f.write_str(state)
    }
}

/// Runs `unit` on the blocking pool, where it completes even if the returned handle is
/// dropped, in the caller's `tracing` context (its subscriber and current span): the
/// unit's `acquired` / `released` events are the caller's, as if emitted inline.
///
/// Shutdown waits for the unit as it waits for scopes: its output travels with a token
/// of the scopes' tracker, dropped after the output. A guard made for a caller that has
/// gone (its future dropped) is then dropped, and so released, before shutdown reclaims
/// what is left: never reported as a leak.
pub(crate) fn spawn_unit<R, F>(inner: &Inner, unit: F) -> Unit<R>
where
    R: Send + 'static,
    F: FnOnce() -> R + Send + 'static,
{
    let dispatch = tracing::dispatcher::get_default(Clone::clone);
    let span = tracing::Span::current();
    let tracked = inner.scopes.token();
    Unit(inner.handle.spawn_blocking(move || {
        let out = tracing::dispatcher::with_default(&dispatch, || span.in_scope(unit));
        // Fields drop in order: the output (a guard nobody waits for) before the token.
        (out, tracked)
    }))
}

/// The handle of a unit started by [`spawn_unit`]: resolves to its output.
pub(crate) struct Unit<R>(JoinHandle<(R, TaskTrackerToken)>);

impl<R> Future for Unit<R> {
    type Output = std::result::Result<R, tokio::task::JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.map(|(out, _tracked)| out))
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
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
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
            wait: true,
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
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let path = sup
    ///     .scope("job", async |s| {
    ///         let f = s.temp_file().await?;
    ///         Ok::<_, tokio_custodian::Error>(f.path().to_path_buf())
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
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
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
