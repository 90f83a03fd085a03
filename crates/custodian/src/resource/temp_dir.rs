//! Managed temp dirs inside the private temp root (mode 0700); removal runs off the async
//! threads.
//!
//! The registry entry's clean-up ([`TempDirReclaim`]) only borrows what it captured, so
//! it can be run again if a first attempt failed. `persist` takes the entry out of the
//! registry before renaming (see [`Parked`]), so no recursive removal can be emptying
//! the directory at its new place.

use std::ffi::OsString;
use std::fmt;
use std::future::Future;
use std::io;
use std::panic::Location;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

use crate::error::{Error, Operation, Result};
use crate::inner::Spec;
use crate::inner::Supervisor;
use crate::kind::ResourceKind;
use crate::registry::{Cleanup, Reclaim};
use crate::resource::slot::revoked;
use crate::resource::temp::{Parked, spawn_unit};
use crate::scope::{Registration, Scope};
use crate::sys::FileId;
use crate::sys::create::create_dir_at;
use crate::sys::remove::{remove_tree_at, replaced_error};
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
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> custodian::Result<()> {
/// let sup = custodian::Supervisor::builder().start()?;
/// let path = sup
///     .scope("unpack", async |s| {
///         let d = s.temp_dir().await?;
///         std::fs::write(d.path().join("frame-0001.raw"), b"...").unwrap();
///         custodian::Result::Ok(d.path().to_path_buf())
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
        let reg = scope.register_boxed(spec, Box::new(reclaim))?;
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
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> custodian::Result<()> {
    /// let sup = custodian::Supervisor::builder().start()?;
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
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> custodian::Result<()> {
    /// let sup = custodian::Supervisor::builder().start()?;
    /// let d = sup.temp_dir().await?;
    /// assert_eq!(sup.live()[0].id, d.id());
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn id(&self) -> crate::ResourceId {
        self.reg.id()
    }

    /// The dir's registration (to check it is still live or move it to another scope).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> custodian::Result<()> {
    /// let sup = custodian::Supervisor::builder().start()?;
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
    pub async fn close(self) -> Result<()> {
        self.reg.close().await
    }

    /// Moves the dir to `target` (same file system) and stops managing it.
    ///
    /// The dir is taken out of the registry *before* it is renamed, so neither its
    /// scope's end, nor shutdown, nor anything else can be emptying it while it moves:
    /// when this returns `Ok`, everything that was in the dir is at `target`.
    ///
    /// # Errors
    ///
    /// On failure the temp dir is handed back, still managed (registered again, under a
    /// new [`id`](Self::id)): in its own scope, or in the root scope if its scope ended
    /// meanwhile. If
    /// it cannot be managed any more (shutting down), it is removed and the guard handed
    /// back is no longer [live](Registration::is_live).
    ///
    /// # Cancel safety
    ///
    /// Once polled, the move runs as one unit on the blocking pool and completes even if
    /// this future is dropped: the dir may then be at `target`, or, if the move failed,
    /// removed. A future dropped before its first poll does nothing (and drops the guard:
    /// the dir is removed).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> custodian::Result<()> {
    /// let sup = custodian::Supervisor::builder().start()?;
    /// let target = std::env::temp_dir().join(format!("persist-dir-doc-{}", std::process::id()));
    /// let d = sup.temp_dir().await?;
    /// std::fs::write(d.path().join("a"), b"1").unwrap();
    /// let kept = d.persist(&target).await.map_err(|(e, _)| e)?;
    /// assert!(kept.join("a").exists());
    /// # std::fs::remove_dir_all(&target).unwrap(); sup.shutdown().await; Ok(()) }
    /// ```
    // The public error type (the guard handed back) passes through the unit once.
    #[allow(clippy::result_large_err)]
    pub fn persist<P: AsRef<Path>>(
        self,
        target: P,
    ) -> impl Future<Output = std::result::Result<PathBuf, (Error, TempDir)>> + use<P> {
        let target = target.as_ref().to_path_buf();
        async move {
            let op = Operation::Persist;
            let Some(sup) = self.reg.supervisor() else {
                return Err((Error::ShuttingDown { op }, self));
            };
            let inner = sup.inner.clone();
            // What it takes to hand a guard back if the unit itself fails.
            let (id, path, name, fid, root) = (
                self.reg.id(),
                self.path.clone(),
                self.name.clone(),
                self.fid,
                self.root.clone(),
            );
            let to = target.clone();
            // One unit: it owns the guard, so dropping this future cannot interrupt it.
            match spawn_unit(&inner, move || self.move_to(&sup, to)).await {
                Ok(r) => r,
                Err(join) => {
                    // The unit panicked or never ran: the guard it owned was dropped, and
                    // so released. Hand back one that is no longer live (same id).
                    let ghost = TempDir {
                        reg: Registration::new(&inner, id),
                        path,
                        name,
                        fid,
                        root,
                    };
                    Err((Error::io(op, &target, io::Error::other(join)), ghost))
                }
            }
        }
    }

    /// The move itself, run as one unit on the blocking pool: out of the registry, rename,
    /// and back into the registry if the rename failed.
    // The public error type (the guard handed back) passes through the unit once.
    #[allow(clippy::result_large_err)]
    fn move_to(
        mut self,
        sup: &Supervisor,
        target: PathBuf,
    ) -> std::result::Result<PathBuf, (Error, TempDir)> {
        let op = Operation::Persist;
        let inner = &sup.inner;
        // Shutdown waits for tracked clean-ups before it removes the temp root; taken
        // before the entry leaves the registry, so that either shutdown's sweep finds
        // the entry or its wait finds this token.
        let _token = inner.cleanups.token();
        if inner.is_shutting_down() {
            return Err((Error::ShuttingDown { op }, self));
        }
        let Some(root) = self.root.upgrade() else {
            return Err((Error::io(op, &target, revoked()), self));
        };
        let Some(parked) = Parked::take(inner, &self.reg) else {
            return Err((Error::io(op, &target, revoked()), self));
        };
        // Out of the registry: no sweep can start removing it now. Still check the name
        // is the dir we created before moving it.
        let moved = match root.contains(&self.name, self.fid) {
            Ok(true) => rustix::fs::renameat(root.fd(), &self.name, rustix::fs::CWD, &target)
                .map_err(io::Error::from),
            Ok(false) => Err(replaced_error()),
            Err(e) => Err(e),
        };
        let Err(e) = moved else {
            return Ok(target);
        };
        let error = Error::io(op, &target, e);
        let reclaim = TempDirReclaim {
            root,
            name: self.name.clone(),
            fid: self.fid,
        };
        // Back under management; if refused, the registry removes it, and the guard
        // handed back is the old, no longer live one.
        if let Ok(reg) = parked.register(sup, ResourceKind::TempDir, &self.path, Box::new(reclaim))
        {
            self.reg = reg;
        }
        Err((error, self))
    }

    /// Stops managing the dir and returns its path. It stays inside the supervisor's
    /// private temp root, which is removed at shutdown; [`persist`](Self::persist) it to
    /// keep it longer.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> custodian::Result<()> {
    /// let sup = custodian::Supervisor::builder().start()?;
    /// let path = sup.temp_dir().await?.keep();
    /// assert!(path.is_dir());
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn keep(self) -> PathBuf {
        self.reg.detach();
        self.path
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
