//! Managed temp files, created by async-tempfile inside the private temp root.

use std::ffi::OsString;
use std::fmt;
use std::future::Future;
use std::io;
use std::os::fd::AsFd;
use std::panic::Location;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

use tokio::io::AsyncWriteExt;

use crate::error::{Error, Operation, Result};
use crate::inner::Spec;
use crate::kind::ResourceKind;
use crate::registry::{Cleanup, Reclaim};
use crate::resource::slot::{Slot, revoked};
use crate::resource::temp::name_in_root;
use crate::resource::{ManagedFile, Registration};
use crate::scope::Scope;
use crate::sys::FileId;
use crate::sys::remove::remove_file_at;
use crate::sys::root::TempRoot;

type Inner = async_tempfile::TempFile;

/// A temp file inside the supervisor's private temp root, removed when released.
///
/// Reads, writes and seeks like a file. Dropping it closes the file and unlinks it
/// (constant work: one `stat` and one `unlink`, relative to the root's directory fd).
/// [`close`](Self::close) does the same and reports errors; [`persist`](Self::persist)
/// moves it out of the root and keeps it.
///
/// # Security
///
/// The file is created exclusively (`O_EXCL`) with an unpredictable name inside a root
/// only the owner can enter (mode 0700), so another user can neither read it nor race
/// its name. Removal is relative to the root's directory fd and checks the device and
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
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> custodian::Result<()> {
/// use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
/// let sup = custodian::Supervisor::builder().start()?;
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
    file: Arc<Slot<Inner>>,
    path: PathBuf,
    name: OsString,
    fid: FileId,
    // Weak: a forgotten guard must not keep the root's fds open.
    root: Weak<TempRoot>,
}

struct TempFileReclaim {
    file: Arc<Slot<Inner>>,
    root: Arc<TempRoot>,
    name: OsString,
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
        if let Some(f) = file {
            // Disarm async-tempfile's own path-based removal and close the fd: custodian
            // removes the name below, relative to the root and checked by inode.
            drop(f.keep());
        }
        Cleanup::Done(remove_file_at(self.root.fd(), &self.name, self.fid).map(drop))
    }
}

impl TempFile {
    pub(crate) fn adopt(
        scope: &Scope,
        file: Inner,
        label: Option<String>,
        site: &'static Location<'static>,
    ) -> Result<Self> {
        let op = Operation::CreateTempFile;
        let root = scope.inner().temp_root.clone();
        let path = file.file_path().clone();
        let name = name_in_root(&path);
        let fid = FileId::of_fd(&*file).map_err(|e| Error::io(op, &path, e))?;
        // Prove the new file landed inside the root (not through a root swapped after the
        // check); if not, async-tempfile's drop removes what it created.
        if !root.contains(&name, fid).unwrap_or(false) {
            return Err(Error::TempRootReplaced {
                op,
                path: root.path().to_path_buf(),
            });
        }
        let slot = Slot::new(file);
        let reclaim = TempFileReclaim {
            file: slot.clone(),
            root: root.clone(),
            name: name.clone(),
            fid,
        };
        let spec = Spec {
            kind: ResourceKind::TempFile,
            label: label.unwrap_or_else(|| "temp file".into()).into(),
            path: Some(path.clone()),
            site,
            op,
        };
        let reg = scope.register_boxed(spec, Box::new(reclaim))?;
        Ok(TempFile {
            reg,
            file: slot,
            path,
            name,
            fid,
            root: Arc::downgrade(&root),
        })
    }

