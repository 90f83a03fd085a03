//! The blocking system calls of an atomic write: open the target's directory and a temp
//! file in it, then commit (fsync, rename or link, directory fsync).
//!
//! Invariants:
//! - everything is relative to the directory's fd, opened once: a directory renamed or
//!   replaced after the open cannot redirect the temp file or the rename;
//! - the temp file is `O_TMPFILE` (nameless: a crash leaves nothing) where the file
//!   system has it, else `.custodian-atomic-<16 hex>` created with `O_EXCL|O_NOFOLLOW`;
//!   either way mode exactly 0600 (`fchmod`, whatever the umask) until the commit gives
//!   it its final mode;
//! - the target is touched by exactly one call, `renameat` (or `linkat` for a
//!   create-only commit), so a reader sees the old or the new file, never a mix;
//! - a failed `fsync` is reported as [`FsyncFailed`] and never retried on the same fd:
//!   after a failed writeback the kernel may have marked the pages clean, so a second
//!   `fsync` can succeed with the data lost ("fsyncgate").

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{AtFlags, CWD, FileType, FlockOperation, Mode, OFlags, RenameFlags};
use rustix::io::Errno;

use crate::sys::FileId;
use crate::sys::create::{create_file_at, random_hex};

use super::ATOMIC_TEMP_PREFIX as TEMP_PREFIX;

/// A temp file opened for an atomic write.
#[derive(Debug)]
pub(crate) struct Opened {
    pub(crate) dir: OwnedFd,
    pub(crate) file: OwnedFd,
    /// The temp file's name and identity, if it has one (`None`: `O_TMPFILE`).
    pub(crate) named: Option<(OsString, FileId)>,
}

/// The directory and final name of `target`.
pub(crate) fn split(target: &Path) -> io::Result<(&Path, &OsStr)> {
    let name = target.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "the target path has no file name",
        )
    })?;
    let dir = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    Ok((dir, name))
}

/// Opens the target's directory and a 0600 temp file in it.
pub(crate) fn open_temp(target: &Path) -> io::Result<Opened> {
    open_temp_with(target, true)
}

