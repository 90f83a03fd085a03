//! The drain's shared state: whether shutdown's drain phase has begun, the top-level
//! scopes it waits for, and how many new top-level scopes it refused.
//!
//! Invariants:
//! - `begun` fires once, when the drain begins, or when shutdown (or emergency clean-up)
//!   begins without one, or on `force`: it is what `Supervisor::draining` waits for;
//! - `draining` is set before `begun` fires and never cleared: from then on the root
//!   scope admits nothing new (no top-level scope, no root-scope resource or task);
//! - with a drain configured, a top-level scope holds a `top` token from before its
//!   admission check to its end, so that the drain either sees it running or the scope
//!   sees the flag and is refused (without one, nobody reads `top`: no token is taken).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Default)]
pub(crate) struct DrainState {
    /// Fires when the drain (or, without one, shutdown) begins.
    pub(crate) begun: CancellationToken,
    draining: AtomicBool,
    /// Every running top-level scope (a scope whose parent is the root), when a drain
    /// is configured.
    pub(crate) top: TaskTracker,
    refused: AtomicU64,
    /// Top-level scopes that ended by themselves during the drain.
    finished: AtomicUsize,
    /// Set when the drain is over (the scopes left are being cancelled).
    over: AtomicBool,
}

impl DrainState {
    /// Starts refusing new root-scope work, then wakes `draining()` waiters.
    pub(crate) fn begin(&self) {
        // SeqCst pairs with the load in `is_draining` after a scope took its `top`
        // token: either the drain counts the scope, or the scope sees the flag.
        self.draining.store(true, Ordering::SeqCst);
        self.begun.cancel();
    }

    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// A top-level scope ended; `cut` if shutdown had stopped waiting (forced, or the
    /// grace ran out): then it was cut off, it did not finish by itself. Called before
    /// the scope drops its `top` token, so that the drain reads the count after it.
    pub(crate) fn top_scope_ended(&self, cut: bool) {
        // SeqCst: orders the flags' loads after the drain's `begin` and `end` stores.
        if !cut && self.is_draining() && !self.over.load(Ordering::SeqCst) {
            self.finished.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Ends the drain; returns how many top-level scopes finished during it.
    pub(crate) fn end(&self) -> usize {
        self.over.store(true, Ordering::SeqCst);
        self.finished.load(Ordering::SeqCst)
    }

    /// Counts one refusal.
    pub(crate) fn refused(&self) {
        // Relaxed: a counter for the report.
        self.refused.fetch_add(1, Ordering::Relaxed);
    }

    /// How many new top-level scopes, root-scope resources and tasks were refused.
    pub(crate) fn refused_count(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}
