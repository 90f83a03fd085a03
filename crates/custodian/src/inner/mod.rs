//! The supervisor's shared state (layer 4): what every [`Supervisor`] handle, scope and
//! guard points to, and the one place where resources are registered and released.
//!
//! Invariants:
//! - *release is decided by removing the registry entry*: `DashMap::remove` (or
//!   `remove_if` for a scope sweep) returns the entry to exactly one caller, which alone
//!   updates the stats, emits the release event and runs the entry's [`Reclaim`];
//! - no registry or scope lock is held while a reclaim runs or while a task is spawned;
//! - a registration racing with shutdown or with its scope's end is either swept by it or
//!   refused and reclaimed by the registering call (see [`Inner::register`]).
//!
//! Glossary: one act, *releasing a resource*, in named steps, each with one name in the
//! code (the public names `Reclaim`, `Cleanup`, `ReleasePath` follow it):
//! - **release**: the decision. Removing the registry entry (`Inner::release`,
//!   `release_in`, `release_for_shutdown`, `release_now`); exactly one caller wins, by a
//!   [`ReleasePath`].
//! - **retire**: the bookkeeping of a release: counters, the scope's gauge, the leak
//!   record, the `released` tracing event (its field `by` is the release path)
//!   (`Records::retire`).
//! - **reclaim**: the resource-specific, constant-time part ([`Reclaim::reclaim`]: close
//!   an fd, unlink a name, signal a group), or all of it at once without a runtime
//!   ([`Reclaim::reclaim_now`]: forced shutdown, emergency).
//! - **clean-up**: the work a reclaim leaves ([`Cleanup`](crate::Cleanup)), run in the
//!   background (`Released::clean_up_in_background`: drops, sweeps) or awaited
//!   (`Released::clean_up_and_wait`: `close().await`); a transient failure is retried
//!   (`retry`).
//! - **sweep**: releasing every entry of a scope (`scope::run::sweep`, at scope end) or of
//!   the supervisor (shutdown's last phase, `emergency::sweep_now`).
//!
//! A *spawn* or *wait* is never a release step: they name tasks and child processes.

use std::fmt;
use std::panic::Location;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::{Error, Operation};
use crate::id::ResourceId;
use crate::kind::{CancelReason, ReleasePath, ResourceKind};
use crate::registry::{Entry, Permits, Reclaim, Registry, ScopeShared};
use crate::report::ShutdownReport;
use crate::sys::root::TempRoot;

mod clean_up;
mod drain;
mod handle;
mod hooks;
mod observe;
mod quota;
mod records;
mod release;
mod retry;

pub(crate) use clean_up::{Deferred, Released, ReleasedInfo, clean_up_sweep};
pub(crate) use drain::DrainState;
pub use handle::Supervisor;
pub(crate) use hooks::Hook;
pub(crate) use observe::Listing;
pub(crate) use quota::{Need, Quotas, owner as quota_owner};
pub(crate) use records::Records;
pub(crate) use release::release_now;
use retry::Retrier;

pub(crate) struct Config {
    pub(crate) grace: Duration,
    /// The drain phase's budget (`Builder::drain`); zero: no drain.
    pub(crate) drain: Duration,
    /// `Builder::quota`s, in the order given.
    pub(crate) quotas: Vec<crate::quota::Quota>,
    pub(crate) leak_after: [Option<Duration>; ResourceKind::COUNT],
    /// Run by `Inner`'s `Drop` when the last handle goes without a finished shutdown:
    /// the emergency path, passed down by the builder (it lives above this layer).
    pub(crate) on_last_drop: fn(&mut Inner),
}

