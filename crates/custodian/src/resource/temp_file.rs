//! Managed temp files, created relative to the private temp root's fd (mode 0600).
//!
//! The open file lives in a [`Slot`] shared by the guard and the registry entry, so a
//! sweep can close it without the guard. Moving the file out (`keep`, `persist`,
//! `persist_noclobber`) flushes, then goes through the shared move unit (see
//! [`move_out`]), which takes the entry out of the registry first.

use std::ffi::OsStr;
use std::fmt;
use std::future::Future;
use std::io;
use std::panic::Location;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

use tokio::io::AsyncWriteExt;

use crate::error::{Error, Operation, Result};
use crate::inner::Spec;
use crate::kind::ResourceKind;
use crate::registry::{ByteCharge, Cleanup, Permits, Reclaim};
use crate::resource::ManagedFile;
use crate::resource::persist::{Clobber, Movable, PersistError, kept_path, move_out};
use crate::resource::slot::{Slot, revoked};
use crate::scope::{Registration, Scope};
use crate::sys::FileId;
use crate::sys::create::create_file_at;
use crate::sys::remove::remove_file_at;
use crate::sys::root::TempRoot;
use name::CName;

type Handle = tokio::fs::File;

/// A temp file inside the supervisor's private temp root, removed when released.
///
/// Reads, writes and seeks like a file. Dropping it closes the file and unlinks it
/// (constant work: one `stat` and one `unlink`, relative to the root's directory fd).
/// [`close`](Self::close) does the same and reports errors; [`persist`](Self::persist)
/// moves it out of the root and keeps it.
///
/// # Security
///
/// The file is created exclusively (`O_EXCL`, relative to the root's directory fd) with
/// an unpredictable name inside a root only the owner can enter (mode 0700), so another
/// user can neither read it nor race its name. Its own mode is exactly 0600 whatever the
/// umask, so it stays private after [`persist`](Self::persist) or [`keep`](Self::keep)
/// too. Removal is relative to the root's directory fd and checks the device and
/// inode recorded at creation: a symlink planted at its name is unlinked, never followed;
/// a different file put in its place is left alone and reported as a clean-up failure.
///
/// # Resource leaking
///
/// The registry entry holds the file's fd and identity, so a guard that escapes its
/// scope or is forgotten is still closed and unlinked at scope end or shutdown, and
/// reported as a leak with its creation site.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
/// use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
/// let sup = tokio_custodian::Supervisor::builder().start()?;
/// let mut t = sup.temp_file().await?;
/// t.write_all(b"scratch").await.unwrap();
/// t.rewind().await.unwrap();
/// let mut s = String::new();
/// t.read_to_string(&mut s).await.unwrap();
/// assert_eq!(s, "scratch");
/// let path = t.path().to_path_buf();
/// t.close().await?;
/// assert!(!path.exists());
/// # sup.shutdown().await; Ok(()) }
/// ```
#[must_use = "dropping a TempFile removes it"]
pub struct TempFile {
    reg: Registration,
    file: Arc<Slot<Handle>>,
    path: PathBuf,
    fid: FileId,
    // Weak: a forgotten guard must not keep the root's fds open.
    root: Weak<TempRoot>,
    /// The temp bytes this file holds against a quota (shared with its entry, which
    /// returns them on release), and the file position its writes are charged from.
    bytes: Option<Arc<ByteCharge>>,
    pos: u64,
}

struct TempFileReclaim {
    file: Arc<Slot<Handle>>,
    root: Arc<TempRoot>,
    name: CName,
    fid: FileId,
}

impl Reclaim for TempFileReclaim {
    fn reclaim(self: Box<Self>) -> Cleanup {
        (*self).release(false)
    }

    fn reclaim_now(self: Box<Self>) -> io::Result<()> {
        match (*self).release(true) {
            Cleanup::Done(r) => r,
            _ => Ok(()),
        }
    }
}

impl TempFileReclaim {
    fn release(self, emergency: bool) -> Cleanup {
        let file = if emergency {
            self.file.try_take()
        } else {
            self.file.take()
        };
        // Close the fd (an operation in flight on the blocking pool keeps its own handle
        // until it finishes), then remove the name relative to the root, checked by inode.
        drop(file);
        Cleanup::Done(remove_file_at(self.root.fd(), self.name.as_c_str(), self.fid).map(drop))
    }
}

