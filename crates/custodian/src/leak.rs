//! Snapshots of live resources and records of leaked ones, for people and for machines.

use std::borrow::Cow;
use std::fmt;
use std::panic::Location;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::id::ResourceId;
use crate::kind::{ReleasePath, ResourceKind};
use crate::label::Label;

/// Where a resource was acquired: the caller of the acquiring function
/// (`#[track_caller]`). The file borrows the compiler's `&'static` string (no copy per
/// record); one read back from JSON owns its text.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
/// let sup = tokio_custodian::Supervisor::builder().start()?;
/// let t = sup.temp_file().await?; let line = line!();
/// let live = sup.live();
/// let site = live[0].site();
/// assert_eq!(site.line, line);
/// assert!(site.file.ends_with(".rs"));
/// assert!(site.to_string().contains(&format!(":{line}:")));
/// # drop(t); sup.shutdown().await; Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Site {
    /// Source file.
    pub file: Cow<'static, str>,
    /// Line, starting at 1.
    pub line: u32,
    /// Column, starting at 1.
    pub column: u32,
}

impl From<&'static Location<'static>> for Site {
    fn from(l: &'static Location<'static>) -> Self {
        Site {
            file: Cow::Borrowed(l.file()),
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

/// What a [`LiveResource`] reads: made once per resource listed, never copied after;
/// the records of one listing or one shutdown share one allocation.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Record {
    id: ResourceId,
    kind: ResourceKind,
    label: Label,
    #[serde(with = "shared_str")]
    scope: Arc<str>,
    site: Site,
    #[serde(with = "duration_ms", rename = "age_ms", alias = "age")]
    age: Duration,
    path: Option<PathBuf>,
}

/// A live resource, as listed by [`Supervisor::live`](crate::Supervisor::live): an
/// `lsof` for managed resources.
///
/// Shared, not owned: a clone is a reference count, so the shutdown report hands every
/// caller the same records, and a leftover of shutdown is one record whether it is
/// listed as alive at shutdown or as a leak. The records of one listing (or one
/// shutdown) share one allocation: one kept keeps them all. Formatting (`Display`,
/// JSON) happens when it is printed, not when it is made.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
/// let sup = tokio_custodian::Supervisor::builder().start()?;
/// let t = sup.temp().label("upload").file().await?;
/// let live = sup.live();
/// assert_eq!((live[0].kind(), live[0].label()), (tokio_custodian::ResourceKind::TempFile, "upload"));
/// assert_eq!((live[0].id(), live[0].scope()), (t.id(), "root"));
/// assert_eq!(live[0].path(), Some(t.path()));
/// assert!(live[0].age() < std::time::Duration::from_secs(60));
/// assert!(live[0].to_string().contains("temp_file `upload` in scope `root`"));
/// let json = serde_json::to_value(&live[0]).unwrap();
/// assert!(json["age_ms"].is_f64());
/// assert_eq!(json["label"], "upload");
/// # drop(t); sup.shutdown().await; Ok(()) }
/// ```
#[derive(Clone)]
pub struct LiveResource {
    // `Vec`s, not slices: made into a block without copying the records again; more
    // than one when a shutdown released its leftovers in chunks on several threads.
    block: Arc<Vec<Vec<Record>>>,
    // The record's chunk and its index in it: `u32`s, so that the handle stays two
    // words (4 Gi chunks or records in one would take hundreds of GB of records).
    chunk: u32,
    at: u32,
}

impl Record {
    /// A record of a resource: `label` and `path` are moved in, `scope` shared.
    pub(crate) fn new(
        id: ResourceId,
        kind: ResourceKind,
        label: Label,
        scope: Arc<str>,
        site: &'static Location<'static>,
        age: Duration,
        path: Option<PathBuf>,
    ) -> Record {
        Record {
            id,
            kind,
            label,
            scope,
            site: site.into(),
            age,
            path,
        }
    }

    pub(crate) fn id(&self) -> ResourceId {
        self.id
    }

    pub(crate) fn kind(&self) -> ResourceKind {
        self.kind
    }

    pub(crate) fn label(&self) -> &str {
        &self.label
    }

    pub(crate) fn site(&self) -> &Site {
        &self.site
    }

    pub(crate) fn age(&self) -> Duration {
        self.age
    }

    pub(crate) fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }
}

impl LiveResource {
    /// `record` on its own.
    pub(crate) fn one(record: Record) -> LiveResource {
        LiveResource {
            block: Arc::new(vec![vec![record]]),
            chunk: 0,
            at: 0,
        }
    }

