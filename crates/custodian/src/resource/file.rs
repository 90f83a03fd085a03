//! Managed files: `tokio::fs::File` with an owner.
//!
//! Opening returns a named future, [`OpenFile`]: it admits the acquisition at its first
//! poll, runs `open(2)` and the directory check on the blocking pool, and registers the
//! file in the poll that returns it (so a dropped future leaves nothing registered, and
//! the file is closed when the open finishes). The other `async fn`s here are method
//! calls on a guard the caller already owns; they stay `async fn`.

use std::fmt;
use std::future::Future;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::panic::Location;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::AsyncWriteExt;
use tokio::task::JoinHandle;

use crate::error::{Error, Operation, Result};
use crate::inner::Spec;
use crate::inner::quota_owner;
use crate::kind::ResourceKind;
use crate::registry::{Cleanup, Permits, Reclaim};
use crate::resource::slot::Slot;
use crate::scope::{Registration, Scope};

/// A file opened through custodian: a [`tokio::fs::File`] registered in a scope.
///
/// Reads, writes and seeks like the file it wraps ([`AsyncRead`](tokio::io::AsyncRead),
/// [`AsyncWrite`](tokio::io::AsyncWrite), [`AsyncSeek`](tokio::io::AsyncSeek)). Dropping it closes the file; [`close`](Self::close) also flushes
/// pending writes and reports their errors.
///
/// # Resource leaking
///
/// The file descriptor is shared with the registry entry, so a guard that escapes its
/// scope or is forgotten with `mem::forget` is still closed at scope end or shutdown (the
/// guard's operations then fail). Only the guard's small allocation leaks.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
/// let sup = tokio_custodian::Supervisor::builder().start()?;
/// let path = sup.temp_root().join("notes.txt");
/// let mut f = sup.create(&path).await?;
/// f.write_all(b"hello").await.unwrap();
/// f.close().await?;
/// let mut s = String::new();
/// sup.open(&path).await?.read_to_string(&mut s).await.unwrap();
/// assert_eq!(s, "hello");
/// # sup.shutdown().await; Ok(()) }
/// ```
#[must_use = "dropping a ManagedFile closes it"]
pub struct ManagedFile {
    reg: Registration,
    file: Arc<Slot<tokio::fs::File>>,
    path: PathBuf,
}

struct FileReclaim(Arc<Slot<tokio::fs::File>>);

impl Reclaim for FileReclaim {
    fn reclaim(self: Box<Self>) -> Cleanup {
        // Closing an fd is constant work; an operation in flight on the blocking pool
        // keeps its own handle until it finishes.
        drop(self.0.take());
        Cleanup::Done(Ok(()))
    }

    fn reclaim_now(self: Box<Self>) -> io::Result<()> {
        drop(self.0.try_take());
        Ok(())
    }
}

impl ManagedFile {
    /// Registers an open file. `op` is [`Operation::OpenFile`] for a new one,
    /// [`Operation::Persist`] for a temp file that became this file (not new work: a
    /// drain does not refuse it).
    pub(crate) fn register(
        scope: &Scope,
        file: tokio::fs::File,
        path: PathBuf,
        site: &'static Location<'static>,
        permits: Option<Permits>,
        op: Operation,
    ) -> Result<Self> {
        let slot = Slot::new(file);
        let spec = Spec {
            kind: ResourceKind::File,
            label: label_of(&path),
            path: Some(path.clone()),
            site,
            op,
        };
        let reg = scope.register_with(spec, Box::new(FileReclaim(slot.clone())), permits)?;
        Ok(ManagedFile {
            reg,
            file: slot,
            path,
        })
    }

    /// The path the file was opened at.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let f = sup.open("/dev/null").await?;
    /// assert_eq!(f.path(), std::path::Path::new("/dev/null"));
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's id in the registry.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let f = sup.open("/dev/null").await?;
    /// assert_eq!(sup.live()[0].id(), f.id());
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn id(&self) -> crate::ResourceId {
        self.reg.id()
    }

    /// The file's registration (to check it is still live or move it to another scope).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// assert!(sup.open("/dev/null").await?.registration().is_live());
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn registration(&self) -> &Registration {
        &self.reg
    }