impl TempFile {
    /// Creates the file relative to the root's fd and registers it. Blocking (runs in
    /// the creation unit on the blocking pool). On refusal the registry removes it.
    pub(crate) fn create(
        scope: &Scope,
        root: &Arc<TempRoot>,
        prefix: &str,
        suffix: &str,
        label: Option<String>,
        site: &'static Location<'static>,
        permits: Option<Permits>,
    ) -> Result<Self> {
        let op = Operation::CreateTempFile;
        let made =
            create_file_at(root.fd(), prefix, suffix).map_err(|e| Error::io(op, root.path(), e))?;
        let path = root.path().join(&made.name);
        let slot = Slot::new(Handle::from_std(std::fs::File::from(made.fd)));
        let reclaim = TempFileReclaim {
            file: slot.clone(),
            root: root.clone(),
            name: c_name(&made.name).map_err(|e| Error::io(op, &path, e))?,
            fid: made.id,
        };
        let spec = Spec {
            kind: ResourceKind::TempFile,
            label: label.unwrap_or_else(|| "temp file".into()).into(),
            path: Some(path.clone()),
            site,
            op,
        };
        let bytes = permits.as_ref().and_then(|p| p.bytes.clone());
        let reg = scope.register_with(spec, Box::new(reclaim), permits)?;
        Ok(TempFile {
            bytes,
            pos: 0,
            reg,
            file: slot,
            path,
            fid: made.id,
            root: Arc::downgrade(root),
        })
    }

    /// The file's path, inside the supervisor's temp root.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let t = sup.temp_file().await?;
    /// assert_eq!(t.path().parent(), Some(sup.temp_root()));
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
    /// let t = sup.temp_file().await?;
    /// assert_eq!(sup.live()[0].id(), t.id());
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
    /// assert!(sup.temp_file().await?.registration().is_live());
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn registration(&self) -> &Registration {
        &self.reg
    }

    /// Flushes pending writes, closes and removes the file.
    ///
    /// # Errors
    ///
    /// A pending write's error or the removal's error, naming the path. The file is
    /// released either way.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: dropped while flushing, the guard is dropped with it (the file is
    /// still removed, a pending write's error is lost). Once the release has started,
    /// it completes.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let t = sup.temp_file().await?;
    /// let path = t.path().to_path_buf();
    /// t.close().await?; // removed, and any error reported here
    /// assert!(!path.exists());
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub async fn close(mut self) -> Result<()> {
        let flushed = self.flush().await;
        let closed = self.reg.take().close().await;
        flushed.map_err(|e| Error::io(Operation::CloseFile, &self.path, e))?;
        closed
    }

