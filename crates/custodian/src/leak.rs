//! Snapshots of live resources and records of leaked ones, for people and for machines.

use std::fmt;
use std::panic::Location;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::id::ResourceId;
use crate::kind::{ReleasePath, ResourceKind};

/// Where a resource was acquired: the caller of the acquiring function
/// (`#[track_caller]`).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
/// let sup = tokio_custodian::Supervisor::builder().start()?;
/// let t = sup.temp_file().await?; let line = line!();
/// let site = &sup.live()[0].site;
/// assert_eq!(site.line, line);
/// assert!(site.to_string().contains(&format!(":{line}:")));
/// # drop(t); sup.shutdown().await; Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Site {
    /// Source file.
    pub file: String,
    /// Line, starting at 1.
    pub line: u32,
    /// Column, starting at 1.
    pub column: u32,
}

impl From<&'static Location<'static>> for Site {
    fn from(l: &'static Location<'static>) -> Self {
        Site {
            file: l.file().to_owned(),
            line: l.line(),
            column: l.column(),
        }
    }
}

impl fmt::Display for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// A live resource, as listed by [`Supervisor::live`](crate::Supervisor::live): an
/// `lsof` for managed resources.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
/// let sup = tokio_custodian::Supervisor::builder().start()?;
/// let t = sup.temp().label("upload").file().await?;
/// let live = sup.live();
/// assert_eq!((live[0].kind, live[0].label.as_str()), (tokio_custodian::ResourceKind::TempFile, "upload"));
/// assert_eq!(live[0].path.as_deref(), Some(t.path()));
/// assert!(live[0].to_string().contains("temp_file `upload` in scope `root`"));
/// assert!(serde_json::to_value(&live[0]).unwrap()["age_ms"].is_f64());
/// # drop(t); sup.shutdown().await; Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LiveResource {
    /// Its id.
    pub id: ResourceId,
    /// Its kind.
    pub kind: ResourceKind,
    /// Its label.
    pub label: String,
    /// The name of the scope that owns it.
    pub scope: String,
    /// Where it was acquired.
    pub site: Site,
    /// How long it has been alive (JSON: `age_ms`).
    #[serde(with = "duration_ms", rename = "age_ms", alias = "age")]
    pub age: Duration,
    /// Its path, for files, temp files and temp dirs.
    pub path: Option<PathBuf>,
}

impl fmt::Display for LiveResource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} `{}` in scope `{}`, age {:.3?}, acquired at {}",
            self.id, self.kind, self.label, self.scope, self.age, self.site
        )?;
        if let Some(p) = &self.path {
            write!(f, " ({})", p.display())?;
        }
        Ok(())
    }
}

/// A resource that was released without its guard: the guard escaped its scope or was
/// forgotten (`mem::forget`), or it was still alive at shutdown.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
/// use tokio_custodian::ReleasePath;
/// let sup = tokio_custodian::Supervisor::builder().start()?;
/// sup.scope("job", async |s| std::mem::forget(s.temp_file().await)).await?;
/// let report = sup.shutdown().await;
/// let leak = &report.leaks[0];
/// assert_eq!((leak.scope.as_str(), leak.released_by), ("job", ReleasePath::ScopeEnd));
/// assert!(leak.to_string().contains("reclaimed at the end of its scope (scope_end)"));
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LeakRecord {
    /// Its id.
    pub id: ResourceId,
    /// Its kind.
    pub kind: ResourceKind,
    /// Its label.
    pub label: String,
    /// The scope that owned it.
    pub scope: String,
    /// Where it was acquired.
    pub site: Site,
    /// How long it had been alive when it was reclaimed (JSON: `age_ms`).
    #[serde(with = "duration_ms", rename = "age_ms", alias = "age")]
    pub age: Duration,
    /// Its path, if it had one.
    pub path: Option<PathBuf>,
    /// The path that reclaimed it ([`ReleasePath::ScopeEnd`] or [`ReleasePath::Shutdown`]).
    pub released_by: ReleasePath,
}

impl fmt::Display for LeakRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let by = match self.released_by {
            ReleasePath::ScopeEnd => "at the end of its scope",
            ReleasePath::Shutdown => "by shutdown",
            _ => "by its scope",
        };
        write!(
            f,
            "{} {} `{}` leaked from scope `{}` after {:.3?}, acquired at {}, reclaimed {by} ({})",
            self.id, self.kind, self.label, self.scope, self.age, self.site, self.released_by
        )
    }
}

/// A clean-up that failed.
///
/// ```
/// use tokio_custodian::{FailureRecord, Supervisor};
/// // What a clean-up that failed for good leaves in `Supervisor::failures()` and in the
/// // shutdown report; a fresh supervisor has none.
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
/// let sup = Supervisor::builder().start()?;
/// let failures: Vec<FailureRecord> = sup.failures();
/// assert!(failures.is_empty());
/// for f in &failures {
///     eprintln!("{f}"); // `#id kind `label`: error`
/// }
/// # sup.shutdown().await; Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FailureRecord {
    /// The resource's id.
    pub id: ResourceId,
    /// Its kind.
    pub kind: ResourceKind,
    /// Its label.
    pub label: String,
    /// Its path, if it had one.
    pub path: Option<PathBuf>,
    /// The error, as text.
    pub error: String,
}

impl fmt::Display for FailureRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} `{}`: {}",
            self.id, self.kind, self.label, self.error
        )
    }
}

/// A clean-up that failed with a transient error (out of fds or memory, `EINTR`,
/// `EAGAIN`, `EBUSY`) and is retried with backoff while the supervisor runs, as listed by
/// [`Supervisor::pending_cleanups`](crate::Supervisor::pending_cleanups). If it still fails
/// when shutdown stops waiting, it becomes a [`FailureRecord`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
/// let sup = tokio_custodian::Supervisor::builder().start()?;
/// // Clean-ups waiting for a retry (EMFILE, EBUSY...); none here.
/// for p in sup.pending_cleanups() {
///     eprintln!("{p}: {} attempts, {:?} failing", p.attempts, p.failing_for);
/// }
/// assert!(sup.pending_cleanups().is_empty());
/// # sup.shutdown().await; Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PendingCleanup {
    /// The resource's id.
    pub id: ResourceId,
    /// Its kind.
    pub kind: ResourceKind,
    /// Its label.
    pub label: String,
    /// Its path, if it had one.
    pub path: Option<PathBuf>,
    /// The last attempt's error, as text.
    pub error: String,
    /// The [`io::ErrorKind`](std::io::ErrorKind) of the last attempt's error, as text.
    pub error_kind: String,
    /// Attempts so far.
    pub attempts: u32,
    /// Since the first failure (JSON: `failing_for_ms`).
    #[serde(with = "duration_ms", rename = "failing_for_ms", alias = "failing_for")]
    pub failing_for: Duration,
}

impl fmt::Display for PendingCleanup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} `{}`: {} attempt(s) over {:.3?}, last: {}",
            self.id, self.kind, self.label, self.attempts, self.failing_for, self.error
        )?;
        if let Some(p) = &self.path {
            write!(f, " ({})", p.display())?;
        }
        Ok(())
    }
}

pub(crate) mod duration_ms {
    //! Durations as fractional milliseconds in JSON.
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64() * 1000.0)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let ms = f64::deserialize(d)?;
        // Saturating: a huge or negative value is not a reason to panic.
        Ok(Duration::try_from_secs_f64((ms / 1000.0).max(0.0)).unwrap_or(Duration::MAX))
    }
}
