//! The crash journal's file primitives: the state directory, append-only journal files,
//! and checksummed record frames (a process's `/proc` identity is `procfs.rs`'s).
//!
//! Nothing here knows what a record means (that is `journal.rs`, one layer up). What is
//! promised here:
//! - the state directory's last component is created with `mkdirat` (mode 0700) and
//!   opened with `O_NOFOLLOW|O_DIRECTORY`; a symlink there, a directory of another user
//!   or one that others can read or write is refused (its parent path is the caller's
//!   configuration and is resolved normally);
//! - journal files are created in it with `O_EXCL|O_NOFOLLOW`, mode 0600 whatever the
//!   umask, `O_APPEND`, and locked with an exclusive `flock` for the owner's lifetime;
//! - a frame is `"cjr1" | len: u32 LE | payload | fnv1a64(len ‖ payload): u64 LE`, written
//!   with one `write` call, so a crash leaves at most one torn frame at the end;
//! - [`frames`] never trusts a length: anything that does not check out ends the parse,
//!   and is reported with its offset.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{AtFlags, FileType, FlockOperation, Mode, OFlags};
use rustix::io::Errno;

const MAGIC: &[u8; 4] = b"cjr1";
const HEADER: usize = 8;
const TRAILER: usize = 8;
/// The largest payload a frame may claim (a record is a few hundred bytes at most).
pub(crate) const MAX_PAYLOAD: usize = 64 * 1024;
/// The largest journal a sweep reads; anything past it is reported, not parsed.
pub(crate) const MAX_JOURNAL: usize = 64 * 1024 * 1024;
/// Journal files end with this; nothing else in the state dir is read.
pub(crate) const SUFFIX: &str = ".journal";

/// FNV-1a, 64 bits: a few lines of std-only code, enough to tell a torn or flipped
/// record from a whole one (it is no defence against a forger, who could write the
/// state dir anyway).
pub(crate) fn fnv1a64(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// One payload, framed: magic, length, payload, checksum.
pub(crate) fn frame(payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len())
        .unwrap_or(u32::MAX)
        .to_le_bytes();
    let sum = fnv1a64(&[&len, payload]);
    let mut out = Vec::with_capacity(HEADER + payload.len() + TRAILER);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&len);
    out.extend_from_slice(payload);
    out.extend_from_slice(&sum.to_le_bytes());
    out
}

/// Why the parse of a journal stopped before its end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BadFrame {
    pub(crate) offset: usize,
    pub(crate) why: &'static str,
}

/// The payloads of `buf` with their frames' offsets, in order, up to the first frame
/// that does not check out.
pub(crate) fn frames(buf: &[u8]) -> (Vec<(usize, &[u8])>, Option<BadFrame>) {
    let mut out = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        let rest = &buf[at..];
        let bad = |why| Some(BadFrame { offset: at, why });
        if rest.len() < HEADER + TRAILER {
            return (out, bad("torn record: shorter than a frame"));
        }
        if &rest[..4] != MAGIC {
            return (out, bad("bad magic"));
        }
        let len_bytes: [u8; 4] = rest[4..8].try_into().unwrap_or_default();
        let len = u32::from_le_bytes(len_bytes) as usize;
        if len > MAX_PAYLOAD {
            return (out, bad("length out of range"));
        }
        let Some(end) = (HEADER + len)
            .checked_add(TRAILER)
            .filter(|e| *e <= rest.len())
        else {
            return (out, bad("torn record: shorter than its length"));
        };
        let payload = &rest[HEADER..HEADER + len];
        let sum_bytes: [u8; 8] = rest[HEADER + len..end].try_into().unwrap_or_default();
        if u64::from_le_bytes(sum_bytes) != fnv1a64(&[&len_bytes, payload]) {
            return (out, bad("checksum mismatch"));
        }
        out.push((at, payload));
        at += end;
    }
    (out, None)
}

