//! Reading an inspect socket, and finding the sockets of a process or a state dir.

use std::collections::HashSet;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{Inspection, PREFIX, SUFFIX};

/// How long a connection may wait for a server whose backlog is full.
const CONNECT_WAIT: Duration = Duration::from_secs(5);
/// How long a whole answer may take to be read (the server has 2 s to write it).
const READ_WAIT: Duration = Duration::from_secs(5);

/// The largest answer read (a snapshot of 10,000 resources is a few MiB).
const MAX_ANSWER: u64 = 64 << 20;

/// Reads one [`Inspection`] from an inspect socket (see
/// [`Builder::inspect`](crate::Builder::inspect)). Blocking: 5 s at most to connect
/// (a server whose backlog is full), then 5 s at most to read the whole answer.
///
/// # Errors
///
/// The socket cannot be reached (`NotFound`, `ConnectionRefused` for a dead owner's,
/// `PermissionDenied`), the answer is a refusal (`PermissionDenied`, with the server's
/// words), too large or not a snapshot (`InvalidData`), too slow (`WouldBlock` or
/// `TimedOut`, also for a server that accepts no connection), or it claims a pid other than the one the kernel names as the socket's
/// owner (`SO_PEERCRED`; `PermissionDenied`: a forged answer, or a server in another
/// pid namespace, which cannot be verified). Every error names the socket.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
/// let sup = tokio_custodian::Supervisor::builder().inspect(true).start()?;
/// let socket = sup.inspect_socket().unwrap().to_path_buf();
/// let seen = tokio::task::spawn_blocking(move || tokio_custodian::inspect(&socket)).await.unwrap();
/// assert_eq!(seen.unwrap().live_total, 0);
/// let err = tokio_custodian::inspect(std::path::Path::new("/nonexistent.sock")).unwrap_err();
/// assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
/// # sup.shutdown().await; Ok(()) }
/// ```
pub fn inspect(socket: &Path) -> io::Result<Inspection> {
    let named =
        |e: io::Error| io::Error::new(e.kind(), format!("inspect {}: {e}", socket.display()));
    let s = connect(socket).map_err(named)?;
    // The kernel's word for who listens there: the answer must be that process's.
    let owner = server_pid(&s).map_err(named)?;
    let buf = read_answer(&s).map_err(named)?;
    if buf.len() as u64 > MAX_ANSWER {
        return Err(named(io::Error::new(
            io::ErrorKind::InvalidData,
            "answer too large",
        )));
    }
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&buf)
        && let Some(e) = v.get("error").and_then(|e| e.as_str())
    {
        return Err(named(io::Error::new(
            io::ErrorKind::PermissionDenied,
            e.to_owned(),
        )));
    }
    let seen: Inspection = serde_json::from_slice(&buf)
        .map_err(|e| named(io::Error::new(io::ErrorKind::InvalidData, e)))?;
    if owner != Some(seen.pid) {
        let owner = owner.map_or("not in this pid namespace".into(), |p| format!("pid {p}"));
        return Err(named(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "the answer claims pid {}, but the socket's owner (SO_PEERCRED) is {owner}",
                seen.pid
            ),
        )));
    }
    Ok(seen)
}

/// Reads to the end, at most `MAX_ANSWER + 1` bytes and [`READ_WAIT`] in all: a
/// server that trickles its answer is cut off, not waited for a read timeout per byte.
fn read_answer(mut s: &UnixStream) -> io::Result<Vec<u8>> {
    let deadline = Instant::now().checked_add(READ_WAIT);
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        let left = deadline.map_or(READ_WAIT, |d| d.saturating_duration_since(Instant::now()));
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the answer took longer than 5 s",
            ));
        }
        s.set_read_timeout(Some(left))?;
        match s.read(&mut chunk) {
            Ok(0) => return Ok(buf),
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.len() as u64 > MAX_ANSWER {
                    return Ok(buf);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// The pid of the process listening on the other end of `s` (`SO_PEERCRED`), `None`
/// when it is outside this pid namespace (the kernel says 0). Not rustix's
/// `socket_peercred`: its `Pid` is non-zero, and that 0 is a valid answer.
fn server_pid(s: &UnixStream) -> io::Result<Option<u32>> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len =
        libc::socklen_t::try_from(std::mem::size_of::<libc::ucred>()).map_err(io::Error::other)?;
    // SAFETY: `s` is an open socket for the whole call; `cred` and `len` are live and
    // writable, and `len` is `cred`'s size, so the kernel writes at most that many bytes
    // of a plain-integer struct. Tested by `crates/custodian-cli/tests/review_inspect.rs`.
    #[allow(unsafe_code)]
    let r = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut cred).cast(),
            &raw mut len,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(u32::try_from(cred.pid).ok().filter(|&p| p != 0))
}

