//! The state of one scope that the registry needs: its token and cancel reason, its
//! LIFO list of resource ids, its closed flag, its live gauge and clean-up tracker.
//!
//! It lives with the registry (below the supervisor's state and the `Scope` handle)
//! because every entry points to its scope, and the release decision reads it (the
//! release path of a drop or a shutdown, the gauge, the tracker). The scope runner that
//! sweeps it is in `scope::run`.
//!
//! Lock order: the scope's state, then a registry shard (never the reverse).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tokio_util::task::task_tracker::TaskTrackerToken;

use crate::id::ResourceId;
use crate::kind::{CancelReason, ReleasePath};
use crate::registry::Registry;
use crate::registry::scope_name::ScopeName;

/// Compact a scope's id list when it holds more than this many ids and over half of them
/// were already released by their guards.
const COMPACT_AT: usize = 64;

pub(crate) struct ScopeShared {
    pub(crate) id: u64,
    pub(crate) name: ScopeName,
    pub(crate) token: CancellationToken,
    /// Set when the token is handed out (a child token, a clone for a scoped task):
    /// then the scope's end must cancel it, since someone may watch it.
    token_lent: AtomicBool,
    parent: Option<Arc<ScopeShared>>,
    /// Set once by the first cancel; only the root's is raised later (by shutdown).
    reason: Mutex<Option<CancelReason>>,
    state: Mutex<State>,
    /// `state.closed`, readable without the state lock (from inside a registry shard lock,
    /// where taking the state lock would invert the lock order).
    closed: AtomicBool,
    /// Resources registered to this scope now.
    pub(crate) live: AtomicUsize,
    /// Background clean-ups of this scope's resources; the scope's end waits for them.
    /// Made by the first clean-up that outlives its release: most scopes never have one,
    /// and a tracker is an allocation (and a drop) on every scope's path.
    tracker: OnceLock<TaskTracker>,
    pub(crate) panicked: AtomicBool,
    pub(crate) grace: Duration,
}

#[derive(Default)]
struct State {
    closed: bool,
    resources: Vec<ResourceId>,
}

impl State {
    /// Keeps the ids still registered, and gives back what the list no longer needs.
    /// Lock order: the caller holds this scope's state; a shard is taken per lookup.
    #[cold]
    fn compact(&mut self, registry: &Registry) {
        self.resources.retain(|id| registry.map.contains_key(id));
        self.shrink();
    }

    #[cold]
    fn shrink(&mut self) {
        let len = self.resources.len();
        if self.resources.capacity() > COMPACT_AT.max(4 * len) {
            self.resources.shrink_to(2 * len);
        }
    }
}

impl ScopeShared {
    pub(crate) fn root(token: CancellationToken, grace: Duration) -> Arc<Self> {
        Self::new(0, ScopeName::new("root"), token, None, grace)
    }

    /// A scope nested in `parent`, which it keeps (the reference is moved in).
    pub(crate) fn child(parent: Arc<Self>, id: u64, name: ScopeName, grace: Duration) -> Arc<Self> {
        let token = parent.token.child_token();
        Self::new(id, name, token, Some(parent), grace)
    }

    fn new(
        id: u64,
        name: ScopeName,
        token: CancellationToken,
        parent: Option<Arc<Self>>,
        grace: Duration,
    ) -> Arc<Self> {
        Arc::new(ScopeShared {
            id,
            name,
            token,
            token_lent: AtomicBool::new(false),
            parent,
            reason: Mutex::new(None),
            state: Mutex::default(),
            closed: AtomicBool::new(false),
            live: AtomicUsize::new(0),
            tracker: OnceLock::new(),
            panicked: AtomicBool::new(false),
            grace,
        })
    }

    /// A token of the scope's clean-up tracker, for a clean-up that outlives its release.
    pub(crate) fn cleanup_token(&self) -> TaskTrackerToken {
        self.tracker.get_or_init(TaskTracker::new).token()
    }