    /// Flushes pending writes, closes the file and releases it.
    ///
    /// # Errors
    ///
    /// The error of a pending write, naming the path. The file is closed either way.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: if the future is dropped while flushing, the guard is dropped
    /// with it (the file is closed, a pending write may be lost).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// use tokio::io::AsyncWriteExt;
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let path = sup.temp_root().join("out.txt");
    /// let mut f = sup.create(&path).await?;
    /// f.write_all(b"done").await.unwrap();
    /// f.close().await?; // flushed, closed, released as `close`
    /// assert_eq!(std::fs::read(&path).unwrap(), b"done");
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub async fn close(mut self) -> Result<()> {
        let flushed = self.flush().await;
        let closed = self.reg.close().await;
        flushed.map_err(|e| Error::io(Operation::CloseFile, &self.path, e))?;
        closed
    }

    /// Stops managing the file and returns it: custodian no longer closes it.
    ///
    /// # Errors
    ///
    /// If the file had already been reclaimed by its scope's end or by shutdown.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let raw: tokio::fs::File = sup.open("/dev/null").await?.into_inner()?;
    /// assert_eq!(sup.stats().live(), 0);
    /// # drop(raw); sup.shutdown().await; Ok(()) }
    /// ```
    pub fn into_inner(self) -> Result<tokio::fs::File> {
        let ManagedFile { reg, file, path } = self;
        // Detach first: if a sweep got there first, it owns (and closed) the file.
        let taken = if reg.detach() { file.take() } else { None };
        taken.ok_or_else(|| Error::io(Operation::FileIo, path, super::slot::revoked()))
    }

    /// The file's metadata.
    ///
    /// # Errors
    ///
    /// The OS error, naming the path.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only reads. The `fstat` runs on the blocking pool on a duplicate
    /// of the fd, which is closed when it finishes.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// assert!(!sup.open("/dev/null").await?.metadata().await?.is_dir());
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub async fn metadata(&self) -> Result<std::fs::Metadata> {
        let fd = self.dup()?;
        self.blocking(move || std::fs::File::from(fd).metadata())
            .await
    }

    /// Flushes pending writes and syncs data and metadata to disk (`fsync`).
    ///
    /// # Errors
    ///
    /// The OS error, naming the path.
    ///
    /// # Cancel safety
    ///
    /// The guard stays usable. Dropped while flushing, the write in flight completes in
    /// the background and its error surfaces at the next operation (as with
    /// [`flush`](tokio::io::AsyncWriteExt::flush)); once the `fsync` has started on the
    /// blocking pool it completes, unreported.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// use tokio::io::AsyncWriteExt;
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let mut f = sup.create(sup.temp_root().join("x")).await?;
    /// f.write_all(b"durable").await.unwrap();
    /// f.sync_all().await?;
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub async fn sync_all(&mut self) -> Result<()> {
        self.flush()
            .await
            .map_err(|e| Error::io(Operation::FileIo, &self.path, e))?;
        let fd = self.dup()?;
        self.blocking(move || rustix::fs::fsync(fd).map_err(io::Error::from))
            .await
    }

    /// Flushes pending writes and truncates or extends the file to `len` bytes.
    ///
    /// # Errors
    ///
    /// The OS error, naming the path.
    ///
    /// # Cancel safety
    ///
    /// The guard stays usable. Dropped while flushing, the write in flight completes in
    /// the background and its error surfaces at the next operation; once the
    /// `ftruncate` has started on the blocking pool it completes, unreported: the file
    /// may or may not have its new length.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let mut f = sup.create(sup.temp_root().join("x")).await?;
    /// f.set_len(10).await?;
    /// assert_eq!(f.metadata().await?.len(), 10);
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub async fn set_len(&mut self, len: u64) -> Result<()> {
        self.flush()
            .await
            .map_err(|e| Error::io(Operation::FileIo, &self.path, e))?;
        let fd = self.dup()?;
        self.blocking(move || rustix::fs::ftruncate(fd, len).map_err(io::Error::from))
            .await
    }

    fn dup(&self) -> Result<OwnedFd> {
        self.file
            .with(|f| f.as_fd().try_clone_to_owned())
            .and_then(|r| r)
            .map_err(|e| Error::io(Operation::FileIo, &self.path, e))
    }

    async fn blocking<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> io::Result<R> + Send + 'static,
    ) -> Result<R> {
        tokio::task::spawn_blocking(f)
            .await
            .map_err(io::Error::other)
            .and_then(|r| r)
            .map_err(|e| Error::io(Operation::FileIo, &self.path, e))
    }
}

pub(crate) fn label_of(path: &Path) -> crate::label::Label {
    path.file_name()
        .map_or_else(|| path.to_string_lossy(), |n| n.to_string_lossy())
        .into()
}

