//! Managed temp dirs inside the private temp root; removal runs off the async threads.

use std::ffi::OsString;
use std::fmt;
use std::future::Future;
use std::io;
use std::panic::Location;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

use crate::error::{Error, Operation, Result};
use crate::inner::Spec;
use crate::kind::ResourceKind;
use crate::registry::{Cleanup, Reclaim};
use crate::resource::Registration;
use crate::resource::temp::name_in_root;
use crate::scope::Scope;
use crate::sys::FileId;
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
/// Removal works relative to directory fds and never follows a symlink: a link inside
/// the dir is unlinked, its target untouched; a symlink planted at the dir's own name is
/// unlinked; a directory put in its place is left alone and reported. It never crosses
/// into another file system.
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
        Cleanup::Blocking(Box::new(move || {
            remove_tree_at(self.root.fd(), &self.name, self.fid).map(drop)
        }))
    }
}

impl TempDir {
    pub(crate) fn adopt(
        scope: &Scope,
        path: PathBuf,
        label: Option<String>,
        site: &'static Location<'static>,
    ) -> Result<Self> {
        let op = Operation::CreateTempDir;
        let root = scope.inner().temp_root.clone();
        let name = name_in_root(&path);
        let fid = match root.id_of(&name) {
            Ok(fid) => fid,
            Err(e) => {
                // Not inside the root: it was created through a root swapped after the
                // check. Remove the empty dir we made and refuse.
                let _ = std::fs::remove_dir(&path);
                return Err(match e.kind() {
                    io::ErrorKind::NotFound => Error::TempRootReplaced {
                        op,
                        path: root.path().to_path_buf(),
                    },
                    _ => Error::io(op, &path, e),
                });
            }
        };
        let reclaim = TempDirReclaim {
            root: root.clone(),
            name: name.clone(),
            fid,
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
            name,
            fid,
            root: Arc::downgrade(&root),
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
    /// # Errors
    ///
    /// On failure the temp dir is handed back, unchanged and still managed (in its own
    /// scope, or in the root scope if its scope ended meanwhile).
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
    pub fn persist<P: AsRef<Path>>(
        self,
        target: P,
    ) -> impl Future<Output = std::result::Result<PathBuf, (Error, TempDir)>> + use<P> {
        let target = target.as_ref().to_path_buf();
        async move {
            let op = Operation::Persist;
            let gone = || Error::ShuttingDown { op };
            let (Some(root), Some(sup)) = (self.root.upgrade(), self.reg.supervisor()) else {
                return Err((gone(), self));
            };
            let Some(home) = sup
                .inner
                .registry
                .map
                .get(&self.reg.id())
                .map(|e| e.scope.clone())
            else {
                let e = crate::resource::slot::revoked();
                return Err((Error::io(op, &target, e), self));
            };
            // Park it in the root scope while it moves, so that the end of its own scope
            // cannot start emptying it mid-rename.
            if let Err(e) = self.reg.transfer(&sup.root()) {
                return Err((e, self));
            }
            let name = self.name.clone();
            let fid = self.fid;
            let to = target.clone();
            let moved = tokio::task::spawn_blocking(move || {
                if !root.contains(&name, fid)? {
                    return Err(crate::sys::remove::replaced_error());
                }
                rustix::fs::renameat(root.fd(), &name, rustix::fs::CWD, &to)?;
                Ok(())
            })
            .await
            .map_err(io::Error::other)
            .and_then(|r| r);
            match moved {
                Ok(()) => {
                    self.reg.detach();
                    Ok(target)
                }
                Err(e) => {
                    // Back home if that scope is still open; otherwise it stays in the
                    // root scope, still managed.
                    let _ = self.reg.transfer(&Scope { shared: home, sup });
                    Err((Error::io(op, &target, e), self))
                }
            }
        }
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
