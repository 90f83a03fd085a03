//! Acquiring an atomic writer: `Scope::atomic_file`, `Scope::atomic_write` and their
//! named futures.

use std::fmt;
use std::future::Future;
use std::io;
use std::panic::Location;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::error::{Error, Operation, Result};
use crate::inner::Need;
use crate::kind::ResourceKind;
use crate::quota::ATOMIC_FDS;
use crate::scope::Scope;

use super::{AtomicFile, Bytes, Durability, os};

/// The future of [`Scope::atomic_file`]: resolves to a registered [`AtomicFile`].
///
/// Cancel safe: the temp file is opened and registered as one unit on the blocking pool;
/// a dropped future drops (and so discards) its output.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
/// let sup = tokio_custodian::Supervisor::builder().start()?;
/// let creating: tokio_custodian::CreateAtomicFile = sup.atomic_file(sup.temp_root().join("out"));
/// let f = creating.await?;
/// assert_eq!(sup.live().len(), 1); // its temp file, registered
/// # f.discard().await?; sup.shutdown().await; Ok(()) }
/// ```
#[must_use = "futures do nothing unless polled"]
pub struct CreateAtomicFile(Pin<Box<dyn Future<Output = Result<AtomicFile>> + Send>>);

impl Future for CreateAtomicFile {
    type Output = Result<AtomicFile>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.as_mut().poll(cx)
    }
}

impl fmt::Debug for CreateAtomicFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CreateAtomicFile(..)")
    }
}

/// The future of [`Scope::atomic_write`].
///
/// Not cancel safe in the sense of [`AtomicFile::commit_with`]: once the commit runs on
/// the blocking pool it completes; the target is the complete old or new file either way.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
/// let sup = tokio_custodian::Supervisor::builder().start()?;
/// let target = sup.temp_root().join("config");
/// let writing: tokio_custodian::AtomicWrite = sup.atomic_write(&target, "k = 1\n");
/// writing.await?;
/// assert_eq!(std::fs::read_to_string(&target).unwrap(), "k = 1\n");
/// # sup.shutdown().await; Ok(()) }
/// ```
#[must_use = "futures do nothing unless polled"]
pub struct AtomicWrite(Pin<Box<dyn Future<Output = Result<()>> + Send>>);

impl Future for AtomicWrite {
    type Output = Result<()>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.as_mut().poll(cx)
    }
}

impl fmt::Debug for AtomicWrite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AtomicWrite(..)")
    }
}

impl Scope {
    /// Opens an [`AtomicFile`] for `path`, registered in this scope.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] with [`Operation::AtomicWrite`] naming `path`: its directory does
    /// not exist or is read-only (`ReadOnlyFilesystem`, `PermissionDenied`), the disk is
    /// full...; [`Error::ShuttingDown`] or [`Error::ScopeClosed`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: see [`CreateAtomicFile`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let err = sup.root().atomic_file("/no/such/dir/x").await.unwrap_err();
    /// assert_eq!(err.io_kind(), Some(std::io::ErrorKind::NotFound));
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    #[track_caller]
    pub fn atomic_file<P: AsRef<Path>>(&self, path: P) -> CreateAtomicFile {
        let site = Location::caller();
        let (scope, target) = (self.clone(), path.as_ref().to_path_buf());
        CreateAtomicFile(Box::pin(async move {
            let op = Operation::AtomicWrite;
            scope.inner().admit(&scope.shared, op)?;
            // Room for its two fds (the temp file, the directory) before the opens.
            let need = Need {
                kind: ResourceKind::TempFile,
                fds: Some(ATOMIC_FDS),
            };
            let permits = scope.inner().room(&scope.shared, need, op).await?;
            let handle = scope.inner().handle.clone();
            // Open and register as one unit: a dropped future leaves nothing unregistered.
            handle
                .spawn_blocking(move || {
                    let opened = os::open_temp(&target).map_err(|e| Error::io(op, &target, e))?;
                    AtomicFile::register(&scope, opened, target, site, permits)
                })
                .await
                .map_err(|e| Error::io(op, "atomic write", io::Error::other(e)))?
        }))
    }

    /// Writes `bytes` to `path` atomically and durably: [`atomic_file`](Self::atomic_file)
    /// then [`AtomicFile::commit`], with the write done inside the commit's blocking unit.
    ///
    /// # Errors
    ///
    /// As [`atomic_file`](Self::atomic_file) and [`AtomicFile::commit_with`].
    ///
    /// # Cancel safety
    ///
    /// See [`AtomicWrite`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let path = sup.temp_root().join("state");
    /// sup.root().atomic_write(&path, b"v2".to_vec()).await?;
    /// assert_eq!(std::fs::read(&path).unwrap(), b"v2");
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    #[track_caller]
    pub fn atomic_write<P, B>(&self, path: P, bytes: B) -> AtomicWrite
    where
        P: AsRef<Path>,
        B: AsRef<[u8]> + Send + 'static,
    {
        let create = self.atomic_file(path);
        // Boxed, not copied: an `Arc<[u8]>` or a `Vec` is written where it is.
        let bytes: Bytes = Box::new(bytes);
        AtomicWrite(Box::pin(async move {
            let f = create.await?;
            f.finish(Some(bytes), Durability::Durable, true).await
        }))
    }
}