crate::resource::slot::delegate_async_io!(ManagedFile, file);

impl fmt::Debug for ManagedFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagedFile")
            .field("id", &self.reg.id())
            .field("path", &self.path)
            .finish()
    }
}

/// Options for opening a [`ManagedFile`], like [`std::fs::OpenOptions`]. Made by
/// [`Scope::file_options`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
/// let sup = tokio_custodian::Supervisor::builder().start()?;
/// let root = sup.root();
/// let path = sup.temp_root().join("log");
/// let f = root.file_options().append(true).create(true).open(&path).await?;
/// assert_eq!(f.path(), path);
/// # sup.shutdown().await; Ok(()) }
/// ```
#[derive(Clone)]
#[must_use = "options do nothing until `open` is called"]
pub struct OpenOptions {
    scope: Scope,
    opts: std::fs::OpenOptions,
    /// Wait for quota room (the default) rather than fail fast.
    wait: bool,
}

macro_rules! flag {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        pub fn $name(mut self, on: bool) -> Self {
            self.opts.$name(on);
            self
        }
    };
}

impl OpenOptions {
    flag!(
        /// Open for reading.
        ///
        /// ```
        /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
        /// use tokio::io::AsyncWriteExt;
        /// let sup = tokio_custodian::Supervisor::builder().start()?;
        /// let f = sup.root().file_options().read(true).open("/dev/null").await?;
        /// assert_eq!(f.path(), std::path::Path::new("/dev/null"));
        /// # sup.shutdown().await; Ok(()) }
        /// ```
        read
    );
    flag!(
        /// Open for writing.
        ///
        /// ```
        /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
        /// use tokio::io::AsyncWriteExt;
        /// let sup = tokio_custodian::Supervisor::builder().start()?;
        /// let path = sup.temp_root().join("out");
        /// let mut f = sup.root().file_options().write(true).create(true).open(&path).await?;
        /// f.write_all(b"x").await.unwrap();
        /// f.close().await?;
        /// assert_eq!(std::fs::read(&path).unwrap(), b"x");
        /// # sup.shutdown().await; Ok(()) }
        /// ```
        write
    );
    flag!(
        /// Open for appending (implies writing).
        ///
        /// ```
        /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
        /// use tokio::io::AsyncWriteExt;
        /// let sup = tokio_custodian::Supervisor::builder().start()?;
        /// let path = sup.temp_root().join("log");
        /// std::fs::write(&path, "a").unwrap();
        /// let mut f = sup.root().file_options().append(true).open(&path).await?;
        /// f.write_all(b"b").await.unwrap();
        /// f.close().await?;
        /// assert_eq!(std::fs::read_to_string(&path).unwrap(), "ab");
        /// # sup.shutdown().await; Ok(()) }
        /// ```
        append
    );
    flag!(
        /// Truncate the file to zero length when opening it.
        ///
        /// ```
        /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
        /// use tokio::io::AsyncWriteExt;
        /// let sup = tokio_custodian::Supervisor::builder().start()?;
        /// let path = sup.temp_root().join("state");
        /// std::fs::write(&path, "old").unwrap();
        /// let f = sup.root().file_options().write(true).truncate(true).open(&path).await?;
        /// f.close().await?;
        /// assert_eq!(std::fs::read(&path).unwrap().len(), 0);
        /// # sup.shutdown().await; Ok(()) }
        /// ```
        truncate
    );
    flag!(
        /// Create the file if it does not exist.
        ///
        /// ```
        /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
        /// use tokio::io::AsyncWriteExt;
        /// let sup = tokio_custodian::Supervisor::builder().start()?;
        /// let path = sup.temp_root().join("new");
        /// sup.root().file_options().write(true).create(true).open(&path).await?.close().await?;
        /// assert!(path.exists());
        /// # sup.shutdown().await; Ok(()) }
        /// ```
        create
    );
    flag!(
        /// Create the file, failing if it exists (`O_EXCL`).
        ///
        /// ```
        /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
        /// use tokio::io::AsyncWriteExt;
        /// let sup = tokio_custodian::Supervisor::builder().start()?;
        /// let path = sup.temp_root().join("once");
        /// let opts = sup.root().file_options().write(true).create_new(true);
        /// opts.open(&path).await?.close().await?;
        /// let err = opts.open(&path).await.unwrap_err();
        /// assert_eq!(err.io_kind(), Some(std::io::ErrorKind::AlreadyExists));
        /// # sup.shutdown().await; Ok(()) }
        /// ```
        create_new
    );

