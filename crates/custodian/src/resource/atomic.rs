//! Atomic writes: a managed temp file in the target's directory, renamed over the target
//! at commit.
//!
//! [`AtomicFile`] is a guard like the others: registered (kind
//! [`TempFile`](crate::ResourceKind::TempFile), label `atomic <name>`) before the
//! acquisition returns, and released on every path. Until [`AtomicFile::commit`] the
//! target is untouched; drop, an error, a panic or a cancellation discards the temp file
//! (an `O_TMPFILE` file just closes; a named one is unlinked relative to the directory's
//! fd, checked by inode). The system calls are in `os.rs`; the commit runs them as one
//! unit on the blocking pool.

mod acquire;
mod batch;
mod os;
#[cfg(test)]
mod tests;

pub use acquire::{AtomicWrite, CreateAtomicFile};

use std::fmt;
use std::io;
use std::os::fd::OwnedFd;
use std::panic::Location;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::io::AsyncWriteExt;

use crate::error::{Error, Operation, Result};
use crate::inner::Spec;
use crate::kind::ResourceKind;
use crate::registry::{Cleanup, Reclaim};
use crate::resource::slot::{Slot, revoked};
use crate::scope::{Registration, Scope};
use crate::sys::FileId;
use crate::sys::remove::remove_file_at;

pub(crate) use os::FsyncFailed;

/// What `atomic_write` writes, whatever holds it.
pub(super) type Bytes = Box<dyn AsRef<[u8]> + Send>;
/// The name prefix of an atomic write's named temp file, in the target's directory: used
/// on a file system without `O_TMPFILE`, and for the instant between `linkat` and
/// `renameat` of a replacing commit.
///
/// ```
/// // A directory listing can leave out an atomic write in progress:
/// let name = ".custodian-atomic-1f2e3d";
/// assert!(name.starts_with(tokio_custodian::ATOMIC_TEMP_PREFIX));
/// ```
pub const ATOMIC_TEMP_PREFIX: &str = ".custodian-atomic-";

/// How much a commit promises.
///
/// ```
/// assert_eq!(tokio_custodian::Durability::default(), tokio_custodian::Durability::Durable);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Durability {
    /// Rename only: readers and a crash of the *process* see the old or the new file,
    /// but after a power loss the new name may point to an empty or old file.
    Atomic,
    /// `fsync` the file, rename, `fsync` the directory: the new content survives a power
    /// loss once `commit` returns.
    #[default]
    Durable,
}

/// A file written atomically: a temp file in the target's directory that
/// [`commit`](Self::commit) renames over the target.
///
/// Write to it like a file ([`AsyncWrite`](tokio::io::AsyncWrite); reads and seeks work
/// too). Readers of the target see its complete old content until the commit, and the
/// complete new content after it, never a mix and never an empty file.
///
/// The temp file is `O_TMPFILE` where the file system has it (nameless: even a SIGKILL
/// leaves nothing), else [`ATOMIC_TEMP_PREFIX`]`<16 hex digits>`, created with `O_EXCL`;
/// either way its mode is exactly 0600 until the commit. At commit it takes the existing
/// target's mode and owner (owner where permitted), or, for a new target (or a symlink,
/// which is replaced, never followed), `0666 & !umask` as [`std::fs::File::create`] gives.
///
/// # Resource leaking
///
/// Dropping it (or its scope ending, or shutdown) discards the temp file. A named temp
/// file left by a SIGKILL between its creation and the commit stays in the target's
/// directory (see `docs/atomic.md`: the crash journal's sweep is where it goes).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
/// use tokio::io::AsyncWriteExt;
/// let sup = tokio_custodian::Supervisor::builder().start()?;
/// let path = sup.temp_root().join("config.json");
/// std::fs::write(&path, b"{\"v\":1}").unwrap();
/// let mut f = sup.atomic_file(&path).await?;
/// f.write_all(b"{\"v\":2}").await.unwrap();
/// assert_eq!(std::fs::read(&path).unwrap(), b"{\"v\":1}"); // untouched until commit
/// f.commit().await?;
/// assert_eq!(std::fs::read(&path).unwrap(), b"{\"v\":2}");
/// # sup.shutdown().await; Ok(()) }
/// ```
#[must_use = "dropping an AtomicFile discards what was written"]
pub struct AtomicFile {
    reg: Registration,
    file: Arc<Slot<tokio::fs::File>>,
    dir: Arc<OwnedFd>,
    named: Option<(std::ffi::OsString, FileId)>,
    target: PathBuf,
}

struct AtomicReclaim {
    file: Arc<Slot<tokio::fs::File>>,
    dir: Arc<OwnedFd>,
    named: Option<(std::ffi::OsString, FileId)>,
}