/// The inspect sockets process `pid` is listening on: its fds' socket inodes matched
/// with the listening unix sockets of its network namespace (`/proc/PID/net/unix`)
/// whose names are an inspect socket's. Proof by the kernel, not by a name alone.
///
/// # Errors
///
/// `/proc/PID/fd` cannot be read (no such process: `NotFound`; another user's:
/// `PermissionDenied`), naming it.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
/// let sup = tokio_custodian::Supervisor::builder().inspect(true).start()?;
/// let found = tokio_custodian::inspect_sockets_of(std::process::id()).unwrap();
/// assert!(found.iter().any(|p| p == sup.inspect_socket().unwrap()));
/// # sup.shutdown().await; Ok(()) }
/// ```
pub fn sockets_of(pid: u32) -> io::Result<Vec<PathBuf>> {
    let fd_dir = format!("/proc/{pid}/fd");
    let named = |e: io::Error| io::Error::new(e.kind(), format!("read {fd_dir}: {e}"));
    let mut inodes = HashSet::new();
    for e in std::fs::read_dir(&fd_dir).map_err(named)? {
        let Ok(e) = e else { continue };
        if let Ok(t) = std::fs::read_link(e.path())
            && let Some(n) = t.to_str().and_then(|t| t.strip_prefix("socket:["))
            && let Some(n) = n.strip_suffix(']').and_then(|n| n.parse::<u64>().ok())
        {
            inodes.insert(n);
        }
    }
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/unix")).map_err(named)?;
    let mut out = Vec::new();
    // Num RefCount Protocol Flags Type St Inode Path
    for line in table.lines().skip(1) {
        let Some((f, path)) = unix_fields(line) else {
            continue;
        };
        let (flags, inode) = (f[3], f[6]);
        let listening = u32::from_str_radix(flags, 16).is_ok_and(|v| v & 0x0001_0000 != 0);
        let ours = inode.parse::<u64>().is_ok_and(|i| inodes.contains(&i));
        if listening && ours && is_socket_name(path) {
            // Bound through the owner's fd of its dir (a long path): reach it the same way.
            match path.strip_prefix("/proc/self/") {
                Some(rest) => out.push(PathBuf::from(format!("/proc/{pid}/{rest}"))),
                None => out.push(PathBuf::from(path)),
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The inspect sockets of every live owner whose state dir is `dir`: the processes
/// holding a journal in it open (a live owner holds its own), a file owned by the
/// process's effective uid, and of their sockets (see [`sockets_of`]) those in a temp
/// root that journal names (a process's supervisors of other state dirs are left out).
/// A dead owner holds nothing, so it is not listed. Reads the fds of every process this
/// user may read (about 1 ms per 100 processes).
///
/// # Errors
///
/// The dir cannot be resolved, naming it.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
/// let state = std::env::temp_dir().join(format!("inspect-doc-{}", std::process::id()));
/// let sup = tokio_custodian::Supervisor::builder().state_dir(&state).inspect(true).start()?;
/// let found = tokio_custodian::inspect_sockets_in(&state).unwrap();
/// assert!(found.iter().any(|p| p == sup.inspect_socket().unwrap()));
/// # sup.shutdown().await; std::fs::remove_dir_all(&state).unwrap(); Ok(()) }
/// ```
pub fn sockets_in(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let dir = std::fs::canonicalize(dir)
        .map_err(|e| io::Error::new(e.kind(), format!("resolve {}: {e}", dir.display())))?;
    let mut out = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Ok(out);
    };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        // The temp roots named by its journals in `dir` (a live owner holds its own),
        // read only from a file of its own uid: anyone may hold an `O_PATH` fd of
        // another user's journal (search permission on the parents is enough).
        let Some(euid) = euid_of(pid) else { continue };
        let mut roots = HashSet::new();
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path())
                && target.parent() == Some(&*dir)
            {
                roots.extend(journal_roots(&fd.path(), &target, euid));
            }
        }
        if roots.is_empty() {
            continue;
        }
        // Only the sockets in those roots: its other supervisors' are not `dir`'s.
        for s in sockets_of(pid).unwrap_or_default() {
            let Some(parent) = s.parent() else { continue };
            // A long path is reached as `/proc/PID/fd/N/name`: N is its root.
            let parent = match parent.starts_with("/proc/") {
                true => std::fs::read_link(parent).unwrap_or_default(),
                false => parent.to_path_buf(),
            };
            if roots.contains(&parent) {
                out.push(s);
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Connects to `path`, through an fd of its dir when it is too long for an address.
/// Waits at most [`CONNECT_WAIT`] for a server whose backlog is full (wedged, or one
/// that never accepts): a blocking `connect` would wait for ever.
fn connect(path: &Path) -> io::Result<UnixStream> {
    let deadline = Instant::now().checked_add(CONNECT_WAIT);
    loop {
        match connect_once(path) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if deadline.is_none_or(|d| Instant::now() >= d) {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the server accepts no connection (its backlog is full)",
                    ));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            r => return r,
        }
    }
}

/// One non-blocking `connect` (`WouldBlock` when the backlog is full), made blocking
/// once connected.
fn connect_once(path: &Path) -> io::Result<UnixStream> {
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
    let flags = SocketFlags::CLOEXEC | SocketFlags::NONBLOCK;
    let fd = rustix::net::socket_with(AddressFamily::UNIX, SocketType::STREAM, flags, None)?;
    let long = path.as_os_str().len() >= super::SUN_PATH;
    match (long, path.parent(), path.file_name()) {
        (true, Some(dir), Some(name)) => {
            let dir = super::open_dir(dir)?;
            let mut via = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
            via.push(name);
            rustix::net::connect(&fd, &SocketAddrUnix::new(via)?)?;
        }
        _ => rustix::net::connect(&fd, &SocketAddrUnix::new(path)?)?,
    }
    let s = UnixStream::from(fd);
    s.set_nonblocking(false)?;
    Ok(s)
}

/// A `/proc/net/unix` line's seven fields and its path: the rest of the line, which
/// may hold spaces (a temp root under `TMPDIR="/tmp/my dir"`).
fn unix_fields(line: &str) -> Option<([&str; 7], &str)> {
    let mut f = [""; 7];
    let mut rest = line;
    for field in &mut f {
        rest = rest.trim_start_matches(' ');
        let end = rest.find(' ').unwrap_or(rest.len());
        (*field, rest) = rest.split_at(end);
    }
    let path = rest.strip_prefix(' ')?;
    Some((f, path))
}

/// The effective uid of process `pid` (`/proc/PID/status`), `None` once it is gone.
fn euid_of(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let uids = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    uids.split_whitespace().nth(1)?.parse().ok()
}

/// The largest journal read (compaction keeps a live one far smaller).
const MAX_JOURNAL: u64 = 16 << 20;

/// The temp roots a journal, held open at `fd_path` (`/proc/PID/fd/N`) and found there
/// as `target`, names; none unless it is a regular file owned by `uid` and still the
/// file at `target`. Opened non-blocking (the fd may have been closed and reused for a
/// FIFO, or another file, since its link was read).
fn journal_roots(fd_path: &Path, target: &Path, uid: u32) -> Vec<PathBuf> {
    use rustix::fs::{Mode, OFlags};
    let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let Ok(fd) = rustix::fs::open(fd_path, flags, Mode::empty()) else {
        return Vec::new();
    };
    let file = std::fs::File::from(fd);
    let same = |md: &std::fs::Metadata| {
        std::fs::symlink_metadata(target).is_ok_and(|t| (t.dev(), t.ino()) == (md.dev(), md.ino()))
    };
    if !file
        .metadata()
        .is_ok_and(|md| md.is_file() && md.uid() == uid && same(&md))
    {
        return Vec::new();
    }
    let mut bytes = Vec::new();
    if file.take(MAX_JOURNAL).read_to_end(&mut bytes).is_err() {
        return Vec::new();
    }
    let (frames, _) = crate::sys::journal::frames(&bytes);
    frames
        .into_iter()
        .filter_map(
            |(_, payload)| match crate::journal::Record::decode(payload) {
                Some(crate::journal::Record::Root { path, .. }) => Some(path),
                _ => None,
            },
        )
        .collect()
}

fn is_socket_name(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.starts_with(PREFIX) && name.ends_with(SUFFIX)
}
