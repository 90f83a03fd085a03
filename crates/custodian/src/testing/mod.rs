//! A leak check for tests (`testing` feature): what a test body left behind, as one set.
//!
//! ```standalone_crate
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
//! use tokio_custodian::testing::LeakCheck;
//! let check = LeakCheck::start(); // a snapshot
//! let sup = tokio_custodian::Supervisor::builder().start()?;
//! drop(sup.temp_dir().await?); // its removal runs in the background...
//! sup.shutdown().await;
//! drop(sup); // a supervisor holds fds (its root, its base dir) until dropped
//! let report = check.finish().await; // ...and is waited for, not reported
//! assert!(report.is_clean(), "{report}");
//! # Ok(()) }
//! ```
//!
//! [`LeakCheck::start`] takes a snapshot; [`LeakCheck::finish`] takes another, waiting a
//! bounded time (2 s by default) for clean-ups in flight to end, and reports the
//! difference: fds (number and target), descendant processes (pid, command line), new
//! entries under the watched dirs (the process temp dir by default, same owner only) and
//! under every live supervisor's temp root, and every supervisor's new live resources,
//! held locks, failing clean-ups, clean-ups and scoped tasks still running.
//!
//! What is not a leak: whatever was open or running at `start`. The harness's fds are
//! all there by then: a runtime opens its epoll, eventfds and (with the signal driver,
//! as `#[tokio::test]` builds it) Tokio's process-wide signal pipe when it is built,
//! before the test body runs; libtest's threads and Tokio's workers and blocking pool
//! (which grows and shrinks during a test) hold no fds and are not processes. Only
//! what is new at `finish` (fd number *and* target compared) is reported.
//!
//! Escapees: while a check runs, the process is a child subreaper (held by a count,
//! restored after), so a `setsid` grandchild whose parent exits is re-parented to this
//! process by the kernel and shows up as a child: proof, not a guess by name. The cost:
//! such a grandchild that ends by itself during the check becomes a zombie of this
//! process (init would have reaped it), which the check reports and does not reap (it
//! cannot tell it from a child the test itself may still wait for).
//!
//! A supervisor started inside the check holds a few fds (its root, its base dir, fds
//! reserved for retries) until its last handle is dropped, shut down or not: drop it
//! before `finish`.
//!
//! Doctests and tests run in parallel threads of one process: see below.
//!
//! Parallel tests: fds, processes and temp dir entries belong to the whole process, so
//! with `--test-threads` > 1 another test's may show up. The process temp dir is also
//! shared with every other process of the same user on the machine: its entries from
//! elsewhere show up too (watch a dir of the test's own, and use
//! [`LeakCheckBuilder::no_temp_dir`], where that matters). Custodian resources carry their
//! creation site, so those can be told apart by file and line. For exact results, use
//! [`LeakCheck::exclusive`] in every checked test of the binary (checked tests then run
//! one at a time) or run with `--test-threads=1`.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

mod report;
mod snapshot;

pub use report::{LeakReport, LeakedFd, LeakedPath, LeakedProcess, LeakedResource};

use snapshot::{Snapshot, cmdline};

/// Checked tests that asked to run alone take this for their whole run.
static EXCLUSIVE: Mutex<()> = Mutex::new(());

/// The default bound on `finish`'s wait for clean-ups in flight.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(2);

/// A snapshot of what the process holds, to compare with at the end of a test.
///
/// ```standalone_crate
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let check = tokio_custodian::testing::LeakCheck::start();
/// let report = check.finish().await;
/// assert!(report.is_clean(), "{report}");
/// # }
/// ```
#[must_use = "a leak check reports only when finished"]
pub struct LeakCheck {
    before: Snapshot,
    watched: Vec<PathBuf>,
    wait: Duration,
    exclusive: bool,
    _alone: Option<MutexGuard<'static, ()>>,
    _subreaper: Option<crate::sys::subreaper::SubreaperHold>,
}

impl std::fmt::Debug for LeakCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeakCheck")
            .field("watched", &self.watched)
            .field("wait", &self.wait)
            .field("exclusive", &self.exclusive)
            .finish()
    }
}

/// Options of a [`LeakCheck`]; made by [`LeakCheck::builder`].
///
/// ```standalone_crate
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::time::Duration;
/// let check = tokio_custodian::testing::LeakCheck::builder()
///     .wait(Duration::from_millis(500))
///     .exclusive(true)
///     .start();
/// assert!(check.finish().await.is_clean());
/// # }
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `start`"]
pub struct LeakCheckBuilder {
    watched: Vec<PathBuf>,
    wait: Duration,
    exclusive: bool,
}

