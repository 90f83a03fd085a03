//! systemd's notify protocol (`sd_notify`), opt-in with `Builder::systemd_notify`, spoken
//! only when `NOTIFY_SOCKET` is set: `READY=1` once `start` has succeeded, `STOPPING=1`
//! when the drain (or, without one, shutdown) begins, and `EXTEND_TIMEOUT_USEC` every
//! second while shutdown runs, so that a unit's `TimeoutStopSec` does not SIGKILL a
//! service that is shutting down within its promised bound.
//!
//! Each extension asks for the time left until the builder's grace runs out (the total
//! bound of a graceful shutdown) plus [`MARGIN`], the most shutdown takes after it (the
//! sweep and the clean-ups' wait once cut, about 1.25 s). Messages are datagrams on an
//! unbound `AF_UNIX` socket, to a path or (`@name`) an abstract address. A message that
//! cannot be sent is logged and dropped: the service manager's own timeouts still hold.
//!
//! The task holds tokens, not the supervisor: it never keeps it alive.

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::Arc;
use std::time::Duration;

use crate::inner::Inner;

/// Added to the time left of the grace in each extension.
pub(crate) const MARGIN: Duration = Duration::from_secs(3);
/// How often an extension is sent while shutdown runs.
const EVERY: Duration = Duration::from_secs(1);

/// Where `NOTIFY_SOCKET` points.
#[derive(Debug)]
pub(crate) struct Notifier {
    sock: UnixDatagram,
    addr: SocketAddr,
}

impl Notifier {
    /// The notifier `NOTIFY_SOCKET` names, or `None` when it is not set.
    ///
    /// # Errors
    ///
    /// A value that is neither an absolute path nor `@name`, or no socket to be had.
    pub(crate) fn from_env() -> io::Result<Option<Self>> {
        let Some(value) = std::env::var_os("NOTIFY_SOCKET") else {
            return Ok(None);
        };
        let bytes = std::os::unix::ffi::OsStrExt::as_bytes(value.as_os_str());
        let addr = match bytes.split_first() {
            Some((b'@', name)) => {
                <SocketAddr as std::os::linux::net::SocketAddrExt>::from_abstract_name(name)?
            }
            Some((b'/', _)) => SocketAddr::from_pathname(&value)?,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "NOTIFY_SOCKET is neither an absolute path nor @name",
                ));
            }
        };
        Ok(Some(Notifier {
            sock: UnixDatagram::unbound()?,
            addr,
        }))
    }

    /// Sends one message (non-blocking: a full queue drops it).
    pub(crate) fn send(&self, msg: &str) {
        let _ = self.sock.set_nonblocking(true);
        if let Err(e) = self.sock.send_to_addr(msg.as_bytes(), &self.addr) {
            tracing::warn!(error = %e, msg, "sd_notify: not sent");
        }
    }
}

/// `READY=1` now, then a task that says `STOPPING=1` and extends the stop timeout while
/// shutdown runs. Must be called inside a runtime.
pub(crate) fn drive(inner: &Arc<Inner>, notifier: Notifier) {
    notifier.send("READY=1");
    let begun = inner.drain.begun.clone();
    let done = inner.done.clone();
    let grace = inner.config.grace;
    inner.handle.spawn(async move {
        tokio::select! {
            () = begun.cancelled() => {}
            () = done.cancelled() => return,
        }
        let end = crate::shutdown::saturating_deadline(grace);
        notifier.send("STOPPING=1");
        loop {
            let left = end
                .saturating_duration_since(tokio::time::Instant::now())
                .saturating_add(MARGIN);
            notifier.send(&format!("EXTEND_TIMEOUT_USEC={}", left.as_micros()));
            tokio::select! {
                () = done.cancelled() => return,
                () = tokio::time::sleep(EVERY) => {}
            }
        }
    });
}
