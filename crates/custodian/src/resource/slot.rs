//! A handle shared between a guard and its registry entry, so that the registry can close
//! it even when the guard was forgotten.

use std::io;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;

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

    /// Takes the handle out without waiting: `None` if it was already taken or the lock
    /// is held (the emergency path, which may run in a panic hook on the thread that
    /// holds it; the handle is then closed when its guard drops).
    pub(crate) fn try_take(&self) -> Option<T> {
        match self.0.try_lock() {
            Ok(mut g) => g.take(),
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner().take(),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
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

/// Flattens "slot gone" and "operation failed" into one poll result.
pub(crate) fn ready<T>(r: io::Result<Poll<io::Result<T>>>) -> Poll<io::Result<T>> {
    r.unwrap_or_else(|e| Poll::Ready(Err(e)))
}

/// Implements `AsyncRead`, `AsyncWrite` and `AsyncSeek` for a guard by delegating each
/// poll to the handle in its `Arc<Slot<_>>` field (one short lock per poll).
macro_rules! delegate_async_io {
    ($guard:ty, $field:ident) => {
        impl tokio::io::AsyncRead for $guard {
            fn poll_read(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &mut tokio::io::ReadBuf<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                $crate::resource::slot::ready(
                    self.$field
                        .with(|f| std::pin::Pin::new(f).poll_read(cx, buf)),
                )
            }
        }

        impl tokio::io::AsyncWrite for $guard {
            fn poll_write(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                $crate::resource::slot::ready(
                    self.$field
                        .with(|f| std::pin::Pin::new(f).poll_write(cx, buf)),
                )
            }

            fn poll_flush(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                $crate::resource::slot::ready(
                    self.$field.with(|f| std::pin::Pin::new(f).poll_flush(cx)),
                )
            }

            fn poll_shutdown(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                $crate::resource::slot::ready(
                    self.$field
                        .with(|f| std::pin::Pin::new(f).poll_shutdown(cx)),
                )
            }
        }

        impl tokio::io::AsyncSeek for $guard {
            fn start_seek(
                self: std::pin::Pin<&mut Self>,
                position: std::io::SeekFrom,
            ) -> std::io::Result<()> {
                self.$field
                    .with(|f| std::pin::Pin::new(f).start_seek(position))?
            }

            fn poll_complete(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<u64>> {
                $crate::resource::slot::ready(
                    self.$field
                        .with(|f| std::pin::Pin::new(f).poll_complete(cx)),
                )
            }
        }
    };
}

pub(crate) use delegate_async_io;
