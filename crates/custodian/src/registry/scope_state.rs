//! The state of one scope that the registry needs: its token and cancel reason, its
//! closed flag, its live count and clean-up tracker.
//!
//! It lives with the registry (below the supervisor's state and the `Scope` handle)
//! because every entry points to its scope, and the release decision reads it (the
//! release path of a drop or a shutdown, the gauge, the tracker). The scope runner that
//! sweeps it is in `scope::run`.
//!
//! No list of a scope's resource ids is kept (a push and a pop under a lock on every
//! registration): the registry's entries point to their scope, and a scope's sweep
//! filters the registry by scope, only when the scope's live count says something is
//! left (an escaped or forgotten guard: the leak path).
//!
//! A registration (or a transfer) racing with the scope's close: the registering side
//! raises `live` and publishes the entry under its shard lock, then reads `closed`; the
//! closing side sets `closed`, then reads `live` and scans the shards under their locks.
//! Either the registering side sees `closed` (and refuses, releasing what it published)
//! or the sweep sees the entry (both may: whoever removes the entry releases it).

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

pub(crate) struct ScopeShared {
    pub(crate) id: u64,
    pub(crate) name: ScopeName,
    /// Watched by many; cancelled only through [`cancel_token`](Self::cancel_token)
    /// (which keeps `cancelled` true to it).
    pub(crate) token: CancellationToken,
    /// Set (before the token is cancelled) by every cancel of this scope's token, all
    /// of which go through this state (`cancel`, `raise`, `cancel_token`; the root's
    /// token is the supervisor's own and is cancelled through the root scope): with
    /// the ancestors' flags it says whether the token is cancelled without locking the
    /// token's node (a guard's drop asks it, see `drop_path`).
    cancelled: AtomicBool,
    /// Set when the token is handed out (a child token, a clone for a scoped task):
    /// then the scope's end must cancel it, since someone may watch it.
    token_lent: AtomicBool,
    parent: Option<Arc<ScopeShared>>,
    /// Set once by the first cancel; only the root's is raised later (by shutdown).
    reason: Mutex<Option<CancelReason>>,
    /// Set once by the scope's sweep: no registration or transfer into it after that.
    closed: AtomicBool,
    /// Resources registered to this scope now: raised before an entry is published
    /// (SeqCst, see the module's header), lowered when it is retired.
    pub(crate) live: AtomicUsize,
    /// Background clean-ups of this scope's resources; the scope's end waits for them.
    /// Made by the first clean-up that outlives its release: most scopes never have one,
    /// and a tracker is an allocation (and a drop) on every scope's path.
    tracker: OnceLock<TaskTracker>,
    pub(crate) panicked: AtomicBool,
    pub(crate) grace: Duration,
}

