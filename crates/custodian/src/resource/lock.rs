//! File locks as resources: `flock(2)`, held by a registered guard.
//!
//! The calls are rustix's `flock`, the very system call behind std's `File::lock` family
//! on Linux (same semantics: per open file description, dropped on close), because std's
//! methods need Rust 1.89 and the crate's MSRV is 1.85. Moving to `File::try_lock` is a
//! one-line change once the MSRV is raised.
//!
//! Acquisition never parks a runtime thread: it opens the file on the blocking pool, then
//! polls `try_lock` with exponential backoff and jitter (1 ms up to 50 ms) on the async
//! thread. A blocking `lock()` on the blocking pool would be fairer, but it cannot be
//! cancelled or timed out: the thread stays blocked, and when it finally gets the lock
//! nobody wants it. With `try_lock`, a dropped or timed-out acquisition holds nothing
//! from the moment it is dropped (the fd is closed, which releases a `flock`).
//!
//! The lock belongs to the open file description: the fd is `O_CLOEXEC` (std's default),
//! so a child started with `exec` does not inherit it; closing the fd (release on any
//! path) unlocks it; the kernel drops it when the owner dies.

use std::fmt;
use std::future::Future;
use std::io;
use std::panic::Location;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustix::fs::FlockOperation;
use rustix::io::Errno;

use crate::error::{Error, Operation, Result};
use crate::inner::Spec;
use crate::kind::ResourceKind;
use crate::registry::{Cleanup, Reclaim};
use crate::resource::retry::{jittered, sleep_or_cancel};
use crate::resource::slot::Slot;
use crate::scope::{Registration, Scope};

/// Shared (readers) or exclusive (one writer).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
/// let sup = tokio_custodian::Supervisor::builder().start()?;
/// let path = sup.temp_root().join("db.lock");
/// let a = sup.file_lock(&path).shared().acquire().await?;
/// let b = sup.file_lock(&path).shared().try_acquire().await?; // readers share it
/// assert_eq!((a.mode(), b.mode()), (tokio_custodian::LockMode::Shared, tokio_custodian::LockMode::Shared));
/// # drop((a, b)); sup.shutdown().await; Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LockMode {
    /// Any number of shared holders, no exclusive one.
    Shared,
    /// One holder.
    Exclusive,
}

/// A held `flock` on a file, registered as [`ResourceKind::Lock`] (so
/// [`Supervisor::live`](crate::Supervisor::live) shows which lock, since when, taken
/// where). Released (the fd closed) on every path: [`unlock`](Self::unlock), drop,
/// scope end, shutdown.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
/// let sup = tokio_custodian::Supervisor::builder().start()?;
/// let path = sup.temp_root().join("db.lock");
/// let held = sup.file_lock(&path).acquire().await?;
/// let busy = sup.file_lock(&path).try_acquire().await.unwrap_err();
/// assert_eq!(busy.io_kind(), Some(std::io::ErrorKind::WouldBlock));
/// assert_eq!(sup.live()[0].kind(), tokio_custodian::ResourceKind::Lock);
/// held.unlock().await?;
/// # sup.shutdown().await; Ok(()) }
/// ```
#[must_use = "dropping a FileLock unlocks it"]
pub struct FileLock {
    reg: Registration,
    // Held only so that the fd (and with it the lock) lives as long as the guard; the
    // registry entry shares it and closes it on release.
    _file: Arc<Slot<std::fs::File>>,
    path: PathBuf,
    mode: LockMode,
}

struct LockReclaim(Arc<Slot<std::fs::File>>);

impl Reclaim for LockReclaim {
    fn reclaim(self: Box<Self>) -> Cleanup {
        // Closing the fd releases the `flock` (no dup of it exists).
        drop(self.0.take());
        Cleanup::Done(Ok(()))
    }

    fn reclaim_now(self: Box<Self>) -> io::Result<()> {
        drop(self.0.try_take());
        Ok(())
    }
}

impl FileLock {
    /// The locked file's path.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let path = sup.temp_root().join("db.lock");
    /// let lock = sup.file_lock(&path).acquire().await?;
    /// assert_eq!(lock.path(), path);
    /// # drop(lock); sup.shutdown().await; Ok(()) }
    /// ```
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Shared or exclusive.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let path = sup.temp_root().join("db.lock");
    /// let lock = sup.file_lock(&path).acquire().await?;
    /// assert_eq!(lock.mode(), tokio_custodian::LockMode::Exclusive); // the default
    /// # drop(lock); sup.shutdown().await; Ok(()) }
    /// ```
    pub fn mode(&self) -> LockMode {
        self.mode
    }