    /// The permission bits of a newly created file (before the umask).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// use std::os::unix::fs::PermissionsExt;
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let path = sup.temp_root().join("private");
    /// let f = sup.root().file_options().write(true).create(true).mode(0o600).open(&path).await?;
    /// assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o077, 0);
    /// # drop(f); sup.shutdown().await; Ok(()) }
    /// ```
    pub fn mode(mut self, mode: u32) -> Self {
        self.opts.mode(mode);
        self
    }

    /// Fail fast with [`Error::QuotaExceeded`] instead of waiting when a
    /// [`Quota`](crate::Quota) has no room (see [`TempBuilder::no_wait`](crate::TempBuilder::no_wait)).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().quota(tokio_custodian::Quota::fds(0)).start()?;
    /// let err = sup.root().file_options().read(true).no_wait().open("/dev/null").await;
    /// assert!(matches!(err, Err(tokio_custodian::Error::QuotaExceeded { .. })));
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn no_wait(mut self) -> Self {
        self.wait = false;
        self
    }

    /// Opens the file at `path` and registers it in the scope. With a
    /// [`Quota`](crate::Quota) that counts files, it first waits for room (see
    /// [`Builder::quota`](crate::Builder::quota)).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] naming the path with [`Operation::OpenFile`]: the file does not
    /// exist, is a directory, is not permitted...; [`Error::ShuttingDown`] or
    /// [`Error::ScopeClosed`]; [`Error::QuotaExceeded`] with
    /// [`no_wait`](Self::no_wait). Nothing is left registered or open on error.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe. Nothing happens before the first poll; dropped while it waits for
    /// quota room, it takes nothing. The `open(2)` then runs on
    /// the blocking pool; if the future is dropped meanwhile, the file is closed when
    /// the open finishes and is never registered. Registration happens in the poll that
    /// returns the guard.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let opts = sup.root().file_options().read(true);
    /// let f = opts.open("/dev/null").await?; // registered before it is returned
    /// assert_eq!(sup.live()[0].path(), Some(std::path::Path::new("/dev/null")));
    /// let err = opts.open("/no/such/file").await.unwrap_err();
    /// assert_eq!(err.path(), Some(std::path::Path::new("/no/such/file")));
    /// # drop(f); sup.shutdown().await; Ok(()) }
    /// ```
    #[track_caller]
    pub fn open<P: AsRef<Path>>(&self, path: P) -> OpenFile {
        OpenFile {
            site: Location::caller(),
            path: path.as_ref().to_path_buf(),
            state: OpenState::Start(self.clone()),
        }
    }
}

/// The future of [`OpenOptions::open`], [`Scope::open`] and [`Scope::create`]: resolves
/// to the opened, registered [`ManagedFile`].
///
/// Nothing happens before its first poll. See [`OpenOptions::open`] for its cancel
/// safety.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
/// let sup = tokio_custodian::Supervisor::builder().start()?;
/// let opening: tokio_custodian::OpenFile = sup.open("/dev/null"); // nothing opened yet
/// let f = opening.await?;
/// assert_eq!(sup.stats().live(), 1);
/// # drop(f); sup.shutdown().await; Ok(()) }
/// ```
#[must_use = "futures do nothing unless polled; a dropped one opens nothing"]
pub struct OpenFile {
    site: &'static Location<'static>,
    path: PathBuf,
    state: OpenState,
}

enum OpenState {
    Start(OpenOptions),
    /// Admitted, waiting for quota room: dropping it returns what it took.
    Waiting {
        this: OpenOptions,
        take: Pin<Box<dyn Future<Output = Result<Permits>> + Send>>,
    },
    /// `open(2)` and the directory check run on the blocking pool.
    Running {
        scope: Scope,
        unit: JoinHandle<io::Result<std::fs::File>>,
        permits: Option<Permits>,
    },
    Done,
}

impl OpenFile {
    /// Starts `open(2)` on the blocking pool.
    fn run(&self, this: OpenOptions, permits: Option<Permits>) -> OpenState {
        let (opts, path) = (this.opts, self.path.clone());
        let unit = this
            .scope
            .inner()
            .handle
            .spawn_blocking(move || open_file(&opts, &path));
        OpenState::Running {
            scope: this.scope,
            unit,
            permits,
        }
    }
}

