//! The registry's extension API: how a resource is released without its guard.
//!
//! Implemented by every guard kind of custodian and by extension crates; the registry
//! owns the boxed [`Reclaim`] of each entry and calls exactly one of its methods exactly
//! once, when the entry is released.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;

/// What is left to do after a release's constant-time part.
///
/// Returned by [`Reclaim::reclaim`]. custodian runs a `Blocking` part on Tokio's blocking
/// pool and an `Async` part as a task, both tracked so that the owning scope and
/// [`shutdown`](crate::Supervisor::shutdown) wait for them; an explicit `close().await`
/// awaits it and reports its error.
///
/// A `Blocking` part that fails with a *transient* error (out of fds or memory,
/// `EINTR`, `EAGAIN`, `EBUSY`) is not given up: it stays visible in
/// [`Supervisor::pending_cleanups`](crate::Supervisor::pending_cleanups) and is run again
/// with backoff while the supervisor runs, so it must be idempotent.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
/// use tokio_custodian::{Cleanup, Reclaim, ResourceKind};
/// // A resource whose release has a slow part: it runs on the blocking pool, and the
/// // scope does not end before it is done.
/// struct Spool(std::path::PathBuf);
/// impl Reclaim for Spool {
///     fn reclaim(self: Box<Self>) -> Cleanup {
///         let path = self.0;
///         Cleanup::Blocking(Box::new(move || match std::fs::remove_file(&path) {
///             Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
///             _ => Ok(()), // idempotent: it may run again after a transient failure
///         }))
///     }
/// }
/// let sup = tokio_custodian::Supervisor::builder().start()?;
/// let path = sup.temp_root().join("spool");
/// std::fs::write(&path, "x").unwrap();
/// let p = path.clone();
/// sup.scope("job", async |s| s.register(ResourceKind::File, "spool", Some(p.clone()), Spool(p)).map(drop))
///     .await??;
/// assert!(!path.exists());
/// # sup.shutdown().await; Ok(()) }
/// ```
#[non_exhaustive]
pub enum Cleanup {
    /// Everything was done inline.
    Done(io::Result<()>),
    /// Blocking work left (for example a recursive directory removal). Called again
    /// after a transient failure, so it must be idempotent.
    Blocking(Box<dyn FnMut() -> io::Result<()> + Send + 'static>),
    /// Asynchronous work left (for example waiting for a child to exit).
    Async(Pin<Box<dyn Future<Output = io::Result<()>> + Send + 'static>>),
}

impl fmt::Debug for Cleanup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cleanup::Done(r) => f.debug_tuple("Done").field(r).finish(),
            Cleanup::Blocking(_) => f.write_str("Blocking(..)"),
            Cleanup::Async(_) => f.write_str("Async(..)"),
        }
    }
}

