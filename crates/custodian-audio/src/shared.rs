//! The decoder state shared by the guard, its blocking hops and its registry entry.
//!
//! Invariants:
//! - `state` is `Some` from a successful open until the first of: the reclaim runs, a
//!   panic inside the decoding library. Taking it drops the reader, which closes the file;
//! - `released` is set (Release) by the reclaim *before* it tries the lock, and read
//!   (Acquire) by a hop under the lock before it stores a freshly opened state and between
//!   packets, so a hop never installs or keeps decoding a state the registry gave up;
//! - the reclaim never waits for the lock: if a hop holds it, the take is handed to the
//!   blocking pool (`Cleanup::Blocking`), where it waits at most one packet.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};

use custodian::{Cleanup, Reclaim};

use crate::engine::State;
use crate::error::{Fail, panic_message};

#[derive(Default)]
pub(crate) struct Shared {
    state: Mutex<Option<State>>,
    released: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Option<State>> {
        // A panic under the lock is caught inside it and the state dropped; a poisoned
        // lock holds either `None` or an untouched state.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Installs a freshly opened state, unless the decoder was released meanwhile (the
    /// state is then dropped here, closing its file).
    pub(crate) fn install(&self, state: State) -> Result<(), Fail> {
        let mut g = self.lock();
        if self.released.load(Ordering::Acquire) {
            drop(g);
            drop(state);
            return Err(Fail::Released);
        }
        *g = Some(state);
        Ok(())
    }

    /// Runs `f` on the state, catching panics; a panic drops the state.
    pub(crate) fn with<T>(
        &self,
        f: impl FnOnce(&mut State, &AtomicBool) -> Result<T, Fail>,
    ) -> Result<T, Fail> {
        let mut g = self.lock();
        let Some(st) = g.as_mut() else {
            return Err(Fail::Released);
        };
        match catch_unwind(AssertUnwindSafe(|| f(st, &self.released))) {
            Ok(r) => r,
            Err(p) => {
                let dead = g.take();
                drop(g);
                // Dropping a half-updated reader must not unwind either.
                let _ = catch_unwind(AssertUnwindSafe(move || drop(dead)));
                Err(Fail::Panicked(panic_message(&*p)))
            }
        }
    }
}

/// What the registry holds: enough to close the decoder without its guard.
pub(crate) struct DecoderReclaim(pub(crate) Arc<Shared>);

impl Reclaim for DecoderReclaim {
    fn reclaim(self: Box<Self>) -> Cleanup {
        let shared = self.0;
        // Release: a hop that sees the flag also sees that nobody owns the state any more.
        shared.released.store(true, Ordering::Release);
        let busy = match shared.state.try_lock() {
            Ok(mut g) => {
                drop(g.take());
                false
            }
            Err(TryLockError::Poisoned(p)) => {
                drop(p.into_inner().take());
                false
            }
            Err(TryLockError::WouldBlock) => true,
        };
        if busy {
            // A hop is decoding; it stops at its next packet.
            return Cleanup::Blocking(Box::new(move || {
                let st = shared.lock().take();
                drop(st);
                Ok(())
            }));
        }
        Cleanup::Done(Ok(()))
    }
}