impl LeakCheckBuilder {
    /// How long `finish` waits at most for clean-ups in flight ([`DEFAULT_WAIT`]).
    ///
    /// ```standalone_crate
    /// let b = tokio_custodian::testing::LeakCheck::builder().wait(std::time::Duration::ZERO);
    /// ```
    pub fn wait(mut self, bound: Duration) -> Self {
        self.wait = bound;
        self
    }

    /// Also watch `dir` for new entries (the process temp dir is watched by default).
    ///
    /// ```standalone_crate
    /// let b = tokio_custodian::testing::LeakCheck::builder().watch_dir("/var/tmp");
    /// ```
    pub fn watch_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.watched.push(dir.into());
        self
    }

    /// Stop watching the process temp dir (`std::env::temp_dir()`), shared with every
    /// other process of the user.
    ///
    /// ```standalone_crate
    /// let b = tokio_custodian::testing::LeakCheck::builder().no_temp_dir();
    /// ```
    pub fn no_temp_dir(mut self) -> Self {
        let tmp = std::env::temp_dir();
        self.watched.retain(|d| *d != tmp);
        self
    }

    /// Run alone among the checked tests of this process: `start` waits until every
    /// other exclusive check has finished, and no other can start before this one
    /// finishes (its `LeakCheck` holds a process-wide lock; the type is then not
    /// `Send`). Exact when every checked test of the binary uses it.
    ///
    /// # Panics
    ///
    /// Never: a test that panicked while holding the lock does not poison it.
    ///
    /// ```standalone_crate
    /// let b = tokio_custodian::testing::LeakCheck::builder().exclusive(true);
    /// ```
    pub fn exclusive(mut self, on: bool) -> Self {
        self.exclusive = on;
        self
    }

    /// Takes the first snapshot.
    ///
    /// ```standalone_crate
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let check = tokio_custodian::testing::LeakCheck::builder().start();
    /// # assert!(check.finish().await.is_clean()); }
    /// ```
    pub fn start(self) -> LeakCheck {
        let alone = self
            .exclusive
            .then(|| EXCLUSIVE.lock().unwrap_or_else(PoisonError::into_inner));
        self.start_with(alone)
    }

    fn start_with(self, alone: Option<MutexGuard<'static, ()>>) -> LeakCheck {
        // Best effort: without it an escapee whose parent exits goes to init, unseen.
        let subreaper = crate::sys::subreaper::hold().ok();
        LeakCheck {
            before: Snapshot::take(&self.watched),
            watched: self.watched,
            wait: self.wait,
            exclusive: self.exclusive,
            _alone: alone,
            _subreaper: subreaper,
        }
    }
}

impl LeakCheckBuilder {
    /// The exact mode for tests run in parallel: runs `body` alone among exclusive
    /// checks *including its runtime's creation* (a `#[tokio::test]` builds its runtime
    /// before the body could take the lock, and a runtime opens fds). Takes the
    /// process-wide lock, builds a runtime from `runtime` (with every driver enabled),
    /// starts the check in it, runs `body`, finishes, drops the runtime, and returns
    /// the body's output with the report. Exact when every test of the binary that opens
    /// fds or starts processes runs through it (or is a check of its own).
    ///
    /// # Panics
    ///
    /// If the runtime cannot be built (out of fds or threads), or if `body` panics (the
    /// lock is released, not poisoned for the next test).
    ///
    /// ```standalone_crate
    /// use tokio_custodian::testing::LeakCheck;
    /// let rt = tokio::runtime::Builder::new_current_thread();
    /// let (n, report) = LeakCheck::builder().run(rt, async || {
    ///     let sup = tokio_custodian::Supervisor::builder().start().unwrap();
    ///     drop(sup.temp_file().await.unwrap());
    ///     sup.shutdown().await;
    ///     42
    /// });
    /// assert_eq!(n, 42);
    /// assert!(report.is_clean(), "{report}");
    /// ```
    pub fn run<T>(
        mut self,
        mut runtime: tokio::runtime::Builder,
        body: impl AsyncFnOnce() -> T,
    ) -> (T, LeakReport) {
        let alone = EXCLUSIVE.lock().unwrap_or_else(PoisonError::into_inner);
        self.exclusive = true;
        let rt = runtime
            .enable_all()
            .build()
            .expect("LeakCheck::run: building the runtime");
        let out = rt.block_on(async move {
            let check = self.start_with(None);
            let out = body().await;
            (out, check.finish().await)
        });
        drop(rt);
        drop(alone);
        out
    }
}

