//! Committing many atomic writers with one `fsync` per directory.

use std::io;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::io::AsyncWriteExt;

use crate::error::{Error, Operation, Result};
use crate::resource::slot::revoked;
use crate::sys::FileId;

use super::{AtomicFile, os};

type Job = (
    std::fs::File,
    Arc<OwnedFd>,
    Option<std::ffi::OsString>,
    PathBuf,
);

impl AtomicFile {
    /// Commits `files` durably with one directory `fsync` per distinct directory: every
    /// temp file is flushed, fsynced and given its mode first; only then are they renamed
    /// over their targets, in order; then each directory is fsynced once.
    ///
    /// Each file is replaced atomically; the *batch* is not a transaction: if a rename
    /// fails, the targets before it are already replaced (and their directories are
    /// still fsynced), the ones after it are untouched. Every temp file not renamed is
    /// discarded.
    ///
    /// # Errors
    ///
    /// The first failure, as [`commit_with`](Self::commit_with) reports it, naming that
    /// file's target. An error before any rename (a flush, an `fsync`, a mode) leaves
    /// every target untouched.
    ///
    /// # Cancel safety
    ///
    /// As [`commit_with`](Self::commit_with): dropped before the blocking unit starts,
    /// every temp file is discarded; once it runs, it finishes.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// use tokio::io::AsyncWriteExt;
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let mut files = Vec::new();
    /// for name in ["a", "b", "c"] {
    ///     let mut f = sup.atomic_file(sup.temp_root().join(name)).await?;
    ///     f.write_all(name.as_bytes()).await.unwrap();
    ///     files.push(f);
    /// }
    /// tokio_custodian::AtomicFile::commit_batch(files).await?;
    /// assert_eq!(std::fs::read(sup.temp_root().join("b")).unwrap(), b"b");
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub async fn commit_batch(files: Vec<AtomicFile>) -> Result<()> {
        let op = Operation::AtomicCommit;
        let mut regs = Vec::with_capacity(files.len());
        let mut jobs: Vec<Job> = Vec::with_capacity(files.len());
        let mut failed = None;
        for f in files {
            let AtomicFile {
                reg,
                file,
                dir,
                named,
                target,
            } = f;
            regs.push(reg);
            if failed.is_some() {
                continue;
            }
            match file.take() {
                Some(mut h) => match h.flush().await {
                    Ok(()) => jobs.push((h.into_std().await, dir, named.map(|n| n.0), target)),
                    Err(e) => failed = Some(Error::io(op, &target, e)),
                },
                None => failed = Some(Error::io(op, &target, revoked())),
            }
        }
        if failed.is_none() {
            let unit = tokio::task::spawn_blocking(move || run(jobs));
            let joined = unit
                .await
                .map_err(|e| Error::io(op, "atomic batch", io::Error::other(e)));
            failed = joined.and_then(|r| r).err();
        }
        // Committed or not, each temp name (if any) is removed by its release.
        for reg in regs {
            let closed = reg.close().await;
            if failed.is_none() {
                failed = closed.err();
            }
        }
        failed.map_or(Ok(()), Err)
    }
}

/// The blocking unit: prepare all, place all, sync each directory once.
fn run(jobs: Vec<Job>) -> Result<()> {
    let op = Operation::AtomicCommit;
    let mut ready = Vec::with_capacity(jobs.len());
    for (file, dir, named, target) in jobs {
        let prepared =
            os::split(&target).and_then(|(_, name)| os::prepare(&dir, file, None, plan(name)));
        let file = prepared.map_err(|e| Error::io(op, &target, e))?;
        ready.push((file, dir, named, target));
    }
    let mut dirs: Vec<(FileId, Arc<OwnedFd>, PathBuf)> = Vec::new();
    let mut failed = None;
    for (file, dir, named, target) in &ready {
        let placed = os::split(target)
            .and_then(|(_, name)| os::place(dir, file, named.as_deref(), plan(name)));
        if let Err(e) = placed {
            failed = Some(Error::io(op, target, e));
            break;
        }
        let id = FileId::of_fd(&**dir).map_err(|e| Error::io(op, target, e))?;
        if !dirs.iter().any(|(d, ..)| *d == id) {
            dirs.push((id, dir.clone(), target.clone()));
        }
    }
    // The renames that happened are made durable even if a later one failed.
    for (_, dir, target) in dirs {
        os::sync_dir(&dir).map_err(|e| Error::io(op, &target, e))?;
    }
    failed.map_or(Ok(()), Err)
}

/// A durable, replacing commit whose directory is synced once at the end.
fn plan(name: &std::ffi::OsStr) -> os::Plan<'_> {
    os::Plan {
        target: name,
        sync_file: true,
        sync_dir: false,
        replace: true,
    }
}
