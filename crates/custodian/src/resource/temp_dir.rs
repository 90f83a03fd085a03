//! Managed temp dirs inside the private temp root (mode 0700); removal runs off the async
//! threads.
//!
//! The registry entry's clean-up ([`TempDirReclaim`]) only borrows what it captured, so
//! it can be run again if a first attempt failed. `keep` and `persist` go through the
//! shared move unit (see [`move_out`]), which takes the entry out of the registry before
//! renaming, so no recursive removal can be emptying the directory at its new place.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::future::Future;
use std::panic::Location;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

use crate::error::{Error, Operation, Result};
use crate::inner::Spec;
use crate::kind::ResourceKind;
use crate::registry::{Cleanup, Permits, Reclaim};
use crate::resource::persist::{Clobber, Movable, PersistError, kept_path, move_out};
use crate::scope::{Registration, Scope};
use crate::sys::FileId;
use crate::sys::create::create_dir_at;
use crate::sys::remove::remove_tree_at;
use crate::sys::root::TempRoot;

/// A temp dir inside the supervisor's private temp root, removed with everything in it
/// when released.
///
/// Dropping it never blocks: the recursive removal runs on Tokio's blocking pool, and the
/// owning scope does not end before it has finished. [`close`](Self::close) waits for
/// the removal and reports its errors.
///
/// # Security
///
/// The dir is created exclusively, relative to the root's directory fd, with mode
/// exactly 0700 whatever the umask (so it stays private after
/// [`persist`](Self::persist)). Removal works relative to directory fds and never
/// follows a symlink: a link inside the dir is unlinked, its target untouched; a symlink
/// planted at the dir's own name is unlinked; a directory put in its place is left alone
/// and reported. It never crosses into another file system.
///
/// # Resource leaking
///
/// The registry entry holds the dir's name and inode, so a forgotten or escaped guard's
/// dir is still removed at scope end or shutdown and reported as a leak.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
/// let sup = tokio_custodian::Supervisor::builder().start()?;
/// let path = sup
///     .scope("unpack", async |s| {
///         let d = s.temp_dir().await?;
///         std::fs::write(d.path().join("frame-0001.raw"), b"...").unwrap();
///         Ok::<_, tokio_custodian::Error>(d.path().to_path_buf())
///     })
///     .await??;
/// assert!(!path.exists()); // gone before `scope` returned
/// # sup.shutdown().await; Ok(()) }
/// ```
#[must_use = "dropping a TempDir removes it"]
pub struct TempDir {
    reg: Registration,
    path: PathBuf,
    name: OsString,
    fid: FileId,
    // Weak: a forgotten guard must not keep the root's fds open.
    root: Weak<TempRoot>,
}

struct TempDirReclaim {
    root: Arc<TempRoot>,
    name: OsString,
    fid: FileId,
}

impl Reclaim for TempDirReclaim {
    fn reclaim(self: Box<Self>) -> Cleanup {
        // Borrows what it captured, never moves it out: the clean-up can be run again
        // if a first attempt failed.
        Cleanup::Blocking(Box::new(move || {
            remove_tree_at(self.root.fd(), &self.name, self.fid).map(drop)
        }))
    }
}

impl TempDir {
    /// Creates the dir relative to the root's fd and registers it. Blocking (runs in the
    /// creation unit on the blocking pool). On refusal the registry removes it.
    pub(crate) fn create(
        scope: &Scope,
        root: &Arc<TempRoot>,
        prefix: &str,
        suffix: &str,
        label: Option<String>,
        site: &'static Location<'static>,
        permits: Option<Permits>,
    ) -> Result<Self> {
        let op = Operation::CreateTempDir;
        let made =
            create_dir_at(root.fd(), prefix, suffix).map_err(|e| Error::io(op, root.path(), e))?;
        // The guard holds no fd: removal goes by name and identity.
        drop(made.fd);
        let path = root.path().join(&made.name);
        let reclaim = TempDirReclaim {
            root: root.clone(),
            name: made.name.clone(),
            fid: made.id,
        };
        let spec = Spec {
            kind: ResourceKind::TempDir,
            label: label.unwrap_or_else(|| "temp dir".into()).into(),
            path: Some(path.clone()),
            site,
            op,
        };
        let reg = scope.register_with(spec, Box::new(reclaim), permits)?;
        Ok(TempDir {
            reg,
            path,
            name: made.name,
            fid: made.id,
            root: Arc::downgrade(root),
        })
    }

    /// The dir's path, inside the supervisor's temp root.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let d = sup.temp_dir().await?;
    /// assert!(d.path().is_dir());
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The dir's id in the registry.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let d = sup.temp_dir().await?;
    /// assert_eq!(sup.live()[0].id(), d.id());
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn id(&self) -> crate::ResourceId {
        self.reg.id()
    }

    /// The dir's registration (to check it is still live or move it to another scope).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// assert!(sup.temp_dir().await?.registration().is_live());
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn registration(&self) -> &Registration {
        &self.reg
    }

    /// Removes the dir and everything in it, and waits for the removal.
    ///
    /// # Errors
    ///
    /// The removal's error, naming the path (for example a mount point inside the dir,
    /// or the dir replaced by another). The dir is released either way.
    ///
    /// # Cancel safety
    ///
    /// If dropped before it completes, the removal still finishes in the background.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let d = sup.temp_dir().await?;
    /// std::fs::create_dir_all(d.path().join("a/b")).unwrap();
    /// let path = d.path().to_path_buf();
    /// d.close().await?; // the whole tree is removed before this returns
    /// assert!(!path.exists());
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub async fn close(self) -> Result<()> {
        self.reg.close().await
    }