    /// The lock's registration.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let path = sup.temp_root().join("db.lock");
    /// let lock = sup.file_lock(&path).acquire().await?;
    /// assert!(lock.registration().is_live());
    /// # drop(lock); sup.shutdown().await; Ok(()) }
    /// ```
    pub fn registration(&self) -> &Registration {
        &self.reg
    }

    /// Unlocks (closes the fd) and releases the guard.
    ///
    /// # Errors
    ///
    /// None in practice (closing an fd); kept for symmetry with the other guards.
    ///
    /// # Cancel safety
    ///
    /// The lock is released at the first poll.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let path = sup.temp_root().join("db.lock");
    /// let lock = sup.file_lock(&path).acquire().await?;
    /// lock.unlock().await?;
    /// sup.file_lock(&path).try_acquire().await?; // free again
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub async fn unlock(self) -> Result<()> {
        self.reg.close().await
    }
}

impl fmt::Debug for FileLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileLock")
            .field("id", &self.reg.id())
            .field("path", &self.path)
            .field("mode", &self.mode)
            .finish()
    }
}

/// Options for taking a [`FileLock`]; made by [`Scope::file_lock`]. Exclusive and
/// without a timeout unless set.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
/// let sup = tokio_custodian::Supervisor::builder().start()?;
/// let path = sup.temp_root().join("db.lock");
/// use std::time::Duration;
/// let opts: tokio_custodian::LockOptions = sup.file_lock(&path).shared().timeout(Duration::from_secs(1));
/// let lock = opts.acquire().await?;
/// # drop(lock); sup.shutdown().await; Ok(()) }
/// ```
#[derive(Clone, Debug)]
#[must_use = "options do nothing until `acquire` or `try_acquire` is called"]
pub struct LockOptions {
    scope: Scope,
    path: PathBuf,
    mode: LockMode,
    timeout: Option<Duration>,
}

impl LockOptions {
    /// A shared lock.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let path = sup.temp_root().join("db.lock");
    /// let _r1 = sup.file_lock(&path).shared().acquire().await?;
    /// let _r2 = sup.file_lock(&path).shared().try_acquire().await?;
    /// assert!(sup.file_lock(&path).exclusive().try_acquire().await.is_err());
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn shared(mut self) -> Self {
        self.mode = LockMode::Shared;
        self
    }

    /// An exclusive lock (the default).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let path = sup.temp_root().join("db.lock");
    /// let _w = sup.file_lock(&path).exclusive().acquire().await?;
    /// assert!(sup.file_lock(&path).shared().try_acquire().await.is_err());
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn exclusive(mut self) -> Self {
        self.mode = LockMode::Exclusive;
        self
    }