/// How to release a resource without its guard.
///
/// Implemented by every guard kind of custodian, and by extension crates (such as
/// `tokio-custodian-audio`) that register their own resources with
/// [`Scope::register`](crate::Scope::register). The registry owns the boxed value and
/// calls exactly one of its methods exactly once.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
/// use tokio_custodian::{Cleanup, Reclaim, ResourceKind};
/// // A connection of another library, closed on every path its registration can take.
/// struct Conn(std::net::TcpListener);
/// impl Reclaim for Conn {
///     fn reclaim(self: Box<Self>) -> Cleanup {
///         drop(self.0); // constant work: close the fd
///         Cleanup::Done(Ok(()))
///     }
/// }
/// let sup = tokio_custodian::Supervisor::builder().start()?;
/// let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
/// let reg = sup.root().register(ResourceKind::File, "listener", None, Conn(listener))?;
/// assert!(reg.is_live());
/// drop(reg); // reclaimed: the listener is closed
/// assert_eq!(sup.stats().live(), 0);
/// # sup.shutdown().await; Ok(()) }
/// ```
pub trait Reclaim: Send + Sync + 'static {
    /// Releases the resource. Must not block or wait: do constant work here (close an fd,
    /// unlink one name, send a signal) and return the rest as [`Cleanup::Blocking`] or
    /// [`Cleanup::Async`].
    ///
    /// See [`Reclaim`] (constant work) and [`Cleanup`] (a blocking part) for an example.
    fn reclaim(self: Box<Self>) -> Cleanup;

    /// Releases the resource synchronously when no runtime can run a cleanup (emergency
    /// cleanup). The default runs [`reclaim`](Self::reclaim) and its blocking part inline,
    /// and drops an asynchronous part.
    ///
    /// # Errors
    ///
    /// The clean-up's error, if any.
    ///
    /// It runs on a thread custodian does not control (a panic hook, a dropping thread)
    /// and must never wait for a lock the resource's users may hold: try the lock, and
    /// report a busy resource as an error instead. custodian runs the emergency path of a
    /// panic hook on a thread of its own with a deadline, so a `reclaim_now` that does
    /// block delays the hook but cannot hang it.
    ///
    /// ```
    /// use tokio_custodian::{Cleanup, Reclaim};
    /// struct Shared(std::sync::Arc<std::sync::Mutex<Option<std::fs::File>>>);
    /// impl Reclaim for Shared {
    ///     fn reclaim(self: Box<Self>) -> Cleanup {
    ///         drop(self.0.lock().unwrap().take());
    ///         Cleanup::Done(Ok(()))
    ///     }
    ///     fn reclaim_now(self: Box<Self>) -> std::io::Result<()> {
    ///         match self.0.try_lock() {
    ///             Ok(mut f) => Ok(drop(f.take())),
    ///             // A user holds it (maybe the panicking thread): report, never wait.
    ///             Err(_) => Err(std::io::ErrorKind::ResourceBusy.into()),
    ///         }
    ///     }
    /// }
    /// let file = std::sync::Arc::new(std::sync::Mutex::new(Some(std::fs::File::open("/dev/null").unwrap())));
    /// let held = file.lock().unwrap();
    /// let busy = Box::new(Shared(file.clone())).reclaim_now().unwrap_err();
    /// assert_eq!(busy.kind(), std::io::ErrorKind::ResourceBusy);
    /// drop(held);
    /// ```
    fn reclaim_now(self: Box<Self>) -> io::Result<()> {
        match self.reclaim() {
            Cleanup::Done(r) => r,
            Cleanup::Blocking(mut work) => work(),
            Cleanup::Async(_) => Ok(()),
        }
    }

    /// Constant-time work that must happen at once when the last supervisor handle is
    /// dropped without `shutdown()`: the rest of that emergency release
    /// ([`reclaim_now`](Self::reclaim_now)) is handed to the blocking pool, which never
    /// runs it if the process exits right after the drop. A child sends SIGKILL to its
    /// group here. Called on the dropping thread, under a registry read lock: must not
    /// block or touch the registry. Default: nothing.
    ///
    /// ```
    /// use tokio_custodian::{Cleanup, Reclaim};
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// // A worker told to stop at once (a flag), its join left to the clean-up.
    /// struct Worker(std::sync::Arc<AtomicBool>);
    /// impl Reclaim for Worker {
    ///     fn reclaim(self: Box<Self>) -> Cleanup {
    ///         self.0.store(true, Ordering::Release);
    ///         Cleanup::Done(Ok(()))
    ///     }
    ///     fn reclaim_urgent(&self) {
    ///         self.0.store(true, Ordering::Release); // constant work, no lock
    ///     }
    /// }
    /// let stop = std::sync::Arc::new(AtomicBool::new(false));
    /// Worker(stop.clone()).reclaim_urgent();
    /// assert!(stop.load(Ordering::Acquire));
    /// ```
    fn reclaim_urgent(&self) {}

    /// The process this resource is, if it is one (a child: its pid, process group,
    /// cgroup), shown beside its entry by `custodian inspect` (an
    /// [`Inspection`](crate::Inspection)). Read at snapshot time only, never on the hot
    /// path, under a registry read lock: must not block or touch the registry.
    /// Default: `None`.
    ///
    /// ```
    /// use tokio_custodian::{Cleanup, ProcessIds, Reclaim};
    /// struct Worker(u32);
    /// impl Reclaim for Worker {
    ///     fn reclaim(self: Box<Self>) -> Cleanup {
    ///         Cleanup::Done(Ok(())) // (stop it here)
    ///     }
    ///     fn process(&self) -> Option<ProcessIds> {
    ///         Some(ProcessIds::new(self.0))
    ///     }
    /// }
    /// assert_eq!(Worker(7).process().unwrap().pid, 7);
    /// ```
    fn process(&self) -> Option<ProcessIds> {
        None
    }
}

/// The process a resource is, as [`Reclaim::process`] names it.
///
/// ```
/// let ids = tokio_custodian::ProcessIds::new(42).with_group(42);
/// assert_eq!((ids.pid, ids.pgid, ids.reaped), (42, Some(42), false));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProcessIds {
    /// Its pid.
    pub pid: u32,
    /// Its process group, if known.
    pub pgid: Option<u32>,
    /// The cgroup it was started in (the cgroup containment tier), if any.
    pub cgroup: Option<std::path::PathBuf>,
    /// Reaped already (its guard holds the exit status): the pid may name another
    /// process now.
    pub reaped: bool,
}

impl ProcessIds {
    /// A process known by its pid only.
    ///
    /// ```
    /// assert_eq!(tokio_custodian::ProcessIds::new(7).pgid, None);
    /// ```
    pub fn new(pid: u32) -> Self {
        ProcessIds {
            pid,
            pgid: None,
            cgroup: None,
            reaped: false,
        }
    }

    /// With its process group.
    ///
    /// ```
    /// assert_eq!(tokio_custodian::ProcessIds::new(7).with_group(7).pgid, Some(7));
    /// ```
    pub fn with_group(mut self, pgid: u32) -> Self {
        self.pgid = Some(pgid);
        self
    }

    /// With its cgroup.
    ///
    /// ```
    /// let ids = tokio_custodian::ProcessIds::new(7).with_cgroup("/sys/fs/cgroup/job".into());
    /// assert!(ids.cgroup.is_some());
    /// ```
    pub fn with_cgroup(mut self, path: std::path::PathBuf) -> Self {
        self.cgroup = Some(path);
        self
    }

    /// Marked reaped (or not).
    ///
    /// ```
    /// assert!(tokio_custodian::ProcessIds::new(7).with_reaped(true).reaped);
    /// ```
    pub fn with_reaped(mut self, reaped: bool) -> Self {
        self.reaped = reaped;
        self
    }
}