    /// Every record of a listing, in one allocation that they share (a shutdown with
    /// 10k leftovers makes one, not 10k).
    pub(crate) fn all(records: Vec<Record>) -> Vec<LiveResource> {
        LiveResource::all_chunks(vec![records])
    }

    /// The records of `chunks`, in order, sharing one block (a shutdown's chunks
    /// released on several threads: none is copied into another).
    pub(crate) fn all_chunks(chunks: Vec<Vec<Record>>) -> Vec<LiveResource> {
        let block = Arc::new(chunks);
        let mut all = Vec::with_capacity(block.iter().map(Vec::len).sum());
        for (chunk, records) in (0..).zip(block.iter()) {
            all.extend((0..).zip(records).map(|(at, _)| LiveResource {
                block: block.clone(),
                chunk,
                at,
            }));
        }
        all
    }

    fn record(&self) -> &Record {
        &self.block[self.chunk as usize][self.at as usize]
    }

    /// Its id.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let t = sup.temp_file().await?;
    /// assert_eq!(sup.live()[0].id(), t.id());
    /// # drop(t); sup.shutdown().await; Ok(()) }
    /// ```
    pub fn id(&self) -> ResourceId {
        self.record().id
    }

    /// Its kind.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let t = sup.temp_dir().await?;
    /// assert_eq!(sup.live()[0].kind(), tokio_custodian::ResourceKind::TempDir);
    /// # drop(t); sup.shutdown().await; Ok(()) }
    /// ```
    pub fn kind(&self) -> ResourceKind {
        self.record().kind
    }

    /// Its label.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let t = sup.temp().label("cache").file().await?;
    /// assert_eq!(sup.live()[0].label(), "cache");
    /// # drop(t); sup.shutdown().await; Ok(()) }
    /// ```
    pub fn label(&self) -> &str {
        &self.record().label
    }

    /// The name of the scope that owns it (owned it, in a [`LeakRecord`]).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let t = sup.temp_file().await?;
    /// assert_eq!(sup.live()[0].scope(), "root");
    /// # drop(t); sup.shutdown().await; Ok(()) }
    /// ```
    pub fn scope(&self) -> &str {
        &self.record().scope
    }

    /// Where it was acquired.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let t = sup.temp_file().await?; let line = line!();
    /// assert_eq!(sup.live()[0].site().line, line);
    /// # drop(t); sup.shutdown().await; Ok(()) }
    /// ```
    pub fn site(&self) -> &Site {
        &self.record().site
    }

    /// How long it had been alive when this record was made (JSON: `age_ms`).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let t = sup.temp_file().await?;
    /// assert!(sup.live()[0].age() < std::time::Duration::from_secs(60));
    /// # drop(t); sup.shutdown().await; Ok(()) }
    /// ```
    pub fn age(&self) -> Duration {
        self.record().age
    }

    /// Its path, for files, temp files and temp dirs.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let t = sup.temp_file().await?;
    /// assert_eq!(sup.live()[0].path(), Some(t.path()));
    /// # drop(t); sup.shutdown().await; Ok(()) }
    /// ```
    pub fn path(&self) -> Option<&Path> {
        self.record().path.as_deref()
    }
}

impl PartialEq for LiveResource {
    fn eq(&self, other: &Self) -> bool {
        self.record() == other.record()
    }
}

impl Eq for LiveResource {}

impl fmt::Debug for LiveResource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.record().fmt(f)
    }
}

impl Serialize for LiveResource {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.record().serialize(s)
    }
}

impl<'de> Deserialize<'de> for LiveResource {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Record::deserialize(d).map(LiveResource::one)
    }
}

impl fmt::Display for LiveResource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.record();
        write!(
            f,
            "{} {} `{}` in scope `{}`, age {:.3?}, acquired at {}",
            r.id, r.kind, r.label, r.scope, r.age, r.site
        )?;
        if let Some(p) = &r.path {
            write!(f, " ({})", p.display())?;
        }
        Ok(())
    }
}

