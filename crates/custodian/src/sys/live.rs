//! What other processes are using right now, as the kernel lists it: the inodes someone
//! holds a lock on (`/proc/locks`: `flock`, POSIX and OFD locks), the paths of
//! listening unix sockets (`/proc/net/unix`) and, asked separately, the files held open
//! ([`open_files`]). Read once per age sweep, then asked per
//! entry, so a sweep of any size reads each file once.
//!
//! What the lists can and cannot say:
//! - `/proc/locks` names a lock's file by `major:minor:inode` of its super block. That
//!   device is not always the `st_dev` that `stat` reports (a btrfs subvolume, an
//!   overlayfs file), so an entry counts as locked when its *inode number* is in the
//!   list, whatever the device: a collision with another file system's inode only keeps
//!   more, never removes what is locked. A waiter (`->` lines) counts too.
//! - Since Linux 4.10 `/proc/locks` shows only the locks of processes visible in the
//!   reader's pid namespace; a real (not dry) sweep also tries an `flock` on what it
//!   removes, which sees every holder of an `flock`.
//! - `/proc/net/unix` names a socket by the inode of the socket itself, not of the file
//!   it is bound to, and by the path as it was given to `bind` (possibly relative, or
//!   renamed since). So a socket file is matched by its absolute path; a socket file is
//!   kept anyway (but a dead owner's inspect socket), the list only says which are live.
//!   A listener in another network namespace is not in it: where a socket may go (that
//!   inspect socket), a `connect` asks instead ([`is_listened_on`]).
//! - [`open_files`] sees the processes of the reader's pid namespace (a holder outside
//!   a container the sweeper runs in is not seen), the fd table of each thread group's
//!   leader (a thread that unshared its table is not seen), and neither a file mapped
//!   with its fd closed (`/proc/PID/maps` would take each process's mmap lock, which a
//!   process stuck in a fault holds) nor one opened after the reading.

use std::collections::HashSet;
use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStringExt;
use std::path::Path;

use super::FileId;

/// The files other processes hold open right now (`/proc/PID/fd/*` of every process
/// but this one, each followed to its file's device and inode, and their working and
/// root directories): a file someone holds open, lock or no lock, is in use. A non-root reader sees its own user's processes
/// only. One `statx` per open fd on the system: read once per sweep, and only once
/// something is about to be removed.
///
/// # Errors
///
/// If `/proc` cannot be listed. A process that exits, or whose fds this process may not
/// read, is skipped.
pub(crate) fn open_files() -> io::Result<HashSet<FileId>> {
    use rustix::fs::{AtFlags, Mode, OFlags, StatxFlags};
    let proc = super::procfs::open_proc()?;
    let me = std::process::id().to_string();
    let mut open = HashSet::new();
    for pid in super::procfs::pids_in(proc.as_fd())? {
        if *pid == *me.as_bytes() {
            continue;
        }
        // Its working and root directories are in use as much as an open directory:
        // removed, its relative paths fail (tests/review_final2_age_cwd.rs).
        for link in [&b"/cwd"[..], b"/root"] {
            let at = [&pid[..], link].concat();
            let flags = AtFlags::STATX_DONT_SYNC;
            if let Ok(x) = rustix::fs::statx(&proc, at.as_slice(), flags, StatxFlags::INO) {
                let dev = rustix::fs::makedev(x.stx_dev_major, x.stx_dev_minor);
                open.insert(FileId {
                    dev,
                    ino: x.stx_ino,
                });
            }
        }
        let mut path = pid.to_vec();
        path.extend_from_slice(b"/fd");
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let Ok(fds) = rustix::fs::openat(&proc, path.as_slice(), flags, Mode::empty()) else {
            continue;
        };
        let Ok(dir) = rustix::fs::Dir::read_from(&fds) else {
            continue;
        };
        for e in dir.flatten() {
            // Follows the fd's magic link to the open file itself; `DONT_SYNC`: cached
            // attributes, never a round trip to a (possibly hung) NFS server or FUSE daemon.
            let flags = AtFlags::STATX_DONT_SYNC;
            if let Ok(x) = rustix::fs::statx(&fds, e.file_name(), flags, StatxFlags::INO) {
                let dev = rustix::fs::makedev(x.stx_dev_major, x.stx_dev_minor);
                open.insert(FileId {
                    dev,
                    ino: x.stx_ino,
                });
            }
        }
    }
    Ok(open)
}