impl AtomicReclaim {
    fn release(self, emergency: bool) -> io::Result<()> {
        drop(if emergency {
            self.file.try_take()
        } else {
            self.file.take()
        });
        // After a commit the name is gone (`AlreadyGone`); an `O_TMPFILE` has none.
        match &self.named {
            Some((name, fid)) => remove_file_at(&*self.dir, name, *fid).map(drop),
            None => Ok(()),
        }
    }
}

impl Reclaim for AtomicReclaim {
    fn reclaim(self: Box<Self>) -> Cleanup {
        Cleanup::Done((*self).release(false))
    }

    fn reclaim_now(self: Box<Self>) -> io::Result<()> {
        (*self).release(true)
    }
}

impl AtomicFile {
    pub(super) fn register(
        scope: &Scope,
        opened: os::Opened,
        target: PathBuf,
        site: &'static Location<'static>,
        permits: Option<crate::registry::Permits>,
    ) -> Result<Self> {
        let file = Slot::new(tokio::fs::File::from_std(opened.file.into()));
        let dir = Arc::new(opened.dir);
        let reclaim = AtomicReclaim {
            file: file.clone(),
            dir: dir.clone(),
            named: opened.named.clone(),
        };
        let spec = Spec {
            kind: ResourceKind::TempFile,
            label: format!("atomic {}", crate::resource::file::label_of(&target)).into(),
            path: Some(target.clone()),
            site,
            op: Operation::AtomicWrite,
        };
        let reg = scope.register_with(spec, Box::new(reclaim), permits)?;
        Ok(AtomicFile {
            reg,
            file,
            dir,
            named: opened.named,
            target,
        })
    }

    /// The target path (the temp file may have no name).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let f = sup.atomic_file(sup.temp_root().join("a")).await?;
    /// assert_eq!(f.path(), sup.temp_root().join("a"));
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn path(&self) -> &Path {
        &self.target
    }

    /// The writer's registration (to check it is live or move it to another scope).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let f = sup.atomic_file(sup.temp_root().join("a")).await?;
    /// assert!(f.registration().is_live());
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn registration(&self) -> &Registration {
        &self.reg
    }

    /// [`commit_with`](Self::commit_with) [`Durability::Durable`]: fsync the file,
    /// rename it over the target, fsync the directory.
    ///
    /// # Errors
    ///
    /// As [`commit_with`](Self::commit_with).
    ///
    /// # Cancel safety
    ///
    /// As [`commit_with`](Self::commit_with).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// use tokio::io::AsyncWriteExt;
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let target = sup.temp_root().join("state.json");
    /// let mut f = sup.atomic_file(&target).await?;
    /// f.write_all(b"{}").await.unwrap();
    /// assert!(!target.exists()); // readers see the old file (none) until the commit
    /// f.commit().await?;
    /// assert_eq!(std::fs::read(&target).unwrap(), b"{}");
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub async fn commit(self) -> Result<()> {
        self.finish(None, Durability::Durable, true).await
    }

    /// Flushes, then (on the blocking pool, as one unit) gives the temp file the
    /// target's mode and owner, fsyncs it if `durability` asks for it, renames it over
    /// the target, and fsyncs the directory if asked.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] with [`Operation::AtomicCommit`] naming the target, keeping the
    /// `io::ErrorKind`: `StorageFull` (the data did not fit), `ReadOnlyFilesystem`,
    /// `CrossesDevices` (the target is a mount point), `IsADirectory`... The target is
    /// then unchanged and the temp file discarded. A failed `fsync` says so in its
    /// message and is not retried ([`AtomicFile::is_fsync_failure`]); if it was the
    /// directory's, the rename has happened but may not survive a power loss.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: dropped while flushing, the temp file is discarded and the target
    /// untouched; dropped once the unit runs on the blocking pool, the unit finishes (the
    /// target is then the complete old or the complete new file) and the temp file is
    /// removed either way.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// use tokio::io::AsyncWriteExt;
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let mut f = sup.atomic_file(sup.temp_root().join("cache")).await?;
    /// f.write_all(b"rebuildable").await.unwrap();
    /// f.commit_with(tokio_custodian::Durability::Atomic).await?;
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub async fn commit_with(self, durability: Durability) -> Result<()> {
        self.finish(None, durability, true).await
    }

    /// Like [`commit`](Self::commit), but only creates: fails with `AlreadyExists` if
    /// the target exists (`RENAME_NOREPLACE`, or `linkat`).
    ///
    /// # Errors
    ///
    /// As [`commit_with`](Self::commit_with), and `AlreadyExists`.
    ///
    /// # Cancel safety
    ///
    /// As [`commit_with`](Self::commit_with).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let path = sup.temp_root().join("once");
    /// std::fs::write(&path, b"first").unwrap();
    /// let err = sup.atomic_file(&path).await?.commit_noclobber().await.unwrap_err();
    /// assert_eq!(err.io_kind(), Some(std::io::ErrorKind::AlreadyExists));
    /// assert_eq!(std::fs::read(&path).unwrap(), b"first");
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub async fn commit_noclobber(self) -> Result<()> {
        self.finish(None, Durability::Durable, false).await
    }