    /// Moves the dir to `target` (same file system) and stops managing it; returns
    /// `target`. Follows `rename(2)`'s rules: an existing *empty* dir at `target` is
    /// replaced, anything else there fails the move.
    ///
    /// The dir is taken out of the registry *before* it is renamed, so neither its
    /// scope's end, nor shutdown, nor anything else can be emptying it while it moves:
    /// when this returns `Ok`, everything that was in the dir is at `target`. It keeps
    /// its mode, 0700. From then on **the caller must delete it**.
    ///
    /// # Errors
    ///
    /// On failure the temp dir is handed back inside the [`PersistError`], still
    /// managed (registered again, under a new [`id`](Self::id)): in its own scope, or in
    /// the root scope if its scope ended meanwhile. If it cannot be managed any more
    /// (shutting down), it is removed and [`PersistError::guard`] is `None`.
    ///
    /// # Cancel safety
    ///
    /// Once polled, the move runs as one unit on the blocking pool and completes even if
    /// this future is dropped: the dir may then be at `target`, or, if the move failed,
    /// removed. A future dropped before its first poll does nothing (and drops the guard:
    /// the dir is removed).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let target = std::env::temp_dir().join(format!("persist-dir-doc-{}", std::process::id()));
    /// let d = sup.temp_dir().await?;
    /// std::fs::write(d.path().join("a"), b"1").unwrap();
    /// let kept = d.persist(&target).await.map_err(|e| e.error)?;
    /// assert!(kept.join("a").exists());
    /// # std::fs::remove_dir_all(&target).unwrap(); sup.shutdown().await; Ok(()) }
    /// ```
    pub fn persist<P: AsRef<Path>>(
        self,
        target: P,
    ) -> impl Future<Output = std::result::Result<PathBuf, PersistError<TempDir>>> + use<P> {
        self.move_to(target.as_ref().to_path_buf(), Clobber::Replace)
    }

    /// As [`persist`](Self::persist), but never replaces anything: if `target` exists
    /// (even an empty dir, or a dangling symlink) it fails with
    /// [`AlreadyExists`](std::io::ErrorKind::AlreadyExists) and leaves it unchanged. The
    /// check and the move are one atomic `renameat2(RENAME_NOREPLACE)`.
    ///
    /// # Errors
    ///
    /// As [`persist`](Self::persist); also `AlreadyExists`, with the temp dir handed
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
    /// let taken = sup.temp_dir().await?;
    /// let e = sup.temp_dir().await?.persist_noclobber(taken.path()).await.unwrap_err();
    /// assert_eq!(e.error.io_kind(), Some(std::io::ErrorKind::AlreadyExists));
    /// assert!(e.into_guard().unwrap().registration().is_live());
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn persist_noclobber<P: AsRef<Path>>(
        self,
        target: P,
    ) -> impl Future<Output = std::result::Result<PathBuf, PersistError<TempDir>>> + use<P> {
        self.move_to(target.as_ref().to_path_buf(), Clobber::Refuse)
    }

    /// Moves the dir out of the supervisor's reach: into the temp base (the directory
    /// that holds the private temp root, so the same file system), under the same name,
    /// never replacing anything there. Returns its new path.
    ///
    /// From then on custodian neither tracks nor removes it, not even at shutdown: **the
    /// caller must delete it**. It keeps its mode, 0700. Use [`persist`](Self::persist)
    /// to choose where it goes.
    ///
    /// # Errors
    ///
    /// As [`persist_noclobber`](Self::persist_noclobber), the dir handed back still
    /// managed.
    ///
    /// # Cancel safety
    ///
    /// Once polled, the move completes even if this future is dropped: the dir is then
    /// kept at the base under its name, unknown to custodian. Dropped before its first
    /// poll, it drops the guard (the dir is removed).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let path = sup.temp_dir().await?.keep().await.map_err(|e| e.error)?;
    /// assert_eq!(path.parent(), sup.temp_root().parent());
    /// sup.shutdown().await;
    /// assert!(path.is_dir()); // out of custodian's reach: ours to delete
    /// # std::fs::remove_dir(&path).unwrap(); Ok(()) }
    /// ```
    pub fn keep(
        self,
    ) -> impl Future<Output = std::result::Result<PathBuf, PersistError<TempDir>>> + use<> {
        let target = kept_path(&self.path);
        self.move_to(target, Clobber::Refuse)
    }

    // The public error type (the guard handed back) passes through the unit once.
    #[allow(clippy::result_large_err)]
    fn move_to(
        self,
        target: PathBuf,
        clobber: Clobber,
    ) -> impl Future<Output = std::result::Result<PathBuf, PersistError<TempDir>>> + use<> {
        let to = target.clone();
        move_out(self, target, clobber, move |_, _, _| Ok(to))
    }
}

impl Movable for TempDir {
    const KIND: ResourceKind = ResourceKind::TempDir;

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
        &self.name
    }

    fn fid(&self) -> FileId {
        self.fid
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn reclaim(&self, root: Arc<TempRoot>) -> Box<dyn Reclaim> {
        Box::new(TempDirReclaim {
            root,
            name: self.name.clone(),
            fid: self.fid,
        })
    }
}

impl fmt::Debug for TempDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TempDir")
            .field("id", &self.reg.id())
            .field("path", &self.path)
            .finish()
    }
}