    /// Moves the file to `target` (same file system), replacing a file already there as
    /// `rename(2)` does, and keeps it there, returned as a [`ManagedFile`] registered in
    /// the same scope (closed when dropped, never deleted). The file keeps its mode, 0600.
    ///
    /// Pending writes are flushed first. The file is then taken out of the registry
    /// *before* it is renamed, so that neither its scope's end nor shutdown can unlink
    /// it mid-move.
    ///
    /// # Errors
    ///
    /// On failure the temp file is handed back inside the [`PersistError`], still
    /// managed: unchanged if a pending write failed; registered again (under a new
    /// [`id`](Self::id), in its own scope, or in the root scope if that ended meanwhile)
    /// if the rename failed (`target`'s directory missing, another file system
    /// ([`CrossesDevices`](io::ErrorKind::CrossesDevices)), a directory at `target`...).
    /// If it cannot be managed any more (shutting down) it is removed and
    /// [`PersistError::guard`] is `None`. If shutdown begins between the rename and the
    /// new file's registration, the file stays at `target`, closed, and the error is
    /// [`Error::ShuttingDown`] without a guard.
    ///
    /// # Cancel safety
    ///
    /// Dropped while flushing, the guard is dropped with it (the temp file is removed).
    /// Once the move has started it runs to completion even if this future is dropped:
    /// the file may then be at `target` (and closed), or, if the move failed, removed.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// use tokio::io::AsyncWriteExt;
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let dir = std::env::temp_dir().join(format!("persist-doc-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir).unwrap();
    /// let mut t = sup.temp_file().await?;
    /// t.write_all(b"final").await.unwrap();
    /// let kept = t.persist(dir.join("result.txt")).await.map_err(|e| e.error)?;
    /// drop(kept);
    /// assert_eq!(std::fs::read(dir.join("result.txt")).unwrap(), b"final");
    /// # std::fs::remove_dir_all(&dir).unwrap(); sup.shutdown().await; Ok(()) }
    /// ```
    #[track_caller]
    pub fn persist<P: AsRef<Path>>(
        self,
        target: P,
    ) -> impl Future<Output = std::result::Result<ManagedFile, PersistError<TempFile>>> + use<P>
    {
        self.persist_with(target.as_ref().to_path_buf(), Clobber::Replace)
    }

    /// As [`persist`](Self::persist), but never replaces anything: if `target` exists
    /// (a file, a dir, a dangling symlink) it fails with
    /// [`AlreadyExists`](io::ErrorKind::AlreadyExists) and leaves it unchanged. The
    /// check and the move are one atomic `renameat2(RENAME_NOREPLACE)`, never a check
    /// followed by a rename.
    ///
    /// # Errors
    ///
    /// As [`persist`](Self::persist); also `AlreadyExists`, with the temp file handed
    /// back still managed. A file system without `RENAME_NOREPLACE` support fails with
    /// `InvalidInput` (nothing is moved).
    ///
    /// # Cancel safety
    ///
    /// As [`persist`](Self::persist).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let taken = sup.temp_file().await?;
    /// let e = sup.temp_file().await?.persist_noclobber(taken.path()).await.unwrap_err();
    /// assert_eq!(e.error.io_kind(), Some(std::io::ErrorKind::AlreadyExists));
    /// assert!(e.into_guard().unwrap().registration().is_live());
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    #[track_caller]
    pub fn persist_noclobber<P: AsRef<Path>>(
        self,
        target: P,
    ) -> impl Future<Output = std::result::Result<ManagedFile, PersistError<TempFile>>> + use<P>
    {
        self.persist_with(target.as_ref().to_path_buf(), Clobber::Refuse)
    }

    // The public error type (the guard handed back) passes through the unit once.
    #[allow(clippy::result_large_err)]
    #[track_caller]
    fn persist_with(
        self,
        target: PathBuf,
        clobber: Clobber,
    ) -> impl Future<Output = std::result::Result<ManagedFile, PersistError<TempFile>>> + use<>
    {
        let site = Location::caller();
        async move {
            let this = self.flushed(&target).await?;
            let to = target.clone();
            move_out(this, target, clobber, move |this, sup, mut parked| {
                let Some(file) = this.file.take() else {
                    return Err(PersistError::lost(Error::io(
                        Operation::Persist,
                        &to,
                        revoked(),
                    )));
                };
                // The same open fd: its open files and fds shares carry over.
                let kind = ResourceKind::File;
                let permits = parked.carry_over(sup, kind).map_err(PersistError::lost)?;
                ManagedFile::register(
                    &parked.scope(sup),
                    file,
                    to,
                    site,
                    permits,
                    Operation::Persist,
                )
                .map_err(PersistError::lost)
            })
            .await
        }
    }

    /// Flushes pending writes, then moves the file out of the supervisor's reach: into
    /// the temp base (the directory that holds the private temp root, so the same file
    /// system), under the same name, never replacing anything there. Returns the open
    /// file and its new path.
    ///
    /// From then on custodian neither tracks nor removes it, not even at shutdown: **the
    /// caller must delete it**. It keeps its mode, 0600. Use [`persist`](Self::persist)
    /// to choose where it goes.
    ///
    /// It is `async` because a write may still be in flight on the blocking pool (a
    /// `tokio::fs::File` reports a write's error only on the next operation or flush):
    /// flushing here is the only way such an error is not lost — like
    /// [`tokio::fs::File::into_std`], which waits for in-flight operations too.
    ///
    /// # Errors
    ///
    /// A pending write's error, or the move's (a name already taken in the base:
    /// [`AlreadyExists`](io::ErrorKind::AlreadyExists)), with the temp file handed back
    /// in the [`PersistError`], still managed. If the file had already been reclaimed by
    /// its scope's end or by shutdown, an error without a guard.
    ///
    /// # Cancel safety
    ///
    /// Dropped while flushing, the guard is dropped with it (the file is removed). Once
    /// the move has started it completes even if this future is dropped: the file is
    /// then kept (closed) at the base under its name, unknown to custodian.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let (file, path) = sup.temp_file().await?.keep().await.map_err(|e| e.error)?;
    /// assert_eq!(path.parent(), sup.temp_root().parent());
    /// sup.shutdown().await;
    /// assert!(path.exists()); // out of custodian's reach: ours to delete
    /// # drop(file); std::fs::remove_file(&path).unwrap(); Ok(()) }
    /// ```
    // The public error type (the guard handed back) passes through the unit once.
    #[allow(clippy::result_large_err)]
    pub async fn keep(
        self,
    ) -> std::result::Result<(tokio::fs::File, PathBuf), PersistError<TempFile>> {
        let (here, target) = (self.path.clone(), kept_path(&self.path));
        // A write's error names the file where it is, as it was not moved.
        let this = self.flushed(&here).await?;
        let to = target.clone();
        move_out(
            this,
            target,
            Clobber::Refuse,
            move |this, _, _| match this.file.take() {
                Some(file) => Ok((file, to)),
                None => Err(PersistError::lost(Error::io(
                    Operation::Persist,
                    &to,
                    revoked(),
                ))),
            },
        )
        .await
    }

    /// Flushes pending writes; on error hands the guard back, the error naming `target`.
    async fn flushed(mut self, target: &Path) -> std::result::Result<Self, PersistError<Self>> {
        match self.flush().await {
            Ok(()) => Ok(self),
            Err(e) => Err(PersistError::new(
                Error::io(Operation::Persist, target, e),
                self,
            )),
        }
    }
}

impl Movable for TempFile {
    const KIND: ResourceKind = ResourceKind::TempFile;

    fn reg(&self) -> &Registration {
        &self.reg
    }

    fn set_reg(&mut self, reg: Registration) {
        self.reg = reg;
    }

    fn root(&self) -> Option<Arc<TempRoot>> {
        self.root.upgrade()
    }

    fn name(&self) -> &OsStr {
        // The guard's path is the root's joined with the name: its last component.
        self.path.file_name().unwrap_or_default()
    }

    fn fid(&self) -> FileId {
        self.fid
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn reclaim(&self, root: Arc<TempRoot>) -> Box<dyn Reclaim> {
        // A name it was created with: the conversion cannot fail (the fallback, an
        // empty name, would find nothing to remove).
        let name = c_name(self.name()).unwrap_or(CName::Inline {
            len: 1,
            bytes: [0; _],
        });
        Box::new(TempFileReclaim {
            file: self.file.clone(),
            root,
            name,
            fid: self.fid,
        })
    }
}

// `AsyncRead`, `AsyncWrite`, `AsyncSeek`, with the temp bytes quota's accounting.
mod async_io;
mod name;

/// `name` for the removal's system calls (`InvalidInput` if it holds a NUL).
fn c_name(name: &OsStr) -> io::Result<CName> {
    CName::new(name).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "a NUL byte in a temp file's name",
        )
    })
}