    /// The wait for the background clean-ups of this scope's resources, closing the
    /// tracker first; `None` if none was ever tracked. A clean-up that takes the first
    /// token after this has looked is one that would have taken its token after the
    /// wait ended with an eager tracker too: released after the scope's sweep, by a
    /// guard on another thread, it is the supervisor's `cleanups` that wait for it.
    pub(crate) fn cleanups_done(&self) -> Option<impl Future<Output = ()> + Send + '_> {
        let t = self.tracker.get()?;
        t.close();
        Some(t.wait())
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // State is a flag and a list of ids: a panic while it is locked cannot leave it
        // inconsistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The id of the top-level scope (the root's child) this one is or is nested in;
    /// `None` for the root: whom a quota's room is charged to (see `registry::ledger`).
    pub(crate) fn top_level_id(&self) -> Option<u64> {
        let mut s = self;
        loop {
            match s.parent.as_deref() {
                None => return None,
                Some(p) if p.parent.is_none() => return Some(s.id),
                Some(p) => s = p,
            }
        }
    }

    /// The scope this one is nested in; `None` for the root.
    pub(crate) fn parent(&self) -> Option<&Arc<Self>> {
        self.parent.as_ref()
    }

    /// Whether this is the supervisor's root scope.
    pub(crate) fn is_root(&self) -> bool {
        self.parent.is_none()
    }

    /// Whether the scope has closed: a snapshot for a fail-fast check (admission), read
    /// without the state lock; `push` and `adopt` decide under the lock.
    pub(crate) fn is_closed(&self) -> bool {
        // Acquire: pairs with the Release in `close`.
        self.closed.load(Ordering::Acquire)
    }

    /// Adds `id` to the scope's list; `false` if the scope has closed.
    pub(crate) fn push(&self, id: ResourceId, registry: &Registry) -> bool {
        let mut st = self.state();
        if st.closed {
            return false;
        }
        let len = st.resources.len();
        // Relaxed: a stale count only makes compaction a little early or late.
        if len >= COMPACT_AT && len > 2 * self.live.load(Ordering::Relaxed) {
            st.resources.retain(|id| registry.map.contains_key(id));
        }
        st.resources.push(id);
        true
    }

    /// Drops `id` from the top of the list, where a guard released in reverse
    /// acquisition order (the common case) finds it, so that the list does not grow
    /// until compaction has to look every id up in the registry. Never waits: if the
    /// state is busy it does nothing (compaction or the sweep skip released ids).
    /// When `id` is not on top and the list holds over four times the live ids (a
    /// burst released in acquisition order), the list is compacted and its capacity
    /// given back: amortised constant work, as the compaction is paid for by the
    /// releases since the last one.
    pub(crate) fn forget_top(&self, id: ResourceId, registry: &Registry) {
        let mut st = match self.state.try_lock() {
            Ok(st) => st,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return,
        };
        if st.resources.last() == Some(&id) {
            st.resources.pop();
            if st.resources.capacity() > COMPACT_AT.max(4 * st.resources.len()) {
                st.shrink();
            }
        // Relaxed: a stale count only makes compaction a little early or late.
        } else if st.resources.len() >= COMPACT_AT.max(4 * self.live.load(Ordering::Relaxed)) {
            st.compact(registry);
        }
    }

    /// Moves the registered resource `id` into this scope, under this scope's lock so
    /// that a concurrent close either sweeps it or refuses it. Returns its old scope;
    /// `None` if this scope has closed or the resource is no longer registered.
    pub(crate) fn adopt(
        self: &Arc<Self>,
        id: ResourceId,
        registry: &Registry,
    ) -> Option<Arc<Self>> {
        let mut st = self.state();
        if st.closed {
            return None;
        }
        // Lock order: this scope's state, then the registry shard. The gauges move while
        // the shard is locked, so no release can see the entry under a scope whose
        // count does not include it yet. Relaxed: gauges only.
        let old = {
            let mut e = registry.map.get_mut(&id)?;
            self.live.fetch_add(1, Ordering::Relaxed);
            let old = std::mem::replace(&mut e.scope, self.clone());
            old.live.fetch_sub(1, Ordering::Relaxed);
            old
        };
        st.resources.push(id);
        Some(old)
    }