/// A resource that was released without its guard: the guard escaped its scope or was
/// forgotten (`mem::forget`), or it was still alive at shutdown.
///
/// It reads as the [`LiveResource`] it was when reclaimed (`Deref`: `label()`,
/// `scope()`, `site()`, `age()` at the release, `path()`), with the path that reclaimed
/// it; a leftover of shutdown shares that record with the report's
/// [`alive_at_shutdown`](crate::ShutdownReport::alive_at_shutdown).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
/// use tokio_custodian::ReleasePath;
/// let sup = tokio_custodian::Supervisor::builder().start()?;
/// sup.scope("job", async |s| std::mem::forget(s.temp_file().await)).await?;
/// let report = sup.shutdown().await;
/// let leak = &report.leaks[0];
/// assert_eq!((leak.scope(), leak.released_by()), ("job", ReleasePath::ScopeEnd));
/// assert!(leak.to_string().contains("reclaimed at the end of its scope (scope_end)"));
/// let json = serde_json::to_value(leak).unwrap();
/// assert_eq!((json["scope"].as_str(), json["released_by"].as_str()), (Some("job"), Some("scope_end")));
/// # Ok(()) }
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LeakRecord {
    #[serde(flatten)]
    resource: LiveResource,
    released_by: ReleasePath,
}

impl LeakRecord {
    pub(crate) fn new(resource: LiveResource, released_by: ReleasePath) -> LeakRecord {
        LeakRecord {
            resource,
            released_by,
        }
    }

    /// The path that reclaimed it ([`ReleasePath::ScopeEnd`] or [`ReleasePath::Shutdown`]).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// std::mem::forget(sup.temp_file().await?);
    /// let report = sup.shutdown().await;
    /// assert_eq!(report.leaks[0].released_by(), tokio_custodian::ReleasePath::Shutdown);
    /// # Ok(()) }
    /// ```
    pub fn released_by(&self) -> ReleasePath {
        self.released_by
    }

    /// The resource as it was when reclaimed (the same record as the report's
    /// `alive_at_shutdown` entry for a leftover of shutdown).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// std::mem::forget(sup.temp_file().await?);
    /// let report = sup.shutdown().await;
    /// assert_eq!(report.leaks[0].resource(), &report.alive_at_shutdown[0]);
    /// # Ok(()) }
    /// ```
    pub fn resource(&self) -> &LiveResource {
        &self.resource
    }
}

impl std::ops::Deref for LeakRecord {
    type Target = LiveResource;

    fn deref(&self) -> &LiveResource {
        &self.resource
    }
}

impl fmt::Debug for LeakRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeakRecord")
            .field("resource", &self.resource)
            .field("released_by", &self.released_by)
            .finish()
    }
}

impl fmt::Display for LeakRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let by = match self.released_by {
            ReleasePath::ScopeEnd => "at the end of its scope",
            ReleasePath::Shutdown => "by shutdown",
            _ => "by its scope",
        };
        let r = self.resource.record();
        write!(
            f,
            "{} {} `{}` leaked from scope `{}` after {:.3?}, acquired at {}, reclaimed {by} ({})",
            r.id, r.kind, r.label, r.scope, r.age, r.site, self.released_by
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

mod shared_str {
    //! An `Arc<str>` as a plain JSON string (serde's `rc` feature is not on).
    use serde::{Deserialize, Deserializer, Serializer};
    use std::sync::Arc;

    pub(super) fn serialize<S: Serializer>(v: &Arc<str>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Arc<str>, D::Error> {
        String::deserialize(d).map(Arc::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_in_chunks_read_back_in_order_without_a_copy() {
        let rec = |n: u64| {
            let label: Label = format!("r{n}").into();
            Record::new(
                ResourceId::new(n),
                ResourceKind::TempFile,
                label,
                Arc::from("root"),
                Location::caller(),
                Duration::ZERO,
                None,
            )
        };
        let chunks = vec![
            vec![rec(9), rec(8)],
            vec![],
            vec![rec(7)],
            vec![rec(6), rec(5)],
        ];
        let all = LiveResource::all_chunks(chunks);
        let ids: Vec<u64> = all.iter().map(|r| r.id().get()).collect();
        assert_eq!(ids, [9, 8, 7, 6, 5]);
        assert_eq!(all[2].label(), "r7");
        // One block for all: a clone is a reference count.
        assert!(all.iter().all(|r| Arc::ptr_eq(&r.block, &all[0].block)));
        assert_eq!(all[4], all[4].clone());
    }
}
