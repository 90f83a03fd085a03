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
