//! What a leak check found: each leftover named so that a person can act on it.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::leak::{LiveResource, PendingCleanup};

/// What was left at [`LeakCheck::finish`](super::LeakCheck::finish) that was not there
/// at [`LeakCheck::start`](super::LeakCheck::start). `Display` for people (one line per
/// leftover), `Serialize` for tools.
///
/// ```standalone_crate
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let check = tokio_custodian::testing::LeakCheck::start();
/// let report = check.finish().await;
/// assert!(report.is_clean(), "{report}");
/// assert_eq!(serde_json::to_value(&report).unwrap()["fds"], serde_json::json!([]));
/// # }
/// ```
#[derive(Clone, Debug, Default, Serialize)]
#[non_exhaustive]
pub struct LeakReport {
    /// Fds open now that were not open (or pointed elsewhere) at the start.
    pub fds: Vec<LeakedFd>,
    /// Descendants of this process that were not there at the start, zombies included.
    pub processes: Vec<LeakedProcess>,
    /// New entries in the watched dirs and in every live supervisor's temp root (those
    /// of a live custodian resource are listed under `resources` instead).
    pub paths: Vec<LeakedPath>,
    /// Supervisors started since the start and not dropped yet, by temp root: each
    /// holds a few fds (its root, its base dir, fds reserved for retries), listed under
    /// `fds`, until its last handle is dropped, shut down or not.
    pub supervisors: Vec<PathBuf>,
    /// Custodian resources registered since the start and still live, every
    /// supervisor of the process included; held file locks are in `locks`.
    pub resources: Vec<LeakedResource>,
    /// [`FileLock`](crate::FileLock)s taken since the start and still held.
    pub locks: Vec<LeakedResource>,
    /// Clean-ups failing and being retried that were not at the start.
    pub pending_cleanups: Vec<PendingCleanup>,
    /// Background clean-ups still running when the wait ran out (more than at the start).
    pub cleanups_in_flight: usize,
    /// Scopes and scoped tasks still running (more than at the start).
    pub tasks_running: usize,
    /// How long `finish` waited for clean-ups in flight (JSON: `waited_ms`).
    #[serde(with = "crate::leak::duration_ms", rename = "waited_ms")]
    pub waited: Duration,
    /// Whether the check ran alone (`LeakCheck::exclusive`): only then are the
    /// process-wide findings (fds, processes, temp dir entries) surely this test's.
    pub exclusive: bool,
}

impl LeakReport {
    /// Whether nothing was left.
    ///
    /// ```standalone_crate
    /// assert!(tokio_custodian::testing::LeakReport::default().is_clean());
    /// ```
    pub fn is_clean(&self) -> bool {
        self.fds.is_empty()
            && self.supervisors.is_empty()
            && self.processes.is_empty()
            && self.paths.is_empty()
            && self.resources.is_empty()
            && self.locks.is_empty()
            && self.pending_cleanups.is_empty()
            && self.cleanups_in_flight == 0
            && self.tasks_running == 0
    }

    /// How many leftovers (in-flight counts count one each).
    ///
    /// ```standalone_crate
    /// assert_eq!(tokio_custodian::testing::LeakReport::default().len(), 0);
    /// ```
    pub fn len(&self) -> usize {
        self.fds.len()
            + self.supervisors.len()
            + self.processes.len()
            + self.paths.len()
            + self.resources.len()
            + self.locks.len()
            + self.pending_cleanups.len()
            + self.cleanups_in_flight
            + self.tasks_running
    }

    /// Whether nothing was left (same as [`is_clean`](Self::is_clean)).
    ///
    /// ```standalone_crate
    /// assert!(tokio_custodian::testing::LeakReport::default().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.is_clean()
    }
}

/// An fd left open. JSON: `{"fd": 7, "target": "/tmp/x"}`.
///
/// ```standalone_crate
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let check = tokio_custodian::testing::LeakCheck::builder().exclusive(true).start();
/// let f = std::fs::File::open("/dev/null").unwrap();
/// let report = check.finish().await;
/// assert!(report.fds.iter().any(|l| l.target == "/dev/null"), "{report}");
/// # drop(f); }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct LeakedFd {
    /// The fd number.
    pub fd: i32,
    /// What it points to (`/proc/self/fd/N`): a path, `socket:[inode]`, `pipe:[inode]`,
    /// `anon_inode:[eventfd]`...
    pub target: String,
}

