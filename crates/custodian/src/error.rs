//! The one error type of the crate.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::kind::CancelReason;

mod public;
pub use public::PublicError;

/// What custodian was doing when an error happened.
///
/// ```
/// use tokio_custodian::Operation;
/// assert_eq!(Operation::CreateTempFile.to_string(), "create temp file");
/// assert_eq!(Operation::Spawn.to_string(), "spawn");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Operation {
    /// Creating the supervisor's private temp root.
    CreateTempRoot,
    /// Removing the supervisor's private temp root at shutdown.
    RemoveTempRoot,
    /// Opening (or creating) a managed file.
    OpenFile,
    /// Creating a managed temp file.
    CreateTempFile,
    /// Creating a managed temp dir.
    CreateTempDir,
    /// Removing a managed temp file.
    RemoveTempFile,
    /// Removing a managed temp dir.
    RemoveTempDir,
    /// Moving a temp file or dir out of the temp root.
    Persist,
    /// Closing a managed file.
    CloseFile,
    /// Querying or syncing a managed file.
    FileIo,
    /// Starting a scope.
    EnterScope,
    /// Registering a resource of another crate (such as an audio decoder).
    Register,
    /// Starting a managed child process.
    Spawn,
    /// Stopping or reaping a managed child process.
    StopChild,
    /// Decoding audio.
    Decode,
    /// Any other clean-up.
    Cleanup,
    /// Spawning a task in a scope.
    SpawnTask,
    /// Registering a shutdown hook.
    RegisterHook,
    /// Installing signal handlers.
    InstallSignalHandlers,
    /// Creating or writing the temp file of an atomic write.
    AtomicWrite,
    /// Committing an atomic write (fsync, rename or link, directory fsync).
    AtomicCommit,
    /// Opening or locking a file lock.
    Lock,
    /// Opening or creating the crash journal in the state dir.
    OpenJournal,
    /// Sweeping a state dir for what dead owners left.
    Sweep,
    /// Making the process a child subreaper (`Builder::child_subreaper`).
    ChildSubreaper,
    /// Sweeping a directory of its old entries ([`AgeSweep`](crate::AgeSweep)).
    AgeSweep,
    /// Setting up the containment tier (`Builder::containment`).
    Containment,
    /// Talking to the service manager (`Builder::systemd_notify`).
    Notify,
    /// Binding the inspect socket (`Builder::inspect`).
    Inspect,
    /// Starting the watcher (`Builder::watcher`).
    Watcher,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Operation::CreateTempRoot => "create temp root",
            Operation::RemoveTempRoot => "remove temp root",
            Operation::OpenFile => "open file",
            Operation::CreateTempFile => "create temp file",
            Operation::CreateTempDir => "create temp dir",
            Operation::RemoveTempFile => "remove temp file",
            Operation::RemoveTempDir => "remove temp dir",
            Operation::Persist => "persist",
            Operation::CloseFile => "close file",
            Operation::FileIo => "file i/o",
            Operation::EnterScope => "enter scope",
            Operation::Register => "register resource",
            Operation::Spawn => "spawn",
            Operation::StopChild => "stop child",
            Operation::Decode => "decode",
            Operation::Cleanup => "clean up",
            Operation::SpawnTask => "spawn task",
            Operation::RegisterHook => "register shutdown hook",
            Operation::InstallSignalHandlers => "install signal handlers",
            Operation::AtomicWrite => "atomic write",
            Operation::AtomicCommit => "atomic commit",
            Operation::Lock => "lock file",
            Operation::OpenJournal => "open crash journal",
            Operation::Sweep => "sweep state dir",
            Operation::ChildSubreaper => "become child subreaper",
            Operation::AgeSweep => "age sweep",
            Operation::Containment => "set up containment",
            Operation::Notify => "notify the service manager",
            Operation::Inspect => "bind the inspect socket",
            Operation::Watcher => "start the watcher",
        })
    }
}