impl LeakCheck {
    /// A check with the defaults: the process temp dir watched, [`DEFAULT_WAIT`], shared.
    ///
    /// ```standalone_crate
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let check = tokio_custodian::testing::LeakCheck::start();
    /// # assert!(check.finish().await.is_clean()); }
    /// ```
    pub fn start() -> LeakCheck {
        LeakCheck::builder().start()
    }

    /// A check with the defaults that runs alone among exclusive checks (see
    /// [`LeakCheckBuilder::exclusive`]).
    ///
    /// ```standalone_crate
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let check = tokio_custodian::testing::LeakCheck::exclusive();
    /// assert!(check.finish().await.exclusive);
    /// # }
    /// ```
    pub fn exclusive() -> LeakCheck {
        LeakCheck::builder().exclusive(true).start()
    }

    /// The options, to change before [`LeakCheckBuilder::start`].
    ///
    /// ```standalone_crate
    /// let b = tokio_custodian::testing::LeakCheck::builder();
    /// ```
    pub fn builder() -> LeakCheckBuilder {
        LeakCheckBuilder {
            watched: vec![std::env::temp_dir()],
            wait: DEFAULT_WAIT,
            exclusive: false,
        }
    }

    /// Compares with the first snapshot, waiting up to the bound for what is still in
    /// flight to end (polled every 10 ms); what is still there then is reported.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only reads; dropping the future drops the check (and releases its
    /// exclusive lock and its hold of the child-subreaper setting).
    ///
    /// # Panics
    ///
    /// If called outside a Tokio runtime with a timer.
    ///
    /// ```standalone_crate
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let check = tokio_custodian::testing::LeakCheck::start();
    /// let report = check.finish().await;
    /// assert!(report.is_clean(), "{report}");
    /// # }
    /// ```
    pub async fn finish(self) -> LeakReport {
        let began = Instant::now();
        let deadline = began.checked_add(self.wait);
        loop {
            let mut report = self.compare(&Snapshot::take(&self.watched));
            let now = Instant::now();
            report.waited = now.duration_since(began);
            if report.is_clean() || deadline.is_some_and(|d| now >= d) {
                return report;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn compare(&self, now: &Snapshot) -> LeakReport {
        let before = &self.before;
        let mut r = LeakReport {
            exclusive: self.exclusive,
            ..LeakReport::default()
        };
        for (key, p) in &now.procs {
            if !before.procs.contains_key(key) {
                r.processes.push(report::LeakedProcess {
                    pid: p.proc.pid,
                    ppid: p.proc.ppid,
                    pgid: p.proc.pgid,
                    depth: p.depth,
                    zombie: p.proc.zombie,
                    cmdline: cmdline(p.proc.pid),
                });
            }
        }
        let mut resource_paths = Vec::new();
        for (root, sup) in &now.sups {
            let old = before.sups.get(root);
            if old.is_none() {
                r.supervisors.push(root.clone());
            }
            let was = |id| old.is_some_and(|o| o.live.iter().any(|l| l.id() == id));
            for l in sup.live.iter().filter(|l| !was(l.id())) {
                resource_paths.extend(l.path().map(Path::to_path_buf));
                let leaked = report::LeakedResource {
                    supervisor: root.clone(),
                    resource: l.clone(),
                };
                if l.kind() == crate::kind::ResourceKind::Lock {
                    r.locks.push(leaked);
                } else {
                    r.resources.push(leaked);
                }
            }
            let was_pending = |id| old.is_some_and(|o| o.pending.iter().any(|p| p.id == id));
            r.pending_cleanups
                .extend(sup.pending.iter().filter(|p| !was_pending(p.id)).cloned());
            let (c0, t0) = old.map_or((0, 0), |o| (o.cleanups_in_flight, o.scopes_and_tasks));
            r.cleanups_in_flight += sup.cleanups_in_flight.saturating_sub(c0);
            r.tasks_running += sup.scopes_and_tasks.saturating_sub(t0);
        }
        for (&fd, target) in &now.fds {
            // A leaked resource's own fd (a forgotten temp file's) is named with it.
            let of_resource = resource_paths
                .iter()
                .any(|p| p.as_os_str() == target.as_str());
            if before.fds.get(&fd) != Some(target) && !of_resource {
                r.fds.push(report::LeakedFd {
                    fd,
                    target: target.clone(),
                });
            }
        }
        for (path, _, _) in now.paths.difference(&before.paths) {
            if resource_paths.contains(path) {
                continue;
            }
            let under = path.parent().map(PathBuf::from).unwrap_or_default();
            r.paths.push(report::LeakedPath {
                is_dir: std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()),
                path: path.clone(),
                under,
            });
        }
        r
    }
}