/// A process left running (or a zombie left unreaped).
///
/// ```standalone_crate
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let check = tokio_custodian::testing::LeakCheck::builder().exclusive(true).start();
/// let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
/// let report = check.finish().await;
/// let p = report.processes.iter().find(|p| p.pid == child.id()).unwrap();
/// assert_eq!(p.cmdline, "sleep 30");
/// # child.kill().unwrap(); child.wait().unwrap(); }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct LeakedProcess {
    /// Its pid.
    pub pid: u32,
    /// Its parent's pid.
    pub ppid: u32,
    /// Its process group.
    pub pgid: u32,
    /// 1 for a child of this process, 2 for a grandchild...: an orphan adopted while
    /// the check held the child-subreaper setting is a child (1).
    pub depth: u32,
    /// Exited but not reaped.
    pub zombie: bool,
    /// Its command line (`[comm]` when unreadable, as for a zombie).
    pub cmdline: String,
}

/// A new entry in a watched directory or a supervisor's temp root.
///
/// ```standalone_crate
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let dir = std::env::temp_dir().join(format!("leak-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let check = tokio_custodian::testing::LeakCheck::builder().watch_dir(&dir).start();
/// std::fs::write(dir.join("left"), b"x").unwrap();
/// let report = check.finish().await;
/// assert!(report.paths.iter().any(|p| p.path.ends_with("left") && p.under == dir));
/// # std::fs::remove_dir_all(&dir).unwrap(); }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct LeakedPath {
    /// The entry.
    pub path: PathBuf,
    /// The dir it is in: a watched dir, or a supervisor's temp root.
    pub under: PathBuf,
    /// Whether it is a directory.
    pub is_dir: bool,
}

/// A custodian resource still live, with the supervisor that owns it.
///
/// ```standalone_crate
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
/// let sup = tokio_custodian::Supervisor::builder().start()?;
/// let check = tokio_custodian::testing::LeakCheck::builder().wait(std::time::Duration::ZERO).start();
/// let t = sup.temp_file().await?;
/// let report = check.finish().await;
/// assert_eq!(report.resources[0].resource.kind(), tokio_custodian::ResourceKind::TempFile);
/// assert_eq!(report.resources[0].supervisor, sup.temp_root());
/// # drop(t); sup.shutdown().await; Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct LeakedResource {
    /// The owning supervisor, by its temp root.
    pub supervisor: PathBuf,
    /// The resource: kind, label, scope, age, creation site, path.
    #[serde(flatten)]
    pub resource: LiveResource,
}

impl fmt::Display for LeakReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let alone = if self.exclusive {
            "exclusive"
        } else {
            "shared"
        };
        if self.is_clean() {
            return write!(f, "leak check ({alone}): clean");
        }
        writeln!(
            f,
            "leak check ({alone}): {} leftover(s) after waiting {:.3?} for clean-ups",
            self.len(),
            self.waited
        )?;
        for s in &self.supervisors {
            writeln!(
                f,
                "  supervisor alive (not dropped; its fds are below): {}",
                s.display()
            )?;
        }
        for l in &self.fds {
            writeln!(f, "  fd {} open: {}", l.fd, l.target)?;
        }
        for p in &self.processes {
            let what = match (p.depth, p.zombie) {
                (_, true) => "zombie".to_owned(),
                (1, _) => "child".to_owned(),
                (d, _) => format!("descendant (depth {d})"),
            };
            writeln!(
                f,
                "  process {} running ({what}, parent {}, group {}): {}",
                p.pid, p.ppid, p.pgid, p.cmdline
            )?;
        }
        for p in &self.paths {
            let what = if p.is_dir { "dir" } else { "entry" };
            writeln!(
                f,
                "  {what} left: {} (in {})",
                p.path.display(),
                p.under.display()
            )?;
        }
        for r in &self.resources {
            writeln!(f, "  resource live: {}", r.resource)?;
        }
        for r in &self.locks {
            writeln!(f, "  file lock held: {}", r.resource)?;
        }
        for p in &self.pending_cleanups {
            writeln!(f, "  clean-up failing: {p}")?;
        }
        if self.cleanups_in_flight > 0 {
            writeln!(f, "  clean-ups still running: {}", self.cleanups_in_flight)?;
        }
        if self.tasks_running > 0 {
            writeln!(
                f,
                "  scopes or scoped tasks still running: {}",
                self.tasks_running
            )?;
        }
        if !self.exclusive {
            write!(
                f,
                "  (shared mode: fds, processes and temp dir entries are process-wide; \
                 another test running at the same time may own them)"
            )?;
        }
        Ok(())
    }
}
