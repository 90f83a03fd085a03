//! The age sweep, in the spirit of `systemd-tmpfiles --clean`: removes the entries of a
//! base directory whose access, modification and change times are all older than an
//! age. It needs no journal: it is for what no custodian recorded.
//!
//! Per entry of the base (its direct children only), checked on an fd opened without
//! following a symlink:
//! - any of atime, mtime, ctime newer than `now - age`: kept (`Young`);
//! - a symlink: the link itself is removed, its target never looked at;
//! - on another mount than the base (a mount point, or a bind-mounted file): kept;
//! - a file or directory someone holds a `flock` on (a live custodian root is locked
//!   for its owner's life): kept (`Locked`);
//! - anything else than a file, directory or symlink (socket, fifo, device): kept;
//! - otherwise removed with `sys/remove.rs` (inode-checked, fd-relative, never entering
//!   a mount inside a directory). `dry_run` reports without removing.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use rustix::fs::{AtFlags, FileType, FlockOperation, Mode, OFlags};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Operation, Result};
use crate::leak::duration_ms;
use crate::sys::FileId;
use crate::sys::mount::place_of;
use crate::sys::remove::{self, Outcome};

/// What [`clean_older_than`] removed (or, in a dry run, would remove) and kept.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AgeReport {
    /// The base directory.
    pub base: PathBuf,
    /// Whether nothing was removed (the report says what would have been).
    pub dry_run: bool,
    /// Entries removed (or to remove, in a dry run).
    pub removed: Vec<PathBuf>,
    /// Entries kept, and why.
    pub kept: Vec<AgeKept>,
    /// How long it took.
    #[serde(with = "duration_ms")]
    pub took: Duration,
}

/// An entry [`clean_older_than`] kept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AgeKept {
    /// The entry.
    pub path: PathBuf,
    /// Why it was kept.
    pub reason: AgeKeptReason,
}

/// Why [`clean_older_than`] kept an entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum AgeKeptReason {
    /// One of its times is newer than the age.
    Young,
    /// Someone holds a `flock` on it.
    Locked,
    /// It is on another mount than the base.
    MountPoint,
    /// Not a file, directory or symlink.
    Special,
    /// Its removal failed (or was refused: replaced meanwhile, a mount inside).
    Failed {
        /// The error.
        detail: String,
    },
}

/// Removes the entries of `base` older than `age` (atime, mtime and ctime all older),
/// skipping locked ones, never following a symlink, never crossing a mount, never
/// leaving `base`. With `dry_run`, only reports. Blocking.
///
/// # Errors
///
/// [`Error::Io`] with [`Operation::Sweep`] naming `base` if it cannot be opened or
/// listed. Problems with one entry are reported in [`AgeReport::kept`].
///
/// ```
/// use std::time::Duration;
/// let base = std::env::temp_dir().join(format!("age-doc-{}", std::process::id()));
/// std::fs::create_dir(&base).unwrap();
/// std::fs::write(base.join("fresh"), b"x").unwrap();
/// let report = tokio_custodian::clean_older_than(&base, Duration::from_secs(3600), false)?;
/// assert!(report.removed.is_empty());
/// assert_eq!(report.kept[0].reason, tokio_custodian::AgeKeptReason::Young);
/// # std::fs::remove_dir_all(&base).unwrap();
/// # Ok::<(), tokio_custodian::Error>(())
/// ```
pub fn clean_older_than(base: impl AsRef<Path>, age: Duration, dry_run: bool) -> Result<AgeReport> {
    let base = base.as_ref();
    let fail = |e: io::Error| Error::io(Operation::Sweep, base, e);
    let started = Instant::now();
    let dir = rustix::fs::open(
        base,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| fail(e.into()))?;
    // Saturating: an age longer than the clock's past makes nothing old.
    let before = SystemTime::now()
        .checked_sub(age)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let before = before
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let mut report = AgeReport {
        base: base.to_path_buf(),
        dry_run,
        ..Default::default()
    };
    let mut names = Vec::new();
    for e in rustix::fs::Dir::read_from(&dir).map_err(|e| fail(e.into()))? {
        let e = e.map_err(|e| fail(e.into()))?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(OsStr::from_bytes(n).to_os_string());
        }
    }
    names.sort();
    for name in names {
        let path = base.join(&name);
        match one(&dir, &name, before, dry_run) {
            Ok(None) => report.removed.push(path),
            Ok(Some(reason)) => report.kept.push(AgeKept { path, reason }),
            // Gone meanwhile: nothing to do, nothing to say.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => report.kept.push(AgeKept {
                path,
                reason: AgeKeptReason::Failed {
                    detail: e.to_string(),
                },
            }),
        }
    }
    report.took = started.elapsed();
    Ok(report)
}

/// `None` if removed (or removable, in a dry run), else why it was kept.
fn one(
    dir: &OwnedFd,
    name: &OsStr,
    before: Duration,
    dry_run: bool,
) -> io::Result<Option<AgeKeptReason>> {
    let st = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
    let older = |secs: i64, nsecs: i64| {
        let t = Duration::new(
            u64::try_from(secs).unwrap_or(0),
            u32::try_from(nsecs).unwrap_or(0),
        );
        secs >= 0 && t < before
    };
    #[allow(clippy::unnecessary_cast)] // `st_*time` types differ between targets.
    let old = older(st.st_atime as i64, st.st_atime_nsec as i64)
        && older(st.st_mtime as i64, st.st_mtime_nsec as i64)
        && older(st.st_ctime as i64, st.st_ctime_nsec as i64);
    if !old {
        return Ok(Some(AgeKeptReason::Young));
    }
    let id = FileId::of_stat(&st);
    let kind = FileType::from_raw_mode(st.st_mode);
    if kind == FileType::Symlink {
        if !dry_run {
            remove::remove_file_at(dir, name, id)?;
        }
        return Ok(None);
    }
    let flags = match kind {
        FileType::Directory => OFlags::DIRECTORY,
        FileType::RegularFile => OFlags::NONBLOCK | OFlags::NOCTTY,
        _ => return Ok(Some(AgeKeptReason::Special)),
    };
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | flags,
        Mode::empty(),
    )?;
    let (here, base) = (place_of(fd.as_fd())?, place_of(dir.as_fd())?);
    if here.id != id {
        return Err(remove::replaced_error());
    }
    if here.crosses_from(&base) {
        return Ok(Some(AgeKeptReason::MountPoint));
    }
    // Held until `fd` drops, after the removal.
    if rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive).is_err() {
        return Ok(Some(AgeKeptReason::Locked));
    }
    if dry_run {
        return Ok(None);
    }
    let outcome = if kind == FileType::Directory {
        remove::clear_dir(&fd, id)?;
        remove::remove_tree_at(dir, name, id)?
    } else {
        remove::remove_file_at(dir, name, id)?
    };
    match outcome {
        Outcome::Removed | Outcome::AlreadyGone => Ok(None),
        Outcome::SymlinkRemoved => Err(remove::replaced_error()),
    }
}
