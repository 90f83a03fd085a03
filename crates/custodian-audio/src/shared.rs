//! The decoder state shared by the guard, its blocking hops and its registry entry.
//!
//! Invariants:
//! - `state` is `Some` from a successful open until the first of: the reclaim runs, a
//!   panic inside the decoding library. Taking it drops the reader, which closes the file;
//! - `released` is set (Release) by the reclaim *before* it tries the lock, and read
//!   (Acquire) by a hop under the lock before it stores a freshly opened state and between
//!   packets, so a hop never installs or keeps decoding a state the registry gave up;
//! - the reclaim never waits for the lock: if a hop holds it, the take is handed to the
//!   blocking pool (`Cleanup::Blocking`), where it waits at most one packet;
//! - `ahead` (the read-ahead, see `ahead.rs`) has its own lock, never held together with
//!   `state`'s; the reclaim empties it, and reads fail once `released` is set.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};

use tokio_custodian::{Cleanup, Reclaim};

use crate::ahead::Ahead;
use crate::engine::State;
use crate::error::{Fail, panic_message};

#[derive(Default)]
pub(crate) struct Shared {
    state: Mutex<Option<State>>,
    released: AtomicBool,
    ahead: Mutex<Ahead>,
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

    /// The read-ahead. Held only for a push, a take or a clear (a copy of one read at
    /// most), so fit for an async thread; nothing under it panics but an allocation.
    pub(crate) fn ahead(&self) -> MutexGuard<'_, Ahead> {
        self.ahead.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the registry gave the decoder up.
    pub(crate) fn is_released(&self) -> bool {
        // Acquire pairs with the reclaim's Release store.
        self.released.load(Ordering::Acquire)
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
        // What was decoded ahead goes now; a producer in flight stops at its next packet
        // and wakes a waiting read, which then sees the flag.
        shared.ahead().clear();
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

    /// Emergency: never waits for the lock. A decode holding it (or a thread that
    /// panicked while holding it) sees `released` and drops the state itself when it
    /// lets go; the busy decoder is reported, not waited for.
    fn reclaim_now(self: Box<Self>) -> std::io::Result<()> {
        let shared = self.0;
        // Release: as in `reclaim`.
        shared.released.store(true, Ordering::Release);
        // The read-ahead's lock is never held for long, but an emergency does not wait
        // for it either: the queue then goes with the guard.
        if let Ok(mut a) = shared.ahead.try_lock() {
            a.clear();
        }
        match shared.state.try_lock() {
            Ok(mut g) => drop(g.take()),
            Err(TryLockError::Poisoned(p)) => drop(p.into_inner().take()),
            Err(TryLockError::WouldBlock) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::ResourceBusy,
                    "the decoder was busy (its lock held); it closes when the holder lets go",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::limits::Limits;

    /// A minimal 16-bit mono WAV of `frames` silent frames.
    pub(crate) fn wav(frames: u32) -> Vec<u8> {
        let mut b = b"RIFF".to_vec();
        b.extend((36 + 2 * frames).to_le_bytes());
        b.extend(b"WAVEfmt ");
        b.extend(16u32.to_le_bytes());
        for v in [1u16, 1] {
            b.extend(v.to_le_bytes());
        }
        b.extend(8_000u32.to_le_bytes());
        b.extend(16_000u32.to_le_bytes());
        for v in [2u16, 16] {
            b.extend(v.to_le_bytes());
        }
        b.extend(b"data");
        b.extend((2 * frames).to_le_bytes());
        b.extend(vec![0; 2 * frames as usize]);
        b
    }

    #[test]
    fn a_panic_under_the_lock_becomes_an_error_and_drops_the_state() {
        let path = std::env::temp_dir().join(format!("ca-panic-{}.wav", std::process::id()));
        std::fs::write(&path, wav(100)).unwrap();
        let (state, _) = crate::engine::open(&path, &Limits::default()).unwrap();
        let shared = Shared::default();
        shared.install(state).unwrap();
        let r: Result<(), Fail> = shared.with(|_, _| panic!("decoder bug"));
        assert!(
            matches!(r, Err(Fail::Panicked(ref m)) if m == "decoder bug"),
            "{r:?}"
        );
        // The state (and its file) is gone; the lock is usable.
        assert!(matches!(shared.with(|_, _| Ok(())), Err(Fail::Released)));
        std::fs::remove_file(path).unwrap();
    }

    /// The emergency path runs where a panic left the decoder's lock held (a panic hook
    /// on the decoding thread): it must report the busy decoder, never wait for the lock.
    #[test]
    fn emergency_reclaim_never_waits_for_the_lock() {
        let path = std::env::temp_dir().join(format!("ca-now-{}.wav", std::process::id()));
        std::fs::write(&path, wav(100)).unwrap();
        let (state, _) = crate::engine::open(&path, &Limits::default()).unwrap();
        let shared = Arc::new(Shared::default());
        shared.install(state).unwrap();
        let held = shared.lock();
        let (tx, rx) = std::sync::mpsc::channel();
        let reclaim = Box::new(DecoderReclaim(shared.clone()));
        std::thread::spawn(move || tx.send(reclaim.reclaim_now()).unwrap());
        let r = rx
            .recv_timeout(std::time::Duration::from_secs(2))
            .expect("reclaim_now waited for the lock");
        assert_eq!(r.unwrap_err().kind(), std::io::ErrorKind::ResourceBusy);
        assert!(shared.released.load(Ordering::Acquire));
        drop(held);
        // Not busy: the state is dropped at once.
        let (state, _) = crate::engine::open(&path, &Limits::default()).unwrap();
        let fresh = Arc::new(Shared::default());
        fresh.install(state).unwrap();
        Box::new(DecoderReclaim(fresh.clone()))
            .reclaim_now()
            .unwrap();
        assert!(fresh.lock().is_none());
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn reclaim_while_a_hop_holds_the_lock_hands_the_close_to_the_blocking_pool() {
        let path = std::env::temp_dir().join(format!("ca-busy-{}.wav", std::process::id()));
        std::fs::write(&path, wav(100)).unwrap();
        let (state, _) = crate::engine::open(&path, &Limits::default()).unwrap();
        let shared = Arc::new(Shared::default());
        shared.install(state).unwrap();
        let held = shared.lock();
        let cleanup = Box::new(DecoderReclaim(shared.clone())).reclaim();
        assert!(matches!(cleanup, Cleanup::Blocking(_)));
        // A hop holding the lock now sees the flag and stops.
        assert!(shared.released.load(Ordering::Acquire));
        drop(held);
        let Cleanup::Blocking(mut work) = cleanup else {
            unreachable!()
        };
        work().unwrap();
        assert!(shared.lock().is_none());
        // A state opened after the release is refused and dropped.
        let (late, _) = crate::engine::open(&path, &Limits::default()).unwrap();
        assert!(matches!(shared.install(late), Err(Fail::Released)));
        std::fs::remove_file(path).unwrap();
    }
}