impl Drop for TempFile {
    fn drop(&mut self) {
        // The entry's reclaim holds the only other reference to the slot for as long
        // as the entry exists (a re-registration after a failed persist makes a new
        // reclaim holding one too). Alone with it, this guard's entry is gone: removed
        // by a scope's end, by shutdown or by a move out, whose remover ran or dropped
        // the reclaim. The registration then has nothing to find: skip its lookup (a
        // shard lock and a probe per guard after a shutdown of many). Any other holder
        // only means the ordinary lookup. The count fell to 1 only after the removal,
        // and nothing the remover wrote is read here.
        if Arc::strong_count(&self.file) == 1 {
            self.reg.released_elsewhere();
        }
    }
}

impl fmt::Debug for TempFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TempFile")
            .field("id", &self.reg.id())
            .field("path", &self.path)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_guard_reclaimed_by_shutdown_drops_without_the_registry() {
        let sup = crate::Supervisor::builder().start().unwrap();
        let t = sup.temp_file().await.unwrap();
        let path = t.path().to_path_buf();
        let id = t.id();
        let report = sup.shutdown().await;
        assert_eq!(report.alive_at_shutdown[0].id(), id);
        assert!(!path.exists());
        // The shard the guard's id falls in, write-locked: a drop that looked the id
        // up would wait for it.
        let shard = sup.inner.registry.map.entry(id);
        let (tx, rx) = std::sync::mpsc::channel();
        let dropper = std::thread::spawn(move || {
            drop(t);
            tx.send(()).unwrap();
        });
        let dropped = rx.recv_timeout(Duration::from_secs(2)).is_ok();
        drop(shard);
        dropper.join().unwrap();
        assert!(dropped, "the drop looked its released entry up");
        assert_eq!(sup.stats().live(), 0);
    }
}