pub(crate) struct Inner {
    pub(crate) registry: Registry,
    pub(crate) records: Arc<Records>,
    /// Retries of clean-ups that failed transiently, and the fds reserved for them.
    retrier: Arc<Retrier>,
    pub(crate) config: Config,
    pub(crate) root_token: CancellationToken,
    pub(crate) root_scope: Arc<ScopeShared>,
    pub(crate) temp_root: Arc<TempRoot>,
    pub(crate) handle: Handle,
    /// Every background clean-up, so that shutdown can wait for them.
    pub(crate) cleanups: TaskTracker,
    /// Every scope that is running or has not swept its resources yet (and every
    /// scoped task and acquisition unit), so that shutdown can wait for them: after
    /// cutting scopes off, it lets them sweep before it reclaims what is left (see
    /// `ScopeShared::shutdown_path`). A scope's clean-ups are `cleanups`' to wait for.
    pub(crate) scopes: TaskTracker,
    pub(crate) report: tokio::sync::OnceCell<ShutdownReport>,
    /// Temp roots of dead supervisors removed by `start`'s background reap, once done.
    pub(crate) reaped_at_start: tokio::sync::watch::Receiver<Option<Vec<PathBuf>>>,
    /// The crash journal, when a state dir is set (removed when this is dropped).
    pub(crate) journal: Option<Arc<crate::journal::Journal>>,
    /// The child-subreaper opt-in's reaper (`Builder::child_subreaper`).
    pub(crate) reaper: Option<Arc<crate::reaper::Reaper>>,
    /// The containment tier and, in the cgroup tier, the supervisor's cgroup.
    pub(crate) containment: crate::containment::Contained,
    /// The watcher's link (`Builder::watcher`): told `DONE` at the end of `shutdown()`.
    pub(crate) watcher: Option<Arc<crate::sys::watch::Link>>,
    /// The report of `start`'s crash sweep, once done (`None` inside until then).
    pub(crate) swept_at_start: tokio::sync::watch::Receiver<Option<crate::journal::SweepReport>>,
    /// The one shutdown run, started by the first `shutdown()` call.
    /// `true` once it has stored its report in `report`.
    pub(crate) shutdown_run: std::sync::OnceLock<tokio::sync::watch::Receiver<bool>>,
    /// Fires when shutdown stops waiting: a forced request or the grace deadline. Every
    /// graceful wait (scope grace, hook budget, shutdown's scope wait) selects on it.
    pub(crate) cut: CancellationToken,
    /// Scopes running when `cut` fired; `usize::MAX` until it has (see `fire_cut`).
    scopes_at_cut: AtomicUsize,
    /// Whether a forced shutdown was requested.
    pub(crate) forced: AtomicBool,
    /// Fires when shutdown (or emergency clean-up) has finished.
    pub(crate) done: CancellationToken,
    /// Shutdown's drain phase: its flag, the top-level scopes it waits for.
    pub(crate) drain: DrainState,
    /// The quotas; `None` without any (an acquisition then pays one branch).
    pub(crate) quotas: Option<Arc<Quotas>>,
    /// Shutdown hooks, in registration order.
    pub(crate) hooks: Mutex<Vec<Hook>>,
    /// The inspect server's socket, when `Builder::inspect` is on (the server itself is
    /// a task holding a `Weak` to this).
    pub(crate) inspect_socket: std::sync::OnceLock<PathBuf>,
    /// Set by whoever removes the temp root first (shutdown or emergency clean-up).
    root_removed: AtomicBool,
    shutting_down: AtomicBool,
    next_scope: AtomicU64,
}

/// What a registration needs.
pub(crate) struct Spec {
    pub(crate) kind: ResourceKind,
    pub(crate) label: crate::label::Label,
    pub(crate) path: Option<PathBuf>,
    pub(crate) site: &'static Location<'static>,
    pub(crate) op: Operation,
}

impl Inner {
    pub(crate) fn new(
        config: Config,
        temp_root: TempRoot,
        handle: Handle,
        root_token: CancellationToken,
    ) -> Self {
        let root_scope = ScopeShared::root(root_token.clone(), config.grace);
        let records = Arc::<Records>::default();
        let cut = CancellationToken::new();
        let quotas = Quotas::new(&config.quotas);
        Inner {
            registry: Registry::default(),
            retrier: Arc::new(Retrier::new(records.clone(), cut.clone(), handle.clone())),
            records,
            config,
            root_token,
            root_scope,
            temp_root: Arc::new(temp_root),
            handle,
            cleanups: TaskTracker::new(),
            scopes: TaskTracker::new(),
            report: tokio::sync::OnceCell::new(),
            reaped_at_start: tokio::sync::watch::channel(Some(Vec::new())).1,
            journal: None,
            reaper: None,
            containment: Default::default(),
            watcher: None,
            swept_at_start: tokio::sync::watch::channel(Some(Default::default())).1,
            shutdown_run: std::sync::OnceLock::new(),
            cut,
            scopes_at_cut: AtomicUsize::new(usize::MAX),
            forced: AtomicBool::new(false),
            done: CancellationToken::new(),
            drain: DrainState::default(),
            quotas,
            hooks: Mutex::default(),
            inspect_socket: std::sync::OnceLock::new(),
            root_removed: AtomicBool::new(false),
            shutting_down: AtomicBool::new(false),
            next_scope: AtomicU64::new(1),
        }
    }

