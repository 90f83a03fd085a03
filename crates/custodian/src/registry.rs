//! The registry: one entry per live resource, and the reclaim data that releases it.
//!
//! Invariants:
//! - an entry is inserted before the acquiring call returns and removed exactly once;
//!   *removing the entry is the release decision*: whoever removes it (guard drop, close,
//!   scope sweep, shutdown) runs its [`Reclaim`], everyone else finds nothing to do;
//! - the entry alone is enough to reclaim the resource, so a forgotten guard is still
//!   released;
//! - no lock of the registry is held while a reclaim runs.

use std::fmt;
use std::future::Future;
use std::io;
use std::panic::Location;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
// Tokio's clock, like the leak scanner's interval: ages follow paused test time too.
use tokio::time::Instant;

use dashmap::DashMap;
use serde::{Deserialize, Serialize};

use crate::kind::ResourceKind;
use crate::scope::ScopeShared;

/// The identity of one registered resource, unique within its supervisor.
///
/// Ids increase with acquisition order, so sorting by id gives acquisition order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ResourceId(u64);

impl ResourceId {
    /// The number behind the id.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> custodian::Result<()> {
    /// let sup = custodian::Supervisor::builder().start()?;
    /// let a = sup.temp_file().await?;
    /// let b = sup.temp_file().await?;
    /// assert!(a.id().get() < b.id().get());
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

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
/// `custodian-audio`) that register their own resources with
/// [`Scope::register`](crate::Scope::register). The registry owns the boxed value and
/// calls exactly one of its methods exactly once.
pub trait Reclaim: Send + Sync + 'static {
    /// Releases the resource. Must not block or wait: do constant work here (close an fd,
    /// unlink one name, send a signal) and return the rest as [`Cleanup::Blocking`] or
    /// [`Cleanup::Async`].
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
    fn reclaim_now(self: Box<Self>) -> io::Result<()> {
        match self.reclaim() {
            Cleanup::Done(r) => r,
            Cleanup::Blocking(mut work) => work(),
            Cleanup::Async(_) => Ok(()),
        }
    }
}

/// One registered resource.
pub(crate) struct Entry {
    pub(crate) kind: ResourceKind,
    pub(crate) label: Box<str>,
    pub(crate) scope: Arc<ScopeShared>,
    pub(crate) site: &'static Location<'static>,
    pub(crate) born: Instant,
    pub(crate) path: Option<PathBuf>,
    pub(crate) reclaim: Box<dyn Reclaim>,
    /// Set once the leak scanner has warned about this entry.
    pub(crate) warned: AtomicBool,
}

/// The map of live resources.
#[derive(Default)]
pub(crate) struct Registry {
    pub(crate) map: DashMap<ResourceId, Entry>,
    next: AtomicU64,
}

impl Registry {
    pub(crate) fn next_id(&self) -> ResourceId {
        // Only uniqueness and monotonicity per thread matter; no data is published by it.
        ResourceId(self.next.fetch_add(1, Ordering::Relaxed) + 1)
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("live", &self.map.len())
            .finish()
    }
}