    /// The file's path, inside the supervisor's temp root.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> custodian::Result<()> {
    /// let sup = custodian::Supervisor::builder().start()?;
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
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> custodian::Result<()> {
    /// let sup = custodian::Supervisor::builder().start()?;
    /// let t = sup.temp_file().await?;
    /// assert_eq!(sup.live()[0].id, t.id());
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn id(&self) -> crate::ResourceId {
        self.reg.id()
    }

    /// The file's registration (to check it is still live or move it to another scope).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> custodian::Result<()> {
    /// let sup = custodian::Supervisor::builder().start()?;
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
    /// still removed).
    pub async fn close(mut self) -> Result<()> {
        let flushed = self.flush().await;
        let closed = self.reg.close().await;
        flushed.map_err(|e| Error::io(Operation::CloseFile, &self.path, e))?;
        closed
    }

    /// Moves the file to `target` (same file system) and keeps it there, returned as a
    /// [`ManagedFile`] registered in the same scope (closed when dropped, never deleted).
    ///
    /// # Errors
    ///
    /// On failure (`target`'s directory missing, another file system (`EXDEV`), no
    /// permission...) the temp file is handed back inside the [`PersistError`],
    /// unchanged and still managed.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> custodian::Result<()> {
    /// use tokio::io::AsyncWriteExt;
    /// let sup = custodian::Supervisor::builder().start()?;
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
    ) -> impl Future<Output = std::result::Result<ManagedFile, PersistError>> + use<P> {
        let site = Location::caller();
        let target = target.as_ref().to_path_buf();
        async move {
            let mut this = self;
            let op = Operation::Persist;
            if let Err(e) = this.flush().await {
                return Err(PersistError::new(Error::io(op, &target, e), this));
            }
            match this.move_out(&target).await {
                Ok(()) => {}
                Err(e) => return Err(PersistError::new(Error::io(op, &target, e), this)),
            }
            let Some(sup) = this.reg.supervisor() else {
                let e = Error::ShuttingDown { op };
                return Err(PersistError::new(e, this));
            };
            let scope = Scope {
                shared: this.scope_of(&sup),
                sup,
            };
            let file = this.detach_file().map_err(|e| Error::io(op, &target, e));
            match file {
                Ok(file) => {
                    ManagedFile::register(&scope, file, target, site).map_err(PersistError::lost)
                }
                Err(error) => Err(PersistError::lost(error)),
            }
        }
    }

    /// Stops managing the file: it is no longer removed when the guard drops or its
    /// scope ends, and the open file and its path are returned.
    ///
    /// The file stays inside the supervisor's private temp root, which is removed at
    /// shutdown; [`persist`](Self::persist) it to keep it longer.
    ///
    /// # Errors
    ///
    /// If the file had already been reclaimed by its scope's end or by shutdown.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> custodian::Result<()> {
    /// let sup = custodian::Supervisor::builder().start()?;
    /// let (file, path) = sup.temp_file().await?.keep()?;
    /// assert!(path.exists());
    /// assert_eq!(sup.stats().live(), 0);
    /// # drop(file); sup.shutdown().await; Ok(()) }
    /// ```
    pub fn keep(self) -> Result<(tokio::fs::File, PathBuf)> {
        let path = self.path.clone();
        let file = self
            .detach_file()
            .map_err(|e| Error::io(Operation::Persist, &path, e))?;
        Ok((file, path))
    }

    fn scope_of(&self, sup: &crate::Supervisor) -> Arc<crate::scope::ScopeShared> {
        let inner = &sup.inner;
        inner
            .registry
            .map
            .get(&self.reg.id())
            .map(|e| e.scope.clone())
            .unwrap_or_else(|| inner.root_scope.clone())
    }

    /// Renames the file out of the root, checking it is still the file we created.
    async fn move_out(&self, target: &Path) -> io::Result<()> {
        let root = self.root.upgrade().ok_or_else(revoked)?;
        let name = self.name.clone();
        let fid = self.fid;
        let target = target.to_path_buf();
        tokio::task::spawn_blocking(move || {
            if !root.contains(&name, fid)? {
                return Err(crate::sys::remove::replaced_error());
            }
            rustix::fs::renameat(root.fd(), &name, rustix::fs::CWD, &target)?;
            Ok(())
        })
        .await
        .map_err(io::Error::other)?
    }

    /// Unregisters without removing the file, and returns its open handle.
    fn detach_file(self) -> io::Result<tokio::fs::File> {
        let TempFile { reg, file, .. } = self;
        // Detach first: if a sweep got there first, it owns (and removed) the file.
        let inner = if reg.detach() { file.take() } else { None };
        let inner = inner.ok_or_else(revoked)?;
        // A second handle on the same open file; `keep` then disarms async-tempfile's
        // removal and closes the original.
        let std = std::fs::File::from(inner.as_fd().try_clone_to_owned()?);
        drop(inner.keep());
        Ok(tokio::fs::File::from_std(std))
    }
}

crate::resource::slot::delegate_async_io!(TempFile, file);

impl fmt::Debug for TempFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TempFile")
            .field("id", &self.reg.id())
            .field("path", &self.path)
            .finish()
    }
}

/// A failed [`TempFile::persist`]: the error, and the temp file handed back unchanged
/// when it could be.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
#[non_exhaustive]
pub struct PersistError {
    /// What went wrong, naming the target path.
    #[source]
    pub error: Error,
    /// The temp file, still managed, unless the failure happened after it had been moved.
    pub file: Option<TempFile>,
}

impl PersistError {
    fn new(error: Error, file: TempFile) -> Self {
        PersistError {
            error,
            file: Some(file),
        }
    }

    fn lost(error: Error) -> Self {
        PersistError { error, file: None }
    }
}