    pub(crate) fn next_scope_id(&self) -> u64 {
        // Uniqueness only.
        self.next_scope.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        // SeqCst pairs with the store in `begin_shutdown` and the registry insert in
        // `register`: either shutdown's sweep sees the entry, or `register` sees the flag.
        self.shutting_down.load(Ordering::SeqCst)
    }

    pub(crate) fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        // Without a drain (or after it), `draining()` waiters wake now.
        self.drain.begin();
    }

    pub(crate) fn is_forced(&self) -> bool {
        // Relaxed: a flag for the report; `cut` publishes the cancellation itself.
        self.forced.load(Ordering::Relaxed)
    }

    /// Forces shutdown: raises the root's reason and fires `cut`.
    pub(crate) fn force(&self) {
        self.forced.store(true, Ordering::Relaxed);
        // Every scope is being cancelled: stop taking new work now (and wake
        // `draining()`), even before a shutdown runs.
        self.drain.begin();
        self.root_scope.raise(CancelReason::ForcedShutdown);
        self.fire_cut();
    }

    /// Fires `cut` (once), first noting how many scopes were still running: those are
    /// the ones cut off, whatever the order in which they and shutdown wake up after it.
    pub(crate) fn fire_cut(&self) {
        if !self.cut.is_cancelled() {
            // Relaxed: read after `cut` is observed cancelled, which orders it.
            let _ = self.scopes_at_cut.compare_exchange(
                usize::MAX,
                self.scopes.len(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
            self.cut.cancel();
        }
    }

    /// How many scopes were running when `cut` fired (0 if it has not).
    pub(crate) fn scopes_cut_off(&self) -> usize {
        match self.scopes_at_cut.load(Ordering::Relaxed) {
            usize::MAX => 0,
            n => n,
        }
    }

    /// Fails fast before a resource is created, so that nothing is created in vain.
    pub(crate) fn admit(&self, scope: &ScopeShared, op: Operation) -> Result<(), Error> {
        if self.is_shutting_down() {
            return Err(Error::ShuttingDown { op });
        }
        self.admit_while_draining(scope, op)?;
        if scope.is_closed() {
            return Err(Error::ScopeClosed {
                op,
                scope: String::from(&*scope.name),
            });
        }
        Ok(())
    }

    /// During the drain only scopes already running take new work: the root scope (new
    /// top-level scopes, root-scope resources and tasks) is refused.
    fn admit_while_draining(&self, scope: &ScopeShared, op: Operation) -> Result<(), Error> {
        if scope.is_root() && self.drain.is_draining() {
            self.drain.refused();
            return Err(Error::Draining { op });
        }
        Ok(())
    }

    /// Registers a resource in `scope`. On refusal the resource is reclaimed at once.
    /// `permits`: the quota permits a waiting acquisition took before creating the
    /// resource; without them, they are taken now or the registration is refused
    /// (`QuotaExceeded`).
    pub(crate) fn register(
        &self,
        scope: &Arc<ScopeShared>,
        spec: Spec,
        reclaim: Box<dyn Reclaim>,
        permits: Option<Permits>,
    ) -> Result<ResourceId, Error> {
        // Quotas and refusals are out of line (`register_quota`, `refuse`): the common
        // registration, with neither, keeps a small frame (fewer spills and moves).
        if permits.is_some() || self.quotas.is_some() {
            return self.register_quota(scope, spec, reclaim, permits);
        }
        self.publish(scope, spec, reclaim, None, None)
    }

    /// [`register`](Self::register) with quotas: the permits a waiting acquisition took
    /// (`permits`), or those taken now; else the refusal, after publishing (so that
    /// the resource is reclaimed as every refused one is).
    #[inline(never)]
    fn register_quota(
        &self,
        scope: &Arc<ScopeShared>,
        spec: Spec,
        reclaim: Box<dyn Reclaim>,
        permits: Option<Permits>,
    ) -> Result<ResourceId, Error> {
        let (permits, over_quota) = match (permits, &self.quotas) {
            (Some(p), _) => (Some(Box::new(p)), None),
            (None, Some(q)) if q.applies(spec.kind) => {
                match q.try_take(spec.kind, spec.op, quota_owner(scope)) {
                    Ok(p) => (Some(Box::new(p)), None),
                    Err(e) => (None, Some(e)),
                }
            }
            (None, _) => (None, None),
        };
        self.publish(scope, spec, reclaim, permits, over_quota)
    }

    /// Publishes the entry, then checks again whether it may stay (see the module's
    /// header): `is_shutting_down` and `registered` are the checks that decide.
    #[inline(always)]
    fn publish(
        &self,
        scope: &Arc<ScopeShared>,
        spec: Spec,
        reclaim: Box<dyn Reclaim>,
        permits: Option<Box<Permits>>,
        over_quota: Option<Error>,
    ) -> Result<ResourceId, Error> {
        let id = self.registry.next_id();
        let Spec {
            kind,
            label,
            path,
            site,
            op,
        } = spec;
        tracing::debug!(id = id.get(), kind = kind.as_str(), label = &*label, path = ?path, scope = &*scope.name, "acquired");
        // Counted before the entry is published: a sweep that removes it at once must
        // find the counts it decrements already raised (never `live` below zero).
        self.records.stats.created(kind);
        scope.count_in();
        self.registry.map.insert(
            id,
            Entry {
                kind,
                label,
                scope: scope.clone(),
                site,
                born: crate::registry::Born::now(),
                path: path.map(PathBuf::into_boxed_path),
                reclaim,
                warned: AtomicBool::new(false),
                permits,
            },
        );
        let admitted = over_quota.is_none()
            && !self.is_shutting_down()
            // A persisted temp file or dir registered again is a resource changing
            // form, not new work: the drain lets it through (refused, it would be moved
            // but lost).
            && (op == Operation::Persist || !(scope.is_root() && self.drain.is_draining()))
            && scope.registered();
        if admitted {
            Ok(id)
        } else {
            Err(self.refuse(id, scope, op, over_quota))
        }
    }

    /// A published registration refused after all: its error (the first that applies),
    /// its entry released unless a sweep got there first.
    #[cold]
    #[inline(never)]
    fn refuse(
        &self,
        id: ResourceId,
        scope: &ScopeShared,
        op: Operation,
        over_quota: Option<Error>,
    ) -> Error {
        let err = if let Some(e) = over_quota {
            e
        } else if self.is_shutting_down() {
            Error::ShuttingDown { op }
        } else if op != Operation::Persist
            && let Err(e) = self.admit_while_draining(scope, op)
        {
            e
        } else {
            Error::ScopeClosed {
                op,
                scope: String::from(&*scope.name),
            }
        };
        // Whoever removes the entry first releases it; if a sweep got there first it
        // has already been reclaimed.
        if let Some(p) = self.release(id, Some(ReleasePath::Cancelled)) {
            p.clean_up_in_background(self);
        }
        err
    }

    /// Removes the temp root unless it was already removed (or being removed). Blocking.
    /// `None` if someone else did it.
    pub(crate) fn remove_temp_root(&self) -> Option<std::io::Result<()>> {
        Some(self.take_temp_root()?.remove().map(drop))
    }

    /// The temp root, to remove, unless someone already took it.
    pub(crate) fn take_temp_root(&self) -> Option<Arc<TempRoot>> {
        // AcqRel: exactly one caller wins; nothing else is published through the flag.
        (!self.root_removed.swap(true, Ordering::AcqRel)).then(|| self.temp_root.clone())
    }
}

impl Drop for Inner {
    /// The last handle is gone without `shutdown()` (or while it ran, or the runtime was
    /// dropped): emergency clean-up, off this thread when a runtime can take it.
    fn drop(&mut self) {
        // First: the fields below drop the journal before the watcher's link, and a
        // death in between must not read as a journal removed under a live owner.
        if let Some(w) = &self.watcher {
            w.let_go();
        }
        if self.report.initialized() && self.registry.map.is_empty() {
            return;
        }
        (self.config.on_last_drop)(self);
    }
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Supervisor")
            .field("temp_root", &self.temp_root.path())
            .field("live", &self.registry.map.len())
            .field("shutting_down", &self.is_shutting_down())
            .finish()
    }
}