impl Future for OpenFile {
    type Output = Result<ManagedFile>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<ManagedFile>> {
        let op = Operation::OpenFile;
        loop {
            match std::mem::replace(&mut self.state, OpenState::Done) {
                OpenState::Start(this) => {
                    let inner = this.scope.inner().clone();
                    inner.admit(&this.scope.shared, op)?;
                    let kind = ResourceKind::File;
                    let mut permits = None;
                    if let Some(q) = inner.quotas.as_ref().filter(|q| q.applies(kind)) {
                        let shared = &this.scope.shared;
                        permits = q.take_if_room(kind, quota_owner(shared));
                        if permits.is_none() && this.wait {
                            let take = Box::pin(q.take(kind, op, shared, inner.root_token.clone()));
                            self.state = OpenState::Waiting { this, take };
                            continue;
                        }
                        if permits.is_none() {
                            permits = Some(q.try_take(kind, op, quota_owner(shared))?);
                        }
                    }
                    self.state = self.run(this, permits);
                }
                OpenState::Waiting { this, mut take } => {
                    let Poll::Ready(taken) = take.as_mut().poll(cx) else {
                        self.state = OpenState::Waiting { this, take };
                        return Poll::Pending;
                    };
                    // Admitted again: shutdown or the scope's end may have come meanwhile.
                    let permits = taken?;
                    this.scope.inner().admit(&this.scope.shared, op)?;
                    self.state = self.run(this, Some(permits));
                }
                OpenState::Running {
                    scope,
                    mut unit,
                    permits,
                } => {
                    let Poll::Ready(joined) = Pin::new(&mut unit).poll(cx) else {
                        self.state = OpenState::Running {
                            scope,
                            unit,
                            permits,
                        };
                        return Poll::Pending;
                    };
                    let path = std::mem::take(&mut self.path);
                    let file = match joined.map_err(io::Error::other).and_then(|r| r) {
                        Ok(file) => tokio::fs::File::from_std(file),
                        Err(e) => return Poll::Ready(Err(Error::io(op, path, e))),
                    };
                    return Poll::Ready(ManagedFile::register(
                        &scope, file, path, self.site, permits, op,
                    ));
                }
                OpenState::Done => panic!("`OpenFile` polled after completion"),
            }
        }
    }
}

/// Opens `path` (blocking). `open(2)` happily opens a directory read-only; a managed
/// *file* must not be one.
fn open_file(opts: &std::fs::OpenOptions, path: &Path) -> io::Result<std::fs::File> {
    let file = opts.open(path)?;
    let st = rustix::fs::fstat(&file)?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory {
        return Err(io::Error::new(
            io::ErrorKind::IsADirectory,
            "is a directory",
        ));
    }
    Ok(file)
}

impl fmt::Debug for OpenFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            OpenState::Start(_) => "start",
            OpenState::Waiting { .. } => "waiting for quota room",
            OpenState::Running { .. } => "running",
            OpenState::Done => "done",
        };
        f.debug_struct("OpenFile")
            .field("path", &self.path)
            .field("state", &state)
            .finish()
    }
}

impl fmt::Debug for OpenOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenOptions")
            .field("scope", &self.scope.name())
            .field("options", &self.opts)
            .finish()
    }
}

impl Scope {
    /// Options for opening a file in this scope. Nothing is set: call `read`, `write`...
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let f = sup.root().file_options().read(true).open("/dev/null").await?;
    /// # drop(f); sup.shutdown().await; Ok(()) }
    /// ```
    pub fn file_options(&self) -> OpenOptions {
        OpenOptions {
            scope: self.clone(),
            opts: std::fs::OpenOptions::new(),
            wait: true,
        }
    }

    /// Opens a file for reading.
    ///
    /// # Errors
    ///
    /// See [`OpenOptions::open`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe; see [`OpenOptions::open`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let err = sup.root().open("/no/such").await.unwrap_err();
    /// assert_eq!(err.to_string().contains("/no/such"), true);
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    #[track_caller]
    pub fn open<P: AsRef<Path>>(&self, path: P) -> OpenFile {
        self.file_options().read(true).open(path)
    }

    /// Creates (or truncates) a file for writing.
    ///
    /// # Errors
    ///
    /// See [`OpenOptions::open`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe in the sense of [`OpenOptions::open`]: nothing is left open or
    /// registered. The file may have been created or truncated by the time the future is
    /// dropped.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let f = sup.root().create(sup.temp_root().join("out")).await?;
    /// # drop(f); sup.shutdown().await; Ok(()) }
    /// ```
    #[track_caller]
    pub fn create<P: AsRef<Path>>(&self, path: P) -> OpenFile {
        self.file_options()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
    }
}