    /// Gives up after `timeout` with a `TimedOut` error.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let path = sup.temp_root().join("db.lock");
    /// use std::time::Duration;
    /// let _held = sup.file_lock(&path).acquire().await?;
    /// let err = sup.file_lock(&path).timeout(Duration::from_millis(50)).acquire().await.unwrap_err();
    /// assert_eq!(err.io_kind(), Some(std::io::ErrorKind::TimedOut));
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Waits for the lock (up to the timeout, if set). The file is created (0644 &
    /// !umask) if missing; a file that cannot be opened for writing is opened read-only.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] with [`Operation::Lock`] naming the path: `TimedOut` after the
    /// timeout, `Interrupted` if the scope is cancelled meanwhile, or the open's error;
    /// [`Error::ShuttingDown`] or [`Error::ScopeClosed`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a dropped acquisition holds no lock (its fd is closed at once, or
    /// when the open on the blocking pool finishes).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let path = sup.temp_root().join("db.lock");
    /// let lock = sup.file_lock(&path).acquire().await?; // waits while another holds it
    /// assert_eq!(sup.live()[0].kind(), tokio_custodian::ResourceKind::Lock);
    /// # drop(lock); sup.shutdown().await; Ok(()) }
    /// ```
    #[track_caller]
    pub fn acquire(self) -> AcquireLock {
        self.start(Location::caller(), true)
    }

    /// Takes the lock now or fails with `WouldBlock`.
    ///
    /// # Errors
    ///
    /// As [`acquire`](Self::acquire), with `WouldBlock` if the lock is held elsewhere.
    ///
    /// # Cancel safety
    ///
    /// As [`acquire`](Self::acquire).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let path = sup.temp_root().join("db.lock");
    /// let _held = sup.file_lock(&path).acquire().await?;
    /// let busy = sup.file_lock(&path).try_acquire().await.unwrap_err();
    /// assert_eq!(busy.io_kind(), Some(std::io::ErrorKind::WouldBlock));
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    #[track_caller]
    pub fn try_acquire(self) -> AcquireLock {
        self.start(Location::caller(), false)
    }

    fn start(self, site: &'static Location<'static>, wait: bool) -> AcquireLock {
        AcquireLock(Box::pin(async move {
            let op = Operation::Lock;
            let LockOptions {
                scope,
                path,
                mode,
                timeout,
            } = self;
            scope.inner().admit(&scope.shared, op)?;
            // Room for its fd before the open: waited for, as for a file.
            let permits = (scope.inner())
                .room(&scope.shared, ResourceKind::Lock.into(), op)
                .await?;
            let p = path.clone();
            let file = scope
                .inner()
                .handle
                .spawn_blocking(move || open_lock_file(&p))
                .await
                .map_err(io::Error::other)
                .and_then(|r| r)
                .map_err(|e| Error::io(op, &path, e))?;
            // A timeout too far to represent is no timeout (saturating, never a panic).
            let deadline = timeout.and_then(|t| tokio::time::Instant::now().checked_add(t));
            let mut delay = Duration::from_millis(1);
            loop {
                let how = match mode {
                    LockMode::Shared => FlockOperation::NonBlockingLockShared,
                    LockMode::Exclusive => FlockOperation::NonBlockingLockExclusive,
                };
                match rustix::fs::flock(&file, how) {
                    Ok(()) => break,
                    Err(Errno::WOULDBLOCK) if !wait => {
                        return Err(Error::io(op, &path, io::ErrorKind::WouldBlock.into()));
                    }
                    Err(Errno::WOULDBLOCK | Errno::INTR) => {}
                    Err(e) => return Err(Error::io(op, &path, e.into())),
                }
                let mut pause = jittered(delay);
                if let Some(d) = deadline {
                    let left = d.saturating_duration_since(tokio::time::Instant::now());
                    if left.is_zero() {
                        let msg = format!("{mode:?} lock still held elsewhere after {timeout:?}");
                        return Err(Error::io(
                            op,
                            &path,
                            io::Error::new(io::ErrorKind::TimedOut, msg),
                        ));
                    }
                    pause = pause.min(left);
                }
                if !sleep_or_cancel(pause, Some(&scope.token())).await {
                    let e = io::Error::new(io::ErrorKind::Interrupted, "scope cancelled");
                    return Err(Error::io(op, &path, e));
                }
                delay = delay.saturating_mul(2).min(Duration::from_millis(50));
            }
            let slot = Slot::new(file);
            let spec = Spec {
                kind: ResourceKind::Lock,
                label: format!(
                    "{} {}",
                    if mode == LockMode::Shared {
                        "shared"
                    } else {
                        "exclusive"
                    },
                    crate::resource::file::label_of(&path)
                )
                .into(),
                path: Some(path.clone()),
                site,
                op,
            };
            let reg = scope.register_with(spec, Box::new(LockReclaim(slot.clone())), permits)?;
            Ok(FileLock {
                reg,
                _file: slot,
                path,
                mode,
            })
        }))
    }
}

/// Opens (creating if missing) the file to lock; read-only if it cannot be written.
fn open_lock_file(path: &Path) -> io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let rw = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(path);
    match rw {
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem
            ) =>
        {
            std::fs::File::open(path)
        }
        r => r,
    }
}

/// The future of [`LockOptions::acquire`] and [`LockOptions::try_acquire`].
///
/// Cancel safe: see [`LockOptions::acquire`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
/// let sup = tokio_custodian::Supervisor::builder().start()?;
/// let path = sup.temp_root().join("db.lock");
/// let acquiring: tokio_custodian::AcquireLock = sup.file_lock(&path).acquire();
/// let lock = acquiring.await?;
/// # drop(lock); sup.shutdown().await; Ok(()) }
/// ```
#[must_use = "futures do nothing unless polled"]
pub struct AcquireLock(Pin<Box<dyn Future<Output = Result<FileLock>> + Send>>);

impl Future for AcquireLock {
    type Output = Result<FileLock>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.as_mut().poll(cx)
    }
}

impl fmt::Debug for AcquireLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AcquireLock(..)")
    }
}

impl Scope {
    /// Options to lock `path` (a `flock`), held by a guard registered in this scope.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// use std::time::Duration;
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let path = sup.temp_root().join("shared.lock");
    /// let a = sup.root().file_lock(&path).shared().acquire().await?;
    /// let b = sup.root().file_lock(&path).shared().try_acquire().await?;
    /// let x = sup.root().file_lock(&path).timeout(Duration::from_millis(20)).acquire().await;
    /// assert_eq!(x.unwrap_err().io_kind(), Some(std::io::ErrorKind::TimedOut));
    /// # drop((a, b)); sup.shutdown().await; Ok(()) }
    /// ```
    pub fn file_lock<P: AsRef<Path>>(&self, path: P) -> LockOptions {
        LockOptions {
            scope: self.clone(),
            path: path.as_ref().to_path_buf(),
            mode: LockMode::Exclusive,
            timeout: None,
        }
    }
}
