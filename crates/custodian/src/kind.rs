//! Typed vocabulary shared by the registry, stats and reports.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The kind of a managed resource.
///
/// ```
/// use tokio_custodian::ResourceKind;
/// assert_eq!(ResourceKind::TempDir.to_string(), "temp_dir");
/// assert_eq!(serde_json::to_string(&ResourceKind::AudioDecoder).unwrap(), r#""audio_decoder""#);
/// assert_eq!(ResourceKind::ALL.len(), 6);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ResourceKind {
    /// A file opened through custodian ([`ManagedFile`](crate::ManagedFile)).
    File,
    /// A temp file inside the private temp root ([`TempFile`](crate::TempFile)).
    ///
    /// At shutdown, long runs of leftovers of this kind are released on several threads,
    /// in no order among themselves: register an extension resource under it only if
    /// its release does not depend on the others' order (see `docs/shutdown.md`).
    TempFile,
    /// A temp dir inside the private temp root ([`TempDir`](crate::TempDir)).
    TempDir,
    /// A child process.
    Child,
    /// An audio decoder (see the `tokio-custodian-audio` crate).
    AudioDecoder,
    /// A file lock.
    Lock,
}

impl ResourceKind {
    /// Every kind, in a fixed order.
    pub const ALL: [ResourceKind; 6] = [
        ResourceKind::File,
        ResourceKind::TempFile,
        ResourceKind::TempDir,
        ResourceKind::Child,
        ResourceKind::AudioDecoder,
        ResourceKind::Lock,
    ];

    pub(crate) const COUNT: usize = Self::ALL.len();

    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// A short lower-case name, as used in reports and tracing fields.
    ///
    /// ```
    /// assert_eq!(tokio_custodian::ResourceKind::TempFile.as_str(), "temp_file");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::File => "file",
            ResourceKind::TempFile => "temp_file",
            ResourceKind::TempDir => "temp_dir",
            ResourceKind::Child => "child",
            ResourceKind::AudioDecoder => "audio_decoder",
            ResourceKind::Lock => "lock",
        }
    }
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The path by which a resource was released. Every resource is released exactly once,
/// by exactly one of these.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
/// use tokio_custodian::{ReleasePath, ResourceKind};
/// let sup = tokio_custodian::Supervisor::builder().start()?;
/// drop(sup.temp_file().await?);
/// sup.temp_file().await?.close().await?;
/// let stats = sup.stats().kind(ResourceKind::TempFile);
/// assert_eq!((stats.released(ReleasePath::Drop), stats.released(ReleasePath::Close)), (1, 1));
/// assert_eq!(ReleasePath::ScopeEnd.to_string(), "scope_end"); // as reports print it
/// # sup.shutdown().await; Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ReleasePath {
    /// An explicit `close().await` on the guard.
    Close,
    /// The guard was dropped.
    Drop,
    /// The guard was dropped while its thread was unwinding from a panic.
    Panic,
    /// The guard was dropped after its scope had been cancelled (including a scope future
    /// that was dropped, or a task that was aborted).
    Cancelled,
    /// The scope ended while the resource was still registered: its guard had escaped
    /// the scope or was forgotten. Counted as a leak.
    ScopeEnd,
    /// Released by [`Supervisor::shutdown`](crate::Supervisor::shutdown) while still
    /// registered. Counted as a leak.
    Shutdown,
    /// The guard gave the resource up explicitly (`keep`, `persist`, `into_inner`):
    /// custodian no longer owns it.
    Detached,
}

impl ReleasePath {
    /// Every release path, in a fixed order.
    pub const ALL: [ReleasePath; 7] = [
        ReleasePath::Close,
        ReleasePath::Drop,
        ReleasePath::Panic,
        ReleasePath::Cancelled,
        ReleasePath::ScopeEnd,
        ReleasePath::Shutdown,
        ReleasePath::Detached,
    ];

    pub(crate) const COUNT: usize = Self::ALL.len();

    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// Whether this path means the guard never released the resource itself.
    ///
    /// ```
    /// use tokio_custodian::ReleasePath;
    /// assert!(ReleasePath::ScopeEnd.is_leak());
    /// assert!(!ReleasePath::Drop.is_leak());
    /// ```
    pub fn is_leak(self) -> bool {
        matches!(self, ReleasePath::ScopeEnd | ReleasePath::Shutdown)
    }

    /// A short lower-case name.
    ///
    /// ```
    /// assert_eq!(tokio_custodian::ReleasePath::ScopeEnd.as_str(), "scope_end");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            ReleasePath::Close => "close",
            ReleasePath::Drop => "drop",
            ReleasePath::Panic => "panic",
            ReleasePath::Cancelled => "cancelled",
            ReleasePath::ScopeEnd => "scope_end",
            ReleasePath::Shutdown => "shutdown",
            ReleasePath::Detached => "detached",
        }
    }
}

impl fmt::Display for ReleasePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a scope was cancelled.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
/// use tokio_custodian::CancelReason;
/// let sup = tokio_custodian::Supervisor::builder().start()?;
/// let reason = sup
///     .scope("job", async |s| {
///         s.cancel();
///         s.cancel_reason()
///     })
///     .await?;
/// assert_eq!(reason, Some(CancelReason::Requested));
/// assert_eq!(CancelReason::Deadline.to_string(), "shutdown grace period over");
/// # sup.shutdown().await; Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CancelReason {
    /// [`Scope::cancel`](crate::Scope::cancel) was called on it or on an ancestor.
    Requested,
    /// The scope's future was dropped before the body finished.
    Dropped,
    /// The supervisor is shutting down gracefully.
    Shutdown,
    /// The supervisor's shutdown was forced ([`Supervisor::force`](crate::Supervisor::force),
    /// [`Supervisor::shutdown_now`](crate::Supervisor::shutdown_now), or a second
    /// SIGINT/SIGTERM): nothing is waited for.
    ForcedShutdown,
    /// A graceful shutdown's grace period ran out: what is still running is cut off.
    Deadline,
}

impl CancelReason {
    /// Whether the reason is one of the supervisor's shutdown reasons.
    ///
    /// ```
    /// use tokio_custodian::CancelReason;
    /// assert!(CancelReason::ForcedShutdown.is_shutdown());
    /// assert!(!CancelReason::Requested.is_shutdown());
    /// ```
    pub fn is_shutdown(self) -> bool {
        matches!(
            self,
            CancelReason::Shutdown | CancelReason::ForcedShutdown | CancelReason::Deadline
        )
    }
}

impl fmt::Display for CancelReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CancelReason::Requested => "cancel requested",
            CancelReason::Dropped => "scope future dropped",
            CancelReason::Shutdown => "supervisor shutting down",
            CancelReason::ForcedShutdown => "supervisor shutdown forced",
            CancelReason::Deadline => "shutdown grace period over",
        })
    }
}