    /// Closes the scope and returns its ids, oldest first.
    pub(crate) fn close(&self) -> Vec<ResourceId> {
        let mut st = self.state();
        st.closed = true;
        // Release: pairs with the Acquire in `shutdown_path` and `is_closed`.
        self.closed.store(true, Ordering::Release);
        std::mem::take(&mut st.resources)
    }

    /// The scope's token for someone who will watch it (a child token, a scoped
    /// task's clone): from now on the scope's end cancels it.
    pub(crate) fn lend_token(&self) -> &CancellationToken {
        // Release: pairs with the Acquire in `cancel_at_end`.
        self.token_lent.store(true, Ordering::Release);
        &self.token
    }

    /// Cancels the token at the scope's end, so that escaped handles, nested scopes and
    /// lent tokens see it, unless nobody can: `holders` is how many references the
    /// caller (the runner) holds. With no other reference to this state and no token
    /// lent, no one can observe the token any more (a nested scope holds its parent,
    /// a handle holds the state), and the cancel (its lock and waiter notification)
    /// is skipped.
    pub(crate) fn cancel_at_end(self: &Arc<Self>, holders: usize) {
        if Arc::strong_count(self) > holders || self.token_lent.load(Ordering::Acquire) {
            self.token.cancel();
        }
    }

    pub(crate) fn cancel(&self, reason: CancelReason) {
        self.reason
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert(reason);
        self.token.cancel();
    }

    /// Sets the reason even if one is set (shutdown raising `Shutdown` to
    /// `ForcedShutdown` or `Deadline`), and cancels.
    pub(crate) fn raise(&self, reason: CancelReason) {
        *self.reason.lock().unwrap_or_else(PoisonError::into_inner) = Some(reason);
        self.token.cancel();
    }

    /// The names from the root scope down to this one, joined by `/` (`root/job/step`).
    pub(crate) fn path(&self) -> String {
        let mut names = vec![&*self.name];
        let mut s = self.parent.as_deref();
        while let Some(scope) = s {
            names.push(&*scope.name);
            s = scope.parent.as_deref();
        }
        names.reverse();
        names.join("/")
    }

    /// Why this scope was cancelled: its own reason, or the nearest ancestor's.
    pub(crate) fn reason(&self) -> Option<CancelReason> {
        let mut s = Some(self);
        while let Some(scope) = s {
            if let Some(r) = *scope.reason.lock().unwrap_or_else(PoisonError::into_inner) {
                return Some(r);
            }
            s = scope.parent.as_deref();
        }
        self.token.is_cancelled().then_some(CancelReason::Requested)
    }

    /// The release path of a resource of this scope that shutdown reclaims now: the path
    /// the scope itself would give it at this point, so that the outcome does not depend
    /// on whether shutdown or the scope's own runner gets there first.
    /// - root scope: nobody else will release it, so it was alive at shutdown (a leak);
    /// - a scope that has ended (its runner is sweeping): the sweep's `ScopeEnd` (a leak);
    /// - a scope still running, cut off by the deadline or a forced shutdown: held
    ///   normally, `Cancelled` (or `Panic`), not a leak.
    pub(crate) fn shutdown_path(&self) -> ReleasePath {
        if self.closed.load(Ordering::Acquire) {
            ReleasePath::ScopeEnd
        } else if self.parent.is_none() {
            ReleasePath::Shutdown
        } else if self.panicked.load(Ordering::Relaxed) {
            ReleasePath::Panic
        } else {
            ReleasePath::Cancelled
        }
    }

    /// The release path of a guard dropped now.
    pub(crate) fn drop_path(&self) -> ReleasePath {
        // Relaxed: set by the scope runner on the same task before it drops the body.
        if std::thread::panicking() || self.panicked.load(Ordering::Relaxed) {
            ReleasePath::Panic
        } else if self.token.is_cancelled() {
            ReleasePath::Cancelled
        } else {
            ReleasePath::Drop
        }
    }
}