    /// Discards the temp file and releases the writer; the target is untouched.
    ///
    /// # Errors
    ///
    /// The removal's error (a named temp file replaced by another file is left alone).
    ///
    /// # Cancel safety
    ///
    /// The release happens at the first poll.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// use tokio::io::AsyncWriteExt;
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let target = sup.temp_root().join("state.json");
    /// std::fs::write(&target, "old").unwrap();
    /// let mut f = sup.atomic_file(&target).await?;
    /// f.write_all(b"half a new").await.unwrap();
    /// f.discard().await?; // the target keeps its old content
    /// assert_eq!(std::fs::read_to_string(&target).unwrap(), "old");
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub async fn discard(self) -> Result<()> {
        self.reg.close().await
    }

    /// Whether `err` is a failed `fsync` of a commit (never retried on the same fd).
    ///
    /// ```
    /// let e = tokio_custodian::Error::Io {
    ///     op: tokio_custodian::Operation::AtomicCommit,
    ///     path: "x".into(),
    ///     source: std::io::Error::other("no"),
    /// };
    /// assert!(!tokio_custodian::AtomicFile::is_fsync_failure(&e));
    /// ```
    pub fn is_fsync_failure(err: &Error) -> bool {
        matches!(err, Error::Io { source, .. } if FsyncFailed::is(source))
    }

    /// Removes the temp names that atomic writes killed mid-way left in `dir`, each
    /// proven by the check the [recovery](crate::recover) uses: exactly
    /// [`ATOMIC_TEMP_PREFIX`] and 16 lower-case hex digits, a regular file (never a
    /// symlink) on `dir`'s mount, owned by this effective uid (root too leaves other
    /// users' files alone), older than `min_age`, and its writer gone (every live writer
    /// holds an `flock` on its temp file, and the kernel drops it when the writer dies).
    /// `dir` itself is not followed if it is a symlink. Blocking: call it from
    /// [`spawn_blocking`](tokio::task::spawn_blocking) in async code. Returns how many
    /// names it removed.
    ///
    /// `min_age` guards the instant between a writer's `O_EXCL` creation and its
    /// `flock`: a minute is plenty; zero is only safe when no writer is running.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] with [`Operation::Cleanup`] naming `dir` if it cannot be opened or
    /// read (a symlink, not followed, is no directory: `ENOTDIR`, also through a trailing
    /// `/`).
    ///
    /// ```
    /// let dir = std::env::temp_dir();
    /// let n = tokio_custodian::AtomicFile::sweep(&dir, std::time::Duration::from_secs(600)).unwrap();
    /// # let _ = n;
    /// ```
    pub fn sweep(dir: &Path, min_age: std::time::Duration) -> Result<usize> {
        os::sweep(dir, min_age).map_err(|e| Error::io(Operation::Cleanup, dir, e))
    }

    pub(super) async fn finish(
        self,
        bytes: Option<Bytes>,
        d: Durability,
        replace: bool,
    ) -> Result<()> {
        let op = Operation::AtomicCommit;
        let AtomicFile {
            reg,
            file,
            dir,
            named,
            target,
        } = self;
        let file = match file.take() {
            Some(mut f) => match f.flush().await {
                Ok(()) => f.into_std().await,
                Err(e) => return Err(Error::io(op, &target, e)),
            },
            None => return Err(Error::io(op, &target, revoked())),
        };
        let path = target.clone();
        let unit = tokio::task::spawn_blocking(move || {
            let (_, name) = os::split(&path)?;
            let plan = os::Plan {
                target: name,
                sync_file: d == Durability::Durable,
                sync_dir: d == Durability::Durable,
                replace,
            };
            let temp = named.as_ref().map(|(n, _)| n.as_os_str());
            os::commit(
                &dir,
                file,
                temp,
                bytes.as_ref().map(|b| (**b).as_ref()),
                plan,
            )
        });
        let done = unit.await.map_err(io::Error::other).and_then(|r| r);
        // Committed or not, the temp file's name (if any) is removed by the release.
        let closed = reg.close().await;
        done.map_err(|e| Error::io(op, &target, e))?;
        closed
    }
}

crate::resource::slot::delegate_async_io!(AtomicFile, file);

impl fmt::Debug for AtomicFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AtomicFile")
            .field("id", &self.reg.id())
            .field("target", &self.target)
            .field("temp", &self.named.as_ref().map(|(n, _)| n))
            .finish()
    }
}