/// Whether a process listens on the unix socket `name` in `dir`, as a `connect` to it
/// says: a path socket is reached by its inode, from any network namespace, where
/// `/proc/net/unix` lists only the reader's. `Some(false)` only for a refused
/// connection (no listener anywhere); `Some(true)` for an accepted one (closed at once)
/// or a full backlog; `None` for any other answer (not allowed to connect, gone). Never
/// blocks (a non-blocking `connect`).
pub(crate) fn is_listened_on(dir: BorrowedFd<'_>, name: &std::ffi::OsStr) -> Option<bool> {
    use rustix::io::Errno;
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
    use std::os::fd::AsRawFd;
    let flags = SocketFlags::CLOEXEC | SocketFlags::NONBLOCK;
    let fd = rustix::net::socket_with(AddressFamily::UNIX, SocketType::STREAM, flags, None).ok()?;
    // Through the directory's fd: short whatever the directory's path (108 bytes at most).
    let mut via = std::path::PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    via.push(name);
    match rustix::net::connect(&fd, &SocketAddrUnix::new(via).ok()?) {
        Err(Errno::CONNREFUSED) => Some(false),
        Ok(()) | Err(Errno::AGAIN) => Some(true),
        Err(_) => None,
    }
}

/// The `__SO_ACCEPTCON` flag of `/proc/net/unix`: the socket is listening.
const LISTENING: u32 = 1 << 16;

/// One reading of `/proc/locks` and `/proc/net/unix`.
#[derive(Clone, Debug, Default)]
pub(crate) struct Live {
    locked: HashSet<u64>,
    listening: HashSet<OsString>,
}

impl Live {
    /// Reads both lists. Blocking (two small `/proc` files).
    ///
    /// # Errors
    ///
    /// If `/proc/locks` cannot be read: without it nothing may be called unlocked. A
    /// missing `/proc/net/unix` (no unix socket support) is an empty list.
    pub(crate) fn read() -> io::Result<Self> {
        // Bytes, not text: a socket's path is whatever bytes its program bound (any user
        // can bind one that is not UTF-8), and reading it as text failed every sweep.
        let locks = std::fs::read("/proc/locks")?;
        let unix = match std::fs::read("/proc/net/unix") {
            Ok(s) => s,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        Ok(Live {
            locked: parse_locks(&locks),
            listening: parse_unix(&unix),
        })
    }

    /// Whether someone holds (or waits for) a lock on an inode with this number.
    pub(crate) fn is_locked(&self, ino: u64) -> bool {
        self.locked.contains(&ino)
    }

    /// Whether a listening unix socket is bound to this absolute path.
    pub(crate) fn is_listening(&self, path: &Path) -> bool {
        self.listening.contains(path.as_os_str())
    }
}

/// The inode numbers of `/proc/locks`: lines like
/// `1: FLOCK  ADVISORY  WRITE 1234 08:01:56789 0 EOF` (`1: -> FLOCK ...` for a waiter).
fn parse_locks(text: &[u8]) -> HashSet<u64> {
    // Every field that matters is ASCII; anything else cannot parse as one.
    String::from_utf8_lossy(text)
        .lines()
        .filter_map(|line| {
            // The first field of the form `hex:hex:decimal` is the file.
            line.split_ascii_whitespace().find_map(|f| {
                let mut parts = f.split(':');
                let (maj, min, ino) = (parts.next()?, parts.next()?, parts.next()?);
                let hex = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit());
                (parts.next().is_none() && hex(maj) && hex(min))
                    .then(|| ino.parse::<u64>().ok())
                    .flatten()
            })
        })
        .collect()
}