/// Opens the state directory, creating its last component (0700) if it is missing.
/// Refuses a symlink, a non-directory, another user's directory, or one with any
/// group or other permission bit.
pub(crate) fn open_state_dir(path: &Path, create: bool) -> io::Result<OwnedFd> {
    let (parent, name) = match (path.parent(), path.file_name()) {
        (Some(p), Some(n)) => (
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            },
            n,
        ),
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a directory name",
            ));
        }
    };
    let parent = rustix::fs::open(
        parent,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    if create {
        match rustix::fs::mkdirat(&parent, name, Mode::RWXU) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let fd = rustix::fs::openat(
        &parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| match e {
        // `O_NOFOLLOW` on a symlink: say so rather than "too many levels of links".
        Errno::LOOP | Errno::NOTDIR => io::Error::new(
            io::ErrorKind::InvalidInput,
            "the state dir is a symlink or not a directory",
        ),
        e => e.into(),
    })?;
    check_private(&fd, 0o077, "state dir")?;
    Ok(fd)
}

/// Fails unless `fd` belongs to this effective uid and has none of the `forbidden` bits.
fn check_private(fd: impl AsFd, forbidden: u32, what: &str) -> io::Result<rustix::fs::Stat> {
    let st = rustix::fs::fstat(fd)?;
    if st.st_uid != rustix::process::geteuid().as_raw() {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("the {what} belongs to another user"),
        ));
    }
    if st.st_mode & forbidden != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "the {what} is accessible to other users (mode {:o})",
                st.st_mode & 0o7777
            ),
        ));
    }
    Ok(st)
}

/// Creates a new journal `name` in `dir`: exclusive, 0600, append-only, locked.
pub(crate) fn create_journal(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<OwnedFd> {
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::WRONLY
            | OFlags::CREATE
            | OFlags::EXCL
            | OFlags::APPEND
            | OFlags::NOFOLLOW
            | OFlags::CLOEXEC,
        Mode::RUSR | Mode::WUSR,
    )?;
    let set_up = (|| {
        rustix::fs::fchmod(&fd, Mode::RUSR | Mode::WUSR)?;
        // Waiting: a sweep may hold it for a moment between our `openat` and this (it
        // finds the owner alive and lets go); nobody else ever holds a new file's lock.
        rustix::fs::flock(&fd, FlockOperation::LockExclusive)?;
        io::Result::Ok(())
    })();
    if let Err(e) = set_up {
        let _ = rustix::fs::unlinkat(dir, name, AtFlags::empty());
        return Err(e);
    }
    Ok(fd)
}

/// Appends `bytes` with one `write` (a short write, which a regular file only gives on
/// `ENOSPC`-like conditions, is completed by more writes).
pub(crate) fn append(fd: BorrowedFd<'_>, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match rustix::io::write(fd, bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// The names of the journal files in `dir` (entries ending in [`SUFFIX`], not hidden).
pub(crate) fn list(dir: BorrowedFd<'_>) -> io::Result<Vec<OsString>> {
    let mut names = Vec::new();
    for e in rustix::fs::Dir::read_from(dir)? {
        let e = e?;
        let name = e.file_name().to_bytes();
        // A journal's name never starts with a dot: `.compact-*.journal` is an older
        // version's crashed compaction, not a journal.
        if name.ends_with(SUFFIX.as_bytes()) && name.len() > SUFFIX.len() && !name.starts_with(b".")
        {
            names.push(OsStr::from_bytes(name).to_os_string());
        }
    }
    names.sort();
    Ok(names)
}

/// A journal a sweep may act on: opened without following a symlink, a regular file of
/// this user, locked (exclusive, non-blocking: a live owner or another sweep holds it).
pub(crate) enum Opened {
    Ready { fd: OwnedFd, bytes: Vec<u8> },
    Locked,
}

/// Opens, checks, locks and reads the journal `name` in `dir`.
pub(crate) fn open_for_sweep(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<Opened> {
    // Read-write, appending: a sweep that dealt with the owner's processes appends its
    // `Swept` record before it lets go.
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::RDWR | OFlags::APPEND | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let st = check_private(&fd, 0o077, "journal")?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    if rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive).is_err() {
        return Ok(Opened::Locked);
    }
    let mut bytes = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match rustix::io::read(&fd, &mut buf) {
            Ok(0) => break,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
        if bytes.len() > MAX_JOURNAL {
            bytes.truncate(MAX_JOURNAL);
            break;
        }
    }
    Ok(Opened::Ready { fd, bytes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_every_truncation_or_flip_is_caught() {
        let mut buf = frame(b"first");
        buf.extend(frame(b"second record"));
        let (ok, bad) = frames(&buf);
        assert_eq!(
            ok,
            vec![
                (0, &b"first"[..]),
                (frame(b"first").len(), &b"second record"[..])
            ]
        );
        assert_eq!(bad, None);
        let first = frame(b"first").len();
        for cut in first + 1..buf.len() {
            let (ok, bad) = frames(&buf[..cut]);
            assert_eq!(ok.len(), 1, "cut at {cut}");
            assert_eq!(bad.unwrap().offset, first);
        }
        for i in first..buf.len() {
            for bit in 0..8 {
                let mut b = buf.clone();
                b[i] ^= 1 << bit;
                let (ok, bad) = frames(&b);
                assert_eq!(ok.len(), 1, "flip at {i}.{bit}");
                assert!(bad.is_some());
            }
        }
    }
}