/// [`open_temp`], with `O_TMPFILE` tried only if `unnamed` (tests force a named file).
pub(crate) fn open_temp_with(target: &Path, unnamed: bool) -> io::Result<Opened> {
    let (dir, name) = split(target)?;
    let dir = rustix::fs::openat(
        CWD,
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    // Refuse early what the commit would refuse (it checks again).
    existing(&dir, name)?;
    let private = Mode::RUSR | Mode::WUSR;
    let tmpfile = if unnamed {
        rustix::fs::openat(
            &dir,
            ".",
            OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC,
            private,
        )
    } else {
        Err(Errno::OPNOTSUPP)
    };
    match tmpfile {
        Ok(file) => {
            rustix::fs::fchmod(&file, private)?;
            // Held while the file lives: a sweep skips a temp name whose lock is taken
            // (the name exists only between `linkat` and `renameat` of a commit).
            rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive)?;
            Ok(Opened {
                dir,
                file,
                named: None,
            })
        }
        // The file system (or kernel) has no `O_TMPFILE`: fall back to a named file.
        Err(Errno::OPNOTSUPP | Errno::ISDIR | Errno::INVAL | Errno::NOENT) => {
            let made = create_file_at(dir.as_fd(), TEMP_PREFIX, "")?;
            // A sweep only takes names it can lock, and only old ones (a fresh name is
            // not old enough to be swept in the instant before this lock).
            if let Err(e) = rustix::fs::flock(&made.fd, FlockOperation::NonBlockingLockExclusive) {
                let _ = rustix::fs::unlinkat(&dir, &made.name, AtFlags::empty());
                return Err(e.into());
            }
            Ok(Opened {
                dir,
                file: made.fd,
                named: Some((made.name, made.id)),
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// How far a commit goes: see [`Durability`](super::Durability).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Plan<'a> {
    pub(crate) target: &'a OsStr,
    pub(crate) sync_file: bool,
    pub(crate) sync_dir: bool,
    pub(crate) replace: bool,
}

/// Writes `bytes` (if any), then commits the temp file over (or at) the target.
pub(crate) fn commit(
    dir: &OwnedFd,
    file: std::fs::File,
    named: Option<&OsStr>,
    bytes: Option<&[u8]>,
    plan: Plan<'_>,
) -> io::Result<()> {
    let file = prepare(dir, file, bytes, plan)?;
    place(dir, &file, named, plan)?;
    if plan.sync_dir {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Before the target is touched: writes `bytes` (if any), gives the file its final mode
/// and owner, and fsyncs it if asked (after the mode, so that the mode is durable too).
pub(crate) fn prepare(
    dir: &OwnedFd,
    mut file: std::fs::File,
    bytes: Option<&[u8]>,
    plan: Plan<'_>,
) -> io::Result<std::fs::File> {
    if let Some(bytes) = bytes {
        io::Write::write_all(&mut file, bytes)?;
    }
    // Mode and owner first: a change after the fsync would not be durable with it.
    give_final_mode(dir, &file, plan.target)?;
    if plan.sync_file {
        rustix::fs::fsync(&file).map_err(|e| FsyncFailed::wrap("temp file", e.into()))?;
    }
    Ok(file)
}

/// The one step that touches the target: rename (or link) the temp file there.
pub(crate) fn place(
    dir: &OwnedFd,
    file: &std::fs::File,
    named: Option<&OsStr>,
    plan: Plan<'_>,
) -> io::Result<()> {
    match named {
        Some(temp) => place_named(dir, temp, plan),
        None => place_unnamed(dir, file, plan),
    }
}

/// Makes the directory's new entries durable.
pub(crate) fn sync_dir(dir: &OwnedFd) -> io::Result<()> {
    rustix::fs::fsync(dir).map_err(|e| FsyncFailed::wrap("directory", e.into()))
}

/// The existing target's mode and owner (owner only where permitted), or the mode
/// `File::create` would give a new file (0666 & !umask). A symlink at the target is
/// replaced, not followed: the new file gets the new-file mode.
fn give_final_mode(dir: &OwnedFd, file: &std::fs::File, target: &OsStr) -> io::Result<()> {
    match existing(dir, target)? {
        Some(st) if FileType::from_raw_mode(st.st_mode) == FileType::RegularFile => {
            let uid = rustix::fs::Uid::from_raw(st.st_uid);
            let gid = rustix::fs::Gid::from_raw(st.st_gid);
            // Only root (or the owner, for a group it belongs to) may chown: keep going.
            match rustix::fs::fchown(file, Some(uid), Some(gid)) {
                Ok(()) | Err(Errno::PERM) => {}
                Err(e) => return Err(e.into()),
            }
            // After `fchown`, which may clear set-id bits.
            rustix::fs::fchmod(file, Mode::from_raw_mode(st.st_mode & 0o7777))?;
            Ok(())
        }
        _ => {
            rustix::fs::fchmod(file, Mode::from_raw_mode(0o666 & !umask()))?;
            Ok(())
        }
    }
}

/// What is at the target now (`None`: nothing), if an atomic write may replace it: a
/// regular file or a symlink (the link is replaced, never its target). A directory, a
/// device (`/dev/full`), a fifo or a socket is refused: renaming over it would destroy
/// it, not write to it.
fn existing(dir: &OwnedFd, target: &OsStr) -> io::Result<Option<rustix::fs::Stat>> {
    let st = match rustix::fs::statat(dir, target, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::NOENT) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile | FileType::Symlink => Ok(Some(st)),
        FileType::Directory => Err(io::Error::new(
            io::ErrorKind::IsADirectory,
            "the target is a directory",
        )),
        other => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("the target is not a regular file ({other:?}); refusing to replace it"),
        )),
    }
}

fn place_named(dir: &OwnedFd, temp: &OsStr, plan: Plan<'_>) -> io::Result<()> {
    if plan.replace {
        return Ok(rustix::fs::renameat(dir, temp, dir, plan.target)?);
    }
    match rustix::fs::renameat_with(dir, temp, dir, plan.target, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(()),
        // No `RENAME_NOREPLACE` here: `linkat` fails with `EEXIST` just as well.
        Err(Errno::INVAL | Errno::NOSYS) => {
            rustix::fs::linkat(dir, temp, dir, plan.target, AtFlags::empty())?;
            // The data is in place; a leftover temp name is only untidy.
            let _ = rustix::fs::unlinkat(dir, temp, AtFlags::empty());
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

fn place_unnamed(dir: &OwnedFd, file: &std::fs::File, plan: Plan<'_>) -> io::Result<()> {
    if !plan.replace {
        return link_fd(dir, file, plan.target);
    }
    // `linkat` cannot replace: give the file a temp name, then rename it over the target.
    let mut last = Errno::EXIST;
    for _ in 0..16 {
        let name = format!("{TEMP_PREFIX}{}", random_hex(8)?);
        match link_fd(dir, file, OsStr::new(&name)) {
            Ok(()) => {
                let renamed = rustix::fs::renameat(dir, &*name, dir, plan.target);
                if renamed.is_err() {
                    let _ = rustix::fs::unlinkat(dir, &*name, AtFlags::empty());
                }
                return Ok(renamed?);
            }
            Err(e) if e.raw_os_error() == Some(Errno::EXIST.raw_os_error()) => {
                last = Errno::EXIST;
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.into())
}

/// Gives an `O_TMPFILE` file the name `name`: through `/proc/self/fd` (no capability
/// needed), else `AT_EMPTY_PATH` (needs `CAP_DAC_READ_SEARCH` on older kernels).
fn link_fd(dir: &OwnedFd, file: &std::fs::File, name: &OsStr) -> io::Result<()> {
    let proc = format!("/proc/self/fd/{}", file.as_raw_fd());
    match rustix::fs::linkat(CWD, &*proc, dir, name, AtFlags::SYMLINK_FOLLOW) {
        Err(Errno::NOENT) if !Path::new("/proc/self/fd").exists() => Ok(rustix::fs::linkat(
            file,
            "",
            dir,
            name,
            AtFlags::EMPTY_PATH,
        )?),
        r => Ok(r?),
    }
}

/// Removes the atomic-write temp names in `dir` older than `min_age` whose writer is
/// gone. Each is proven ours by the one ownership check the recovery uses
/// (`sys::ownership`): the exact generated name shape, a regular file (never a symlink),
/// on the directory's mount, owned by this euid, old enough, and its `flock` free (every
/// live writer holds one); it is then removed only if the name still holds that inode.
/// `dir` is opened without following a symlink in its last component. Returns how many
/// it removed.
pub(crate) fn sweep(dir: &Path, min_age: std::time::Duration) -> io::Result<usize> {
    use crate::sys::ownership::{Lock, Shape, prove};
    use crate::sys::remove::open_dir_nofollow;
    // Without a trailing `/` or `/.`: either makes the kernel follow a symlink in the
    // last component whatever `O_NOFOLLOW` says (`components` drops them).
    let dir: std::path::PathBuf = dir.components().collect();
    let dirfd = open_dir_nofollow(CWD, &dir)?;
    // Saturating: an age longer than the clock's past makes nothing old.
    let before = std::time::SystemTime::now()
        .checked_sub(min_age)
        .unwrap_or(std::time::UNIX_EPOCH)
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let young = |st: &rustix::fs::Stat| {
        let mtime = std::time::Duration::new(st.st_mtime.max(0) as u64, st.st_mtime_nsec as u32);
        mtime > before
    };
    let mut removed = 0;
    for entry in rustix::fs::Dir::read_from(&dirfd)? {
        let entry = entry?;
        let name = OsStr::from_bytes(entry.file_name().to_bytes());
        let proven = match prove(
            dirfd.as_fd(),
            name,
            Shape::AtomicTemp(TEMP_PREFIX),
            young,
            Lock::Take,
        ) {
            Ok(Ok(p)) => p,
            // Not ours, not abandoned, or gone meanwhile: left alone.
            Ok(Err(_)) => continue,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        // `proven.fd` holds the lock until the name is gone. Only the proven inode is
        // unlinked: a name swapped meanwhile (for a symlink too) is left alone.
        let same = rustix::fs::statat(&dirfd, name, AtFlags::SYMLINK_NOFOLLOW)
            .is_ok_and(|st| FileId::of_stat(&st) == proven.id);
        if same && rustix::fs::unlinkat(&dirfd, name, AtFlags::empty()).is_ok() {
            removed += 1;
        }
        drop(proven);
    }
    Ok(removed)
}

/// The process umask, read from `/proc/self/status` (setting it to read it back would
/// race with other threads); 0o022 if unreadable.
pub(crate) fn umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        })
        .unwrap_or(0o022)
}

/// A failed `fsync`: the commit failed, and it is not retried on the same fd.
#[derive(Debug)]
pub(crate) struct FsyncFailed {
    what: &'static str,
    source: io::Error,
}

impl FsyncFailed {
    fn wrap(what: &'static str, source: io::Error) -> io::Error {
        io::Error::new(source.kind(), FsyncFailed { what, source })
    }

    /// Whether `e` (or what it wraps) is a failed fsync.
    pub(crate) fn is(e: &io::Error) -> bool {
        e.get_ref().is_some_and(|i| i.is::<FsyncFailed>())
    }
}

impl fmt::Display for FsyncFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "fsync of the {} failed ({}); not retried on the same fd (after a failed \
             writeback the kernel may drop the dirty pages), so the data may not be on disk",
            self.what, self.source
        )
    }
}

impl std::error::Error for FsyncFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}