/// Errors returned by custodian.
///
/// Every variant names the operation and the path or resource it concerned. I/O failures
/// keep the original [`io::Error`] as their [`source`](std::error::Error::source), so
/// [`Error::io_kind`] tells `NotFound` from `PermissionDenied` from `StorageFull`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
/// use tokio_custodian::{Error, Operation};
/// let sup = tokio_custodian::Supervisor::builder().start()?;
/// let err = sup.open("/no/such/file").await.unwrap_err();
/// assert!(matches!(err, Error::Io { op: Operation::OpenFile, .. }));
/// assert_eq!(err.to_string(), "open file /no/such/file: No such file or directory (os error 2)");
/// assert_eq!(err.io_kind(), Some(std::io::ErrorKind::NotFound));
/// # sup.shutdown().await; Ok(()) }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system call failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: Operation,
        /// The path it was done to.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The supervisor is shutting down (or has shut down) and takes no new resources.
    #[error("{op}: the supervisor is shutting down")]
    ShuttingDown {
        /// What was refused.
        op: Operation,
    },
    /// The supervisor is draining (the first phase of a shutdown with
    /// [`Builder::drain`](crate::Builder::drain)): scopes already running keep acquiring
    /// until they end, but new top-level scopes, and new resources and tasks of the root
    /// scope, are refused. A service answers it like [`Error::ShuttingDown`] (503: try
    /// another instance); it was never started, so it is safe to retry elsewhere.
    #[error("{op}: the supervisor is draining and takes no new work")]
    Draining {
        /// What was refused.
        op: Operation,
    },
    /// A [`Quota`](crate::Quota) had no room: a fail-fast acquisition (a spawn, a
    /// registration, [`TempBuilder::no_wait`](crate::TempBuilder::no_wait)) was
    /// refused instead of waiting. [`io_kind`](Error::io_kind) is
    /// [`io::ErrorKind::QuotaExceeded`]. Nothing was kept: what was created is released.
    #[error("{op}: quota {quota} exceeded")]
    QuotaExceeded {
        /// What was refused.
        op: Operation,
        /// The quota that had no room.
        quota: crate::quota::Quota,
    },
    /// The scope has already ended; resources can no longer be added to it.
    #[error("{op}: scope `{scope}` has ended")]
    ScopeClosed {
        /// What was refused.
        op: Operation,
        /// The scope's name.
        scope: String,
    },
    /// The scope was cancelled and its body did not finish within the grace period.
    #[error("scope `{scope}` was cancelled ({reason})")]
    Cancelled {
        /// The scope's name.
        scope: String,
        /// Why it was cancelled.
        reason: CancelReason,
    },
    /// The supervisor's temp root no longer is the directory custodian created (it was
    /// renamed away or replaced, for example by a symlink); custodian refuses to use it.
    #[error("{op} {}: the temp root was replaced; refusing to follow it", path.display())]
    TempRootReplaced {
        /// What was refused.
        op: Operation,
        /// The temp root's path.
        path: PathBuf,
    },
    /// The call needs a Tokio runtime and was made outside one.
    #[error("{op}: must be called from within a Tokio runtime")]
    NoRuntime {
        /// What was refused.
        op: Operation,
    },
    /// The clean-up of a resource without a path (a child process, a decoder, a resource
    /// of another crate) failed. `resource` names it: its label and id.
    #[error("{op} {resource}: {source}")]
    ResourceIo {
        /// What was being done.
        op: Operation,
        /// The resource: its label and id, such as `child \`sox\` #12`.
        resource: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A clean-up panicked. The resource was released (custodian no longer tracks it);
    /// what the clean-up did before the panic is unknown.
    #[error("{op} {resource}: the clean-up panicked: {message}")]
    CleanupPanicked {
        /// What was being done.
        op: Operation,
        /// The resource: its path, or its label and id.
        resource: String,
        /// The panic's message.
        message: String,
    },
    /// A child process was refused before it started because the supervisor is shutting
    /// down or draining. It names the program; `reason` is the refusal itself
    /// ([`Error::ShuttingDown`] or [`Error::Draining`], with [`Operation::Spawn`]), and
    /// [`is_cancellation`](Error::is_cancellation) is true.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// use tokio_custodian::Error;
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// sup.shutdown().await;
    /// let err = sup.command("sox").arg("in.wav").spawn().unwrap_err();
    /// assert_eq!(err.to_string(), "spawn `sox`: the supervisor is shutting down");
    /// assert!(matches!(&err, Error::SpawnRefused { reason, .. }
    ///     if matches!(**reason, Error::ShuttingDown { .. })));
    /// assert!(err.is_cancellation());
    /// assert_eq!(err.path(), Some(std::path::Path::new("sox")));
    /// # Ok(()) }
    /// ```
    #[error("spawn `{}`: {}", program.display(), refusal(reason))]
    SpawnRefused {
        /// The program that was not started.
        program: PathBuf,
        /// Why: [`Error::ShuttingDown`] or [`Error::Draining`].
        #[source]
        reason: Box<Error>,
    },
    /// A resource-specific failure (for example a malformed audio file), named by path.
    #[error("{op} {}: {message}", path.display())]
    Resource {
        /// What was being done.
        op: Operation,
        /// The path or label of the resource.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

impl Error {
    pub(crate) fn io(op: Operation, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// The operation that failed.
    ///
    /// ```
    /// # use tokio_custodian::{Error, Operation};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Error> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let err = sup.open("/no/such/file").await.unwrap_err();
    /// assert_eq!(err.operation(), Operation::OpenFile);
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn operation(&self) -> Operation {
        match self {
            Error::Io { op, .. }
            | Error::ShuttingDown { op }
            | Error::Draining { op }
            | Error::QuotaExceeded { op, .. }
            | Error::NoRuntime { op }
            | Error::ScopeClosed { op, .. }
            | Error::TempRootReplaced { op, .. }
            | Error::ResourceIo { op, .. }
            | Error::CleanupPanicked { op, .. }
            | Error::Resource { op, .. } => *op,
            Error::Cancelled { .. } => Operation::EnterScope,
            Error::SpawnRefused { .. } => Operation::Spawn,
        }
    }

    /// The path the error concerns, when there is one.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tokio_custodian::Error> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let err = sup.open("/no/such/file").await.unwrap_err();
    /// assert_eq!(err.path(), Some(std::path::Path::new("/no/such/file")));
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn path(&self) -> Option<&Path> {
        match self {
            Error::Io { path, .. }
            | Error::TempRootReplaced { path, .. }
            | Error::Resource { path, .. } => Some(path),
            Error::SpawnRefused { program, .. } => Some(program),
            _ => None,
        }
    }

    /// The kind of the underlying I/O error, if this is one (`QuotaExceeded` for
    /// [`Error::QuotaExceeded`]).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tokio_custodian::Error> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let err = sup.open("/no/such/file").await.unwrap_err();
    /// assert_eq!(err.io_kind(), Some(std::io::ErrorKind::NotFound));
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            Error::Io { source, .. } | Error::ResourceIo { source, .. } => Some(source.kind()),
            Error::QuotaExceeded { .. } => Some(io::ErrorKind::QuotaExceeded),
            _ => None,
        }
    }

    /// Whether this error means the work was cancelled or refused because of shutdown.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let sup = tokio_custodian::Supervisor::builder().start().unwrap();
    /// sup.shutdown().await;
    /// assert!(sup.temp_file().await.unwrap_err().is_cancellation());
    /// # }
    /// ```
    pub fn is_cancellation(&self) -> bool {
        match self {
            Error::SpawnRefused { reason, .. } => reason.is_cancellation(),
            e => matches!(
                e,
                Error::Cancelled { .. }
                    | Error::ShuttingDown { .. }
                    | Error::Draining { .. }
                    | Error::ScopeClosed { .. }
            ),
        }
    }

    /// Names `program` in a refusal that names only the operation (shutting down,
    /// draining); other errors are returned as they are.
    pub(crate) fn naming_program(self, program: &Path) -> Error {
        match self {
            Error::ShuttingDown { .. } | Error::Draining { .. } => Error::SpawnRefused {
                program: program.to_path_buf(),
                reason: Box::new(self),
            },
            e => e,
        }
    }
}

/// A refusal's words without its operation (the variant's own message says `spawn`).
fn refusal(e: &Error) -> String {
    match e {
        Error::ShuttingDown { .. } => "the supervisor is shutting down".to_owned(),
        Error::Draining { .. } => "the supervisor is draining and takes no new work".to_owned(),
        e => e.to_string(),
    }
}

impl From<Error> for io::Error {
    /// For handlers that return `io::Result`: the kind is [`Error::io_kind`] (`Other` for
    /// errors that are not about I/O: shutting down, cancelled...), the message is the
    /// error's own (operation and path included), and the [`Error`] itself is the inner
    /// error (`get_ref()`, `into_inner()` give it back).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
    /// async fn handler(sup: &tokio_custodian::Supervisor) -> std::io::Result<()> {
    ///     let _f = sup.open("/no/such/file").await?; // tokio_custodian::Error -> io::Error
    ///     Ok(())
    /// }
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let err = handler(&sup).await.unwrap_err();
    /// assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    /// assert!(err.to_string().starts_with("open file /no/such/file: "));
    /// let inner = err.into_inner().unwrap().downcast::<tokio_custodian::Error>().unwrap();
    /// assert_eq!(inner.operation(), tokio_custodian::Operation::OpenFile);
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    fn from(e: Error) -> Self {
        io::Error::new(e.io_kind().unwrap_or(io::ErrorKind::Other), e)
    }
}

/// The result type of custodian.
///
/// As a scope body's value, `Ok(..)` alone leaves the error type unknown (E0282):
/// [`Supervisor::try_scope`](crate::Supervisor::try_scope) pins it, or write
/// `Ok::<_, tokio_custodian::Error>(..)`.
///
/// ```
/// fn half(n: u32) -> tokio_custodian::Result<u32> {
///     Ok(n / 2)
/// }
/// assert_eq!(half(4).unwrap(), 2);
/// ```
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The message of a caught panic, if it was a string.
pub(crate) fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic".to_owned())
}
