//! Process primitives: pidfds, process-group signals, waiting for an exit without
//! reaping, and the parent-death hook run between fork and exec.
//!
//! Nothing here reaps. The callers (`resource::process`) keep the child unreaped while
//! they signal its group, because a pid (and so a process-group id equal to it) can only
//! be reused once its process has been reaped.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};

use rustix::io::Errno;
use rustix::process::{Pid, PidfdFlags, Signal, WaitId, WaitIdOptions};

pub(crate) use rustix::process::Signal as Sig;

fn pid(raw: u32) -> io::Result<Pid> {
    i32::try_from(raw)
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| io::Error::from(Errno::INVAL))
}

/// Opens a pidfd for `raw`, or `None` where the kernel has none (before Linux 5.3, or
/// seccomp-filtered). Safe against reuse only while `raw` is an unreaped child of ours.
pub(crate) fn pidfd_open(raw: u32) -> io::Result<Option<OwnedFd>> {
    match rustix::process::pidfd_open(pid(raw)?, PidfdFlags::empty()) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::NOSYS | Errno::PERM) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Signals one process, through its pidfd when there is one. A process that is already
/// gone is not an error.
pub(crate) fn signal_process(
    pidfd: Option<BorrowedFd<'_>>,
    raw: u32,
    sig: Signal,
) -> io::Result<()> {
    let r = match pidfd {
        Some(fd) => rustix::process::pidfd_send_signal(fd, sig),
        None => rustix::process::kill_process(pid(raw)?, sig),
    };
    ignore_gone(r)
}

/// Signals every process of the group `pgid`. Only safe while the group's leader (the
/// process whose pid is `pgid`) is not reaped: until then no other group can take the id.
pub(crate) fn signal_group(pgid: u32, sig: Signal) -> io::Result<()> {
    ignore_gone(rustix::process::kill_process_group(pid(pgid)?, sig))
}

fn ignore_gone(r: rustix::io::Result<()>) -> io::Result<()> {
    match r {
        Ok(()) | Err(Errno::SRCH) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Whether the child has exited (is a zombie), *without* reaping it (`WNOWAIT`).
pub(crate) fn has_exited(pidfd: Option<BorrowedFd<'_>>, raw: u32) -> io::Result<bool> {
    let id = match pidfd {
        Some(fd) => WaitId::PidFd(fd),
        None => WaitId::Pid(pid(raw)?),
    };
    let opts = WaitIdOptions::EXITED | WaitIdOptions::NOWAIT | WaitIdOptions::NOHANG;
    Ok(rustix::process::waitid(id, opts)?.is_some())
}

/// The body of the `pre_exec` hook that asks for SIGKILL when the forking thread dies.
///
/// Runs in the forked child before exec: it only makes raw system calls (`prctl`,
/// `getppid`) and builds an `io::Error` from an errno, which does not allocate; all of
/// them are async-signal-safe. If the parent already died between fork and `prctl`, the
/// signal would never come, so the child refuses to exec.
pub(crate) fn death_signal_hook(parent: Pid) -> impl FnMut() -> io::Result<()> + Send + Sync {
    move || {
        rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
        if rustix::process::getppid() != Some(parent) {
            return Err(Errno::SRCH.into());
        }
        Ok(())
    }
}
