//! A handle shared between a guard and its registry entry, so that the registry can close
//! it even when the guard was forgotten.

use std::io;
use std::sync::{Arc, Mutex, PoisonError};

/// `Some(handle)` while the resource is held; taken (and dropped) on release.
///
/// The lock is held only for one non-blocking call (one `poll_*`), never across an await.
#[derive(Debug)]
pub(crate) struct Slot<T>(Mutex<Option<T>>);

impl<T> Slot<T> {
    pub(crate) fn new(value: T) -> Arc<Self> {
        Arc::new(Slot(Mutex::new(Some(value))))
    }

    /// Runs `f` on the handle, or fails if the resource has been reclaimed.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> io::Result<R> {
        // A panic inside `f` cannot leave an `Option<handle>` half-updated.
        let mut g = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        g.as_mut().map(f).ok_or_else(revoked)
    }

    /// Takes the handle out; `None` if it was already taken.
    pub(crate) fn take(&self) -> Option<T> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

/// The error of any operation on a guard whose resource was reclaimed by its scope's end
/// or by shutdown.
pub(crate) fn revoked() -> io::Error {
    io::Error::other("the resource was reclaimed by its scope's end or by shutdown")
}
