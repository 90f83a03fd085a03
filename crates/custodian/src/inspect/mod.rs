//! The inspect server (layer 7, opt-in with `Builder::inspect`): a unix socket that
//! answers one read-only [`Inspection`] per connection, for `custodian inspect`.
//!
//! Bounds, so that a slow or hostile client cannot hurt the supervisor:
//! - the socket is created mode 0600 (never chmodded by path) in a 0700 directory
//!   (the temp root), and each peer's `SO_PEERCRED` uid must be the owner's or root's;
//! - nothing is read from a client: the server writes one snapshot and closes;
//! - at most [`MAX_CONNECTIONS`] connections are served at once; one more is closed at
//!   accept (its fd is released at once), so stalled clients hold at most that many fds;
//! - each answer has [`IO_TIMEOUT`] to be written, then the connection is dropped;
//! - a snapshot lists at most 10,000 resources (a few MiB at most);
//! - the server holds a `Weak` to the supervisor and touches nothing on the hot path:
//!   idle, it is one task parked in `accept`. A snapshot reads the registry's shards one
//!   at a time (as `Supervisor::live`), on the blocking pool.
//!
//! The server ends when the supervisor has shut down (or is dropped): the listener is
//! closed and the socket's name removed if it is still the one bound.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;

use crate::inner::Inner;

mod client;
mod snapshot;
mod table;
mod tree;

pub use client::{inspect, sockets_in, sockets_of};
pub use snapshot::{InspectedChild, InspectedResource, Inspection};
pub use tree::InspectedScope;

/// Connections served at once; more are closed at accept.
pub(crate) const MAX_CONNECTIONS: usize = 8;
/// How long one answer may take to be written.
pub(crate) const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// The socket names' prefix and suffix (`inspect-<12 hex>.sock`).
pub(crate) const PREFIX: &str = "inspect-";
pub(crate) const SUFFIX: &str = ".sock";

/// Whether `name` has an inspect socket's shape (`inspect-<12 hex>.sock`), as `serve`
/// names it; recovery's age sweep removes a dead owner's by it.
pub(crate) fn is_socket_name(name: &std::ffi::OsStr) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let hex = name
        .as_bytes()
        .strip_prefix(PREFIX.as_bytes())
        .and_then(|r| r.strip_suffix(SUFFIX.as_bytes()));
    hex.is_some_and(|h| h.len() == 12 && h.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

/// Binds the socket in `dir` and starts serving. Runs in the supervisor's runtime.
pub(crate) fn serve(inner: &Arc<Inner>, dir: &Path) -> io::Result<PathBuf> {
    let _rt = inner.handle.enter();
    let name = format!("{PREFIX}{}{SUFFIX}", crate::sys::create::random_hex(6)?);
    let path = dir.join(&name);
    // A socket's address holds at most 107 bytes: a longer path is bound through an fd
    // of its dir (`/proc/self/fd/N/name`), kept open while the server runs so that
    // `sockets_of` can name it as `/proc/PID/fd/N/name`.
    let (via, dir_fd) = if path.as_os_str().len() < SUN_PATH {
        (path.clone(), None)
    } else {
        let fd = open_dir(dir)?;
        (
            PathBuf::from(format!("/proc/self/fd/{}/{name}", fd.as_raw_fd())),
            Some(fd),
        )
    };
    let listener = bind_0600(&via)?;
    // Never a chmod by path: had the root been swapped for another user's dir (a
    // writable, non-sticky temp base), a symlink planted at the name would be followed.
    // What is at the name now must be a socket to be recorded (and removed at the end).
    let bound =
        std::fs::symlink_metadata(&path).and_then(|md| match md.file_type().is_socket() {
            true => Ok((md.dev(), md.ino())),
            false => Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} is not the socket just bound", path.display()),
            )),
        })?;
    let server = Server {
        inner: Arc::downgrade(inner),
        path: path.clone(),
        bound,
        started: Instant::now(),
        owner: rustix::process::geteuid().as_raw(),
        _dir_fd: dir_fd,
    };
    inner.handle.spawn(server.run(listener, inner.done.clone()));
    Ok(path)
}

struct Server {
    inner: Weak<Inner>,
    path: PathBuf,
    bound: (u64, u64),
    started: Instant,
    owner: u32,
    /// The dir's fd a long path was bound through (see `serve`).
    _dir_fd: Option<OwnedFd>,
}

/// The room in a unix socket address for a path (108 bytes with its NUL).
pub(crate) const SUN_PATH: usize = 108;

/// A listening socket bound at `addr`, created mode 0600: Linux gives the socket's file
/// the mode of the socket's own inode (less the umask), set here before `bind`.
fn bind_0600(addr: &Path) -> io::Result<UnixListener> {
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
    let flags = SocketFlags::CLOEXEC | SocketFlags::NONBLOCK;
    let fd = rustix::net::socket_with(AddressFamily::UNIX, SocketType::STREAM, flags, None)?;
    rustix::fs::fchmod(&fd, rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR)?;
    rustix::net::bind(&fd, &SocketAddrUnix::new(addr)?)?;
    rustix::net::listen(&fd, 1024)?;
    UnixListener::from_std(std::os::unix::net::UnixListener::from(fd))
}

/// An `O_PATH` fd of a directory, to reach names in it by a short path.
pub(crate) fn open_dir(dir: &Path) -> io::Result<OwnedFd> {
    use rustix::fs::{Mode, OFlags};
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
    Ok(rustix::fs::open(dir, flags, Mode::empty())?)
}

impl Server {
    async fn run(self, listener: UnixListener, done: tokio_util::sync::CancellationToken) {
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let me = Arc::new(self);
        loop {
            let accepted = tokio::select! {
                biased;
                () = done.cancelled() => break,
                r = listener.accept() => r,
            };
            match accepted {
                Ok((stream, _)) => {
                    // Busy: closed now, never queued (its fd is released at once).
                    let Ok(slot) = slots.clone().try_acquire_owned() else {
                        continue;
                    };
                    let me = me.clone();
                    tokio::spawn(async move {
                        let _slot = slot;
                        let _ = tokio::time::timeout(IO_TIMEOUT, me.answer(stream)).await;
                    });
                }
                // Out of fds or memory: do not spin; the client retries.
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
            if me.inner.strong_count() == 0 {
                break;
            }
        }
        drop(listener);
        // Only the name this server bound (a later server may have bound the same dir).
        if std::fs::symlink_metadata(&me.path).is_ok_and(|md| (md.dev(), md.ino()) == me.bound) {
            let _ = std::fs::remove_file(&me.path);
        }
    }

    async fn answer(&self, mut stream: UnixStream) -> io::Result<()> {
        let uid = stream.peer_cred()?.uid();
        if uid != self.owner && uid != 0 {
            tracing::warn!(uid, "inspect: refused a client of another user");
            let msg = format!(
                "{{\"error\":\"refused: uid {uid} is neither the owner ({}) nor root\"}}\n",
                self.owner
            );
            return stream.write_all(msg.as_bytes()).await;
        }
        let Some(inner) = self.inner.upgrade() else {
            return Ok(());
        };
        let (path, uptime) = (self.path.clone(), self.started.elapsed());
        let json = tokio::task::spawn_blocking(move || {
            let snap = Inspection::of(&inner, path, uptime);
            drop(inner);
            serde_json::to_vec(&snap)
        })
        .await
        .map_err(io::Error::other)?
        .map_err(io::Error::other)?;
        stream.write_all(&json).await?;
        stream.shutdown().await
    }
}
