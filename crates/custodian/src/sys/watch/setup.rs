//! Setting up the forked watcher (see the parent module's header for the invariants):
//! its signal dispositions, its fds, its exit.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use rustix::io::Errno;

use super::dup;

pub(super) fn exit(code: i32) -> ! {
    // SAFETY: `_exit` ends the process without running anything of the owner's (no
    // destructor, no `atexit` handler, no stdio flush): always sound.
    #[allow(unsafe_code)]
    unsafe {
        libc::_exit(code)
    }
}

/// Every signal to its default action, the owner's group and terminal signals ignored,
/// none blocked.
pub(super) fn reset_signals() {
    // SAFETY: `sigaction` and `pthread_sigmask` with zeroed, then filled-in, plain-data
    // structs are async-signal-safe and sound; errors (SIGKILL, SIGSTOP, the two
    // signals glibc reserves) are ignored on purpose.
    #[allow(unsafe_code)]
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        libc::sigemptyset(&mut sa.sa_mask);
        sa.sa_sigaction = libc::SIG_DFL;
        for sig in 1..=64 {
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
        sa.sa_sigaction = libc::SIG_IGN;
        for sig in [
            libc::SIGHUP,
            libc::SIGINT,
            libc::SIGQUIT,
            libc::SIGTERM,
            libc::SIGPIPE,
            libc::SIGTSTP,
            libc::SIGTTIN,
            libc::SIGTTOU,
        ] {
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::pthread_sigmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
    }
}

/// Closes every fd but `owner` and `sock` (moved above 2 first), then puts
/// `/dev/null` on 0, 1 and 2.
pub(super) fn keep_only(owner: OwnedFd, sock: OwnedFd) -> io::Result<(OwnedFd, OwnedFd)> {
    let owner = {
        let moved = dup(owner.as_fd())?;
        drop(owner);
        moved
    };
    let sock = {
        let moved = dup(sock.as_fd())?;
        drop(sock);
        moved
    };
    let (a, b) = (owner.as_raw_fd(), sock.as_raw_fd());
    let (lo, hi) = (a.min(b) as u32, a.max(b) as u32);
    close_range(0, lo - 1)?;
    if hi > lo + 1 {
        close_range(lo + 1, hi - 1)?;
    }
    close_range(hi + 1, u32::MAX)?;
    for want in 0..3 {
        let fd = rustix::fs::open(
            "/dev/null",
            rustix::fs::OFlags::RDWR,
            rustix::fs::Mode::empty(),
        )?;
        // The lowest free numbers: 0, 1, 2 in turn. Kept open for the process's life.
        if fd.as_raw_fd() != want {
            return Err(io::Error::from(Errno::BADF));
        }
        std::mem::forget(fd);
    }
    Ok((owner, sock))
}

/// `close_range(first, last, 0)` (Linux 5.9); before it, one `close` per fd up to the
/// soft `RLIMIT_NOFILE` (at most 2^20).
fn close_range(first: u32, last: u32) -> io::Result<()> {
    // SAFETY: `close_range` takes plain integers; closing fds the child will never use
    // again (it only uses the two it kept) is sound.
    #[allow(unsafe_code)]
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            libc::c_uint::from(first),
            libc::c_uint::from(last),
            0 as libc::c_uint,
        )
    };
    if r == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() != Some(libc::ENOSYS) {
        return Err(err);
    }
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(1 << 20)
        .min(1 << 20);
    let end = u64::from(last).min(limit.saturating_sub(1));
    for fd in u64::from(first)..=end {
        // SAFETY: as above; a number that is not open fails with EBADF, ignored.
        #[allow(unsafe_code)]
        unsafe {
            libc::close(fd as libc::c_int);
        }
    }
    Ok(())
}