/// The absolute paths of listening sockets in `/proc/net/unix`: after a header, lines
/// like `0000000000000000: 00000002 00000000 00010000 0001 01 12345 /run/x.sock`
/// (Num, RefCount, Protocol, Flags, Type, St, Inode, Path). An abstract socket's path
/// starts with `@`, an unbound one has none.
fn parse_unix(text: &[u8]) -> HashSet<OsString> {
    text.split(|&b| b == b'\n')
        .skip(1)
        .filter_map(|line| {
            let (fields, path) = split_fields(line, 7);
            let flags = u32::from_str_radix(std::str::from_utf8(fields.get(3)?).ok()?, 16).ok()?;
            (flags & LISTENING != 0 && path.starts_with(b"/"))
                .then(|| OsString::from_vec(path.to_vec()))
        })
        .collect()
}

/// The first `n` whitespace-separated fields of `line`, and the rest after them (a path
/// may contain spaces, and bytes that are not UTF-8).
fn split_fields(line: &[u8], n: usize) -> (Vec<&[u8]>, &[u8]) {
    let mut fields = Vec::with_capacity(n);
    let mut rest = line.trim_ascii_start();
    while fields.len() < n && !rest.is_empty() {
        let end = rest
            .iter()
            .position(u8::is_ascii_whitespace)
            .unwrap_or(rest.len());
        fields.push(&rest[..end]);
        rest = rest[end..].trim_ascii_start();
    }
    (fields, rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_are_read_by_inode_waiters_included() {
        let text = "1: POSIX  ADVISORY  WRITE 1234 08:01:56789 0 EOF\n\
                    2: FLOCK  ADVISORY  WRITE 99 00:1f:42 0 EOF\n\
                    2: -> FLOCK  ADVISORY  WRITE 100 00:1f:43 0 EOF\n\
                    3: OFDLCK ADVISORY  READ  -1 fd:00:7 0 EOF\n";
        let got = parse_locks(text.as_bytes());
        assert_eq!(got, HashSet::from([56789, 42, 43, 7]));
        assert!(parse_locks(b"garbage\n\xff\n").is_empty());
    }

    #[test]
    fn listening_sockets_are_read_by_absolute_path() {
        let text = b"Num       RefCount Protocol Flags    Type St Inode Path\n\
            0000000000000000: 00000002 00000000 00010000 0001 01 12345 /run/a.sock\n\
            0000000000000000: 00000002 00000000 00000000 0001 03 12346 /run/connected\n\
            0000000000000000: 00000002 00000000 00010000 0001 01 12347 @abstract\n\
            0000000000000000: 00000002 00000000 00010000 0001 01 12348 relative.sock\n\
            0000000000000000: 00000003 00000000 00000000 0001 03 12349\n\
            0000000000000000: 00000002 00000000 00010000 0001 01 12350 /tmp/with space\n\
            0000000000000000: 00000002 00000000 00010000 0001 01 12351 /tmp/\xff\n";
        let got = parse_unix(text);
        assert_eq!(
            got,
            HashSet::from([
                OsString::from("/run/a.sock"),
                OsString::from("/tmp/with space"),
                OsString::from_vec(b"/tmp/\xff".to_vec()),
            ])
        );
    }

    #[test]
    fn this_process_sees_its_own_lock_and_listener() {
        let dir = std::env::temp_dir().join(format!("custodian-live-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = std::fs::File::create(dir.join("f")).unwrap();
        let ino = rustix::fs::fstat(&file).unwrap().st_ino;
        assert!(!Live::read().unwrap().is_locked(ino));
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive).unwrap();
        let sock = dir.join("s");
        let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let live = Live::read().unwrap();
        assert!(live.is_locked(ino));
        assert!(live.is_listening(&sock));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