/// What [`ScopeShared::adopt`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Adopted {
    /// The resource is this scope's now.
    Moved,
    /// This scope has closed, or the resource is no longer registered: nothing moved.
    Refused,
    /// Moved, but this scope closed meanwhile and its sweep may have missed it: the
    /// caller releases it (by the scope's end), unless the sweep got there first.
    ClosedMeanwhile,
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
            cancelled: AtomicBool::new(false),
            token_lent: AtomicBool::new(false),
            parent,
            reason: Mutex::new(None),
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
    #[inline]
    pub(crate) fn cleanups_done(&self) -> Option<impl Future<Output = ()> + Send + '_> {
        let t = self.tracker.get()?;
        t.close();
        Some(t.wait())
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

    /// Whether the scope has closed: a snapshot for a fail-fast check (admission);
    /// [`registered`](Self::registered) and [`adopt`](Self::adopt) decide.
    pub(crate) fn is_closed(&self) -> bool {
        // Acquire: pairs with the SeqCst store in `close`.
        self.closed.load(Ordering::Acquire)
    }

    /// Counts a resource about to be published in the registry to this scope (before
    /// its entry is inserted; see the module's header).
    pub(crate) fn count_in(&self) {
        // SeqCst: ordered with the read of `closed` in `registered` against `close`'s
        // store then read of `live`.
        self.live.fetch_add(1, Ordering::SeqCst);
    }

    /// Whether a resource counted in and then published in the registry stays
    /// registered: `false` if the scope has closed meanwhile (the caller then releases
    /// it, unless the sweep got there first).
    pub(crate) fn registered(&self) -> bool {
        // SeqCst: see `count_in`.
        !self.closed.load(Ordering::SeqCst)
    }

    /// Moves the registered resource `id` into this scope. The gauges move while the
    /// entry's shard is locked, so no release can see the entry under a scope whose
    /// count does not include it yet.
    pub(crate) fn adopt(self: &Arc<Self>, id: ResourceId, registry: &Registry) -> Adopted {
        if self.is_closed() {
            return Adopted::Refused;
        }
        self.count_in();
        let old = match registry.map.get_mut(&id) {
            Some(mut e) => std::mem::replace(&mut e.scope, self.clone()),
            None => {
                // Relaxed: a gauge; nothing was published under this count.
                self.live.fetch_sub(1, Ordering::Relaxed);
                return Adopted::Refused;
            }
        };
        // Relaxed: the old scope's gauge (its sweep looks for entries by scope).
        old.live.fetch_sub(1, Ordering::Relaxed);
        if self.registered() {
            Adopted::Moved
        } else {
            Adopted::ClosedMeanwhile
        }
    }

    /// Closes the scope to new registrations and transfers; returns whether its live
    /// count says something is left (then [`left`](Self::left) finds it). Inlined: it is
    /// on every scope's end, and most end with nothing left.
    #[inline]
    pub(crate) fn close(&self) -> bool {
        // SeqCst: see the module's header.
        self.closed.store(true, Ordering::SeqCst);
        self.live.load(Ordering::SeqCst) != 0
    }

    /// The ids still registered to this closed scope, newest first (reverse acquisition
    /// order): it filters the whole registry (one shard's read lock at a time), a cost
    /// paid on the leak path only (see [`close`](Self::close)).
    pub(crate) fn left(self: &Arc<Self>, registry: &Registry) -> Vec<ResourceId> {
        let mut ids: Vec<ResourceId> = registry
            .map
            .iter()
            .filter(|e| Arc::ptr_eq(&e.scope, self))
            .map(|e| *e.key())
            .collect();
        ids.sort_unstable_by(|a, b| b.cmp(a));
        ids
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
    #[inline]
    pub(crate) fn cancel_at_end(self: &Arc<Self>, holders: usize) {
        if Arc::strong_count(self) > holders || self.token_lent.load(Ordering::Acquire) {
            self.cancel_token();
        }
    }

    /// Cancels the scope's token (without a reason): the one way it is cancelled.
    pub(crate) fn cancel_token(&self) {
        // Release: pairs with the Acquire in `is_cancelled_fast`.
        self.cancelled.store(true, Ordering::Release);
        self.token.cancel();
    }

    /// Whether this scope's token is cancelled, from the flags of this scope and its
    /// ancestors (a token is cancelled with its parent): a few loads, where the
    /// token's own `is_cancelled` locks its node's mutex.
    fn is_cancelled_fast(&self) -> bool {
        let mut s = Some(self);
        while let Some(scope) = s {
            // Acquire: pairs with the Release in `cancel_token`.
            if scope.cancelled.load(Ordering::Acquire) {
                return true;
            }
            s = scope.parent.as_deref();
        }
        false
    }

    pub(crate) fn cancel(&self, reason: CancelReason) {
        self.reason
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert(reason);
        self.cancel_token();
    }

    /// Sets the reason even if one is set (shutdown raising `Shutdown` to
    /// `ForcedShutdown` or `Deadline`), and cancels.
    pub(crate) fn raise(&self, reason: CancelReason) {
        *self.reason.lock().unwrap_or_else(PoisonError::into_inner) = Some(reason);
        self.cancel_token();
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
        } else if self.is_cancelled_fast() && !self.ended_uncancelled() {
            ReleasePath::Cancelled
        } else {
            ReleasePath::Drop
        }
    }

    /// Whether the scope's end has begun with no cancel reason here or above: then its
    /// token was cancelled only by the end itself (for watchers), and a guard whose
    /// owner dropped it just before (its entry removed ahead of the sweep, the path read
    /// after the end) was dropped, not cancelled. Read only once a flag says cancelled
    /// (cold: kept out of every drop's path).
    #[cold]
    #[inline(never)]
    fn ended_uncancelled(&self) -> bool {
        if !self.closed.load(Ordering::Acquire) {
            return false;
        }
        let mut s = Some(self);
        while let Some(scope) = s {
            if scope
                .reason
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .is_some()
            {
                return false;
            }
            s = scope.parent.as_deref();
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flags_say_what_the_tokens_say() {
        let scopes = |cancel: usize| {
            let root = ScopeShared::root(CancellationToken::new(), Duration::ZERO);
            let a = ScopeShared::child(root.clone(), 1, ScopeName::new("a"), Duration::ZERO);
            let b = ScopeShared::child(a.clone(), 2, ScopeName::new("b"), Duration::ZERO);
            let all = [root, a, b];
            if let Some(s) = all.get(cancel) {
                s.cancel(CancelReason::Requested);
            }
            all
        };
        for cancel in 0..4 {
            let all = scopes(cancel);
            for (depth, s) in all.iter().enumerate() {
                assert_eq!(
                    s.is_cancelled_fast(),
                    s.token.is_cancelled(),
                    "{cancel} {depth}"
                );
                assert_eq!(s.is_cancelled_fast(), cancel <= depth, "{cancel} {depth}");
            }
        }
        // A scope nested in one already cancelled is born cancelled, both ways.
        let all = scopes(0);
        let late = ScopeShared::child(all[2].clone(), 3, ScopeName::new("late"), Duration::ZERO);
        assert!(late.token.is_cancelled() && late.is_cancelled_fast());
        // The end's cancel, when someone may watch, sets the flag too.
        let all = scopes(9);
        let watcher = all[2].clone();
        all[2].cancel_at_end(1);
        assert!(watcher.token.is_cancelled() && watcher.is_cancelled_fast());
    }
}
