//! Process primitives: pidfds, process-group signals, waiting for an exit without
//! reaping, and the parent-death hook run between fork and exec.
//!
//! Nothing here reaps. The callers (`resource::process`) keep the child unreaped while
//! they signal its group, because a pid (and so a process-group id equal to it) can only
//! be reused once its process has been reaped.
//!
//! Kernel differences handled here: no pidfd (before Linux 5.3: signals go by pid), and
//! no `waitid(P_PIDFD)` (Linux 5.3: it fails with `EINVAL`; the pid is used instead,
//! which is as safe for an unreaped child of ours).

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::io::Errno;
use rustix::process::{Pid, PidfdFlags, Signal, WaitId, WaitIdOptions};

use super::procfs::{open_proc, pids_in, stat_in};

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

/// The inode of a pidfd on `pidfs` (Linux 6.9+): one per process for the whole boot, an
/// identity stronger than pid and start time (two processes can share a pid and a
/// start-time tick). `None` before `pidfs` (every pidfd then shares one anonymous
/// inode, which identifies nothing).
pub(crate) fn pidfd_inode(fd: BorrowedFd<'_>) -> Option<u64> {
    const PIDFS_MAGIC: i128 = 0x5049_4446;
    let fs = rustix::fs::fstatfs(fd).ok()?;
    if i128::from(fs.f_type) != PIDFS_MAGIC {
        return None;
    }
    Some(rustix::fs::fstat(fd).ok()?.st_ino)
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

/// Set once `waitid(P_PIDFD)` has failed with `EINVAL` (Linux 5.3 has pidfds but not
/// `P_PIDFD`, which came in 5.4), so that later calls go straight to `P_PID`.
static NO_P_PIDFD: AtomicBool = AtomicBool::new(false);

#[cfg(test)]
thread_local! {
    /// Test switch: on this thread, `waitid(P_PIDFD)` fails with `EINVAL` as on Linux 5.3,
    /// without touching the process-wide [`NO_P_PIDFD`].
    pub(crate) static SIMULATE_LINUX_5_3: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

#[cfg(test)]
fn simulate_linux_5_3() -> bool {
    SIMULATE_LINUX_5_3.get()
}

#[cfg(not(test))]
fn simulate_linux_5_3() -> bool {
    false
}

/// Whether the child has exited (is a zombie), *without* reaping it (`WNOWAIT`).
///
/// Through the pidfd where the kernel takes one (`P_PIDFD`), else through the pid
/// (`P_PID`): the same answer for an unreaped child of ours, whose pid cannot be reused.
/// `ECHILD` (the child was reaped by someone else) is an error: its ids may be reused.
pub(crate) fn has_exited(pidfd: Option<BorrowedFd<'_>>, raw: u32) -> io::Result<bool> {
    let opts = WaitIdOptions::EXITED | WaitIdOptions::NOWAIT | WaitIdOptions::NOHANG;
    // Relaxed: a cache of a kernel property; a stale read costs one extra `EINVAL`.
    if let Some(fd) = pidfd
        && !NO_P_PIDFD.load(Ordering::Relaxed)
    {
        let simulated = simulate_linux_5_3();
        let r = if simulated {
            Err(Errno::INVAL)
        } else {
            rustix::process::waitid(WaitId::PidFd(fd), opts)
        };
        match r {
            // The options are fixed and valid: EINVAL means the kernel has no P_PIDFD.
            Err(Errno::INVAL) => {
                if !simulated {
                    NO_P_PIDFD.store(true, Ordering::Relaxed);
                }
                tracing::debug!("waitid(P_PIDFD) unsupported (Linux < 5.4): using P_PID");
            }
            r => return Ok(r?.is_some()),
        }
    }
    Ok(rustix::process::waitid(WaitId::Pid(pid(raw)?), opts)?.is_some())
}

/// Finds running members of one process group, for a leader that has exited (a zombie)
/// while its group may live on. `kill(-pgid, 0)` cannot tell: it succeeds as long as the
/// zombie leader is unreaped, which is exactly when custodian asks. So `/proc` is read
/// (through `procfs`, one `open` and one `read` per process):
/// first the members found last time (one `stat` each while any of them runs), then,
/// once none does, every process (a member may have forked a new one meanwhile).
///
/// Only meaningful while the leader is unreaped (until then no other group can take the
/// id, so a pid found in the group now is a member, whoever had it before). Blocking:
/// one full scan costs a few hundred microseconds to milliseconds, with the number of
/// processes.
#[derive(Debug)]
pub(crate) struct GroupScan {
    pgid: u32,
    members: Vec<u32>,
}

impl GroupScan {
    pub(crate) fn new(pgid: u32) -> Self {
        GroupScan {
            pgid,
            members: Vec::new(),
        }
    }

    /// The group's id.
    pub(crate) fn pgid(&self) -> u32 {
        self.pgid
    }

    /// Whether a running member was found last time.
    pub(crate) fn knows_members(&self) -> bool {
        !self.members.is_empty()
    }

    /// Takes the running members that a pass over `/proc` found (see [`running_members`]).
    pub(crate) fn set_members(&mut self, members: Vec<u32>) {
        self.members = members;
    }

    /// Whether a member found last time still runs (one `stat` each). Clears the list
    /// once none does: the next look must be a full pass.
    ///
    /// # Errors
    ///
    /// `/proc` cannot be opened.
    pub(crate) fn known_member_running(&mut self) -> io::Result<bool> {
        if self.members.is_empty() {
            return Ok(false);
        }
        let proc = open_proc()?;
        let pgid = self.pgid;
        let running = self
            .members
            .iter()
            .any(|p| running_group(proc.as_fd(), p.to_string().as_bytes()) == Some(pgid));
        if !running {
            self.members.clear();
        }
        Ok(running)
    }

    /// Whether any process of the group still runs (zombies do not count): the members
    /// found last time, else a full pass. Processes that vanish during the scan are
    /// skipped.
    ///
    /// # Errors
    ///
    /// `/proc` cannot be opened or listed.
    #[cfg(test)]
    pub(crate) fn any_running(&mut self) -> io::Result<bool> {
        if self.known_member_running()? {
            return Ok(true);
        }
        self.members = running_members(&[self.pgid], |_| false)?
            .remove(&self.pgid)
            .unwrap_or_default();
        Ok(!self.members.is_empty())
    }
}

/// One pass over `/proc` for several groups at once: the running (not zombie) members
/// of each of `pgids` that has any. Many children released together (a scope's end, a
/// shutdown) share one pass instead of one each: a pass reads every process's `stat`,
/// which is what costs, whatever the number of groups asked for. The pids `skip` says
/// are not read: the caller has proved them zombies (see `resource::process`'s census).
///
/// # Errors
///
/// `/proc` cannot be opened or listed.
pub(crate) fn running_members(
    pgids: &[u32],
    skip: impl Fn(u32) -> bool,
) -> io::Result<std::collections::HashMap<u32, Vec<u32>>> {
    let proc = open_proc()?;
    let mut found = std::collections::HashMap::<u32, Vec<u32>>::new();
    for name in pids_in(proc.as_fd())? {
        let Some(p) = std::str::from_utf8(&name).ok().and_then(|n| n.parse().ok()) else {
            continue;
        };
        if !skip(p)
            && let Some(pgrp) = running_group(proc.as_fd(), &name).filter(|g| pgids.contains(g))
        {
            found.entry(pgrp).or_default().push(p);
        }
    }
    Ok(found)
}

/// The group of process `pid` (decimal digits) if it runs (is not a zombie).
fn running_group(proc: BorrowedFd<'_>, pid: &[u8]) -> Option<u32> {
    stat_in(proc, pid).filter(|st| !st.zombie).map(|st| st.pgid)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::os::unix::process::CommandExt;
    use std::time::{Duration, Instant};

    fn sleeper() -> std::process::Child {
        std::process::Command::new("sleep")
            .arg("1000")
            .process_group(0)
            .spawn()
            .unwrap()
    }

    /// Polls `f` until it returns true, for up to 10 s.
    fn poll(what: &str, mut f: impl FnMut() -> bool) {
        let until = Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(Instant::now() < until, "never happened: {what}");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    #[test]
    fn has_exited_falls_back_to_p_pid_where_waitid_has_no_p_pidfd() {
        SIMULATE_LINUX_5_3.set(true);
        let mut child = sleeper();
        let pid = child.id();
        let fd = pidfd_open(pid).unwrap().expect("pidfd");
        assert!(!has_exited(Some(fd.as_fd()), pid).unwrap());
        signal_process(Some(fd.as_fd()), pid, Sig::KILL).unwrap();
        poll("exit seen through P_PID", || {
            has_exited(Some(fd.as_fd()), pid).unwrap()
        });
        // Observed without reaping: the child is still ours to reap.
        assert!(child.try_wait().unwrap().is_some());
        // Reaped: the pid may be reused now, and `waitid` says so (ECHILD).
        let err = has_exited(Some(fd.as_fd()), pid).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(Errno::CHILD.raw_os_error()));
        SIMULATE_LINUX_5_3.set(false);
        // The simulation did not switch the real kernel path off for everyone.
        assert!(!NO_P_PIDFD.load(Ordering::Relaxed));
    }

    #[test]
    fn a_group_with_only_its_zombie_leader_has_no_running_member() {
        let mut child = sleeper();
        let pid = child.id();
        let mut scan = GroupScan::new(pid);
        assert!(scan.any_running().unwrap());
        assert_eq!(scan.members, [pid]);
        assert!(scan.any_running().unwrap(), "from the members found before");
        signal_group(pid, Sig::KILL).unwrap();
        poll("the leader is a zombie", || has_exited(None, pid).unwrap());
        // `kill(-pgid, 0)` still finds the zombie leader; the scan does not count it.
        assert!(rustix::process::test_kill_process_group(super::pid(pid).unwrap()).is_ok());
        assert!(!scan.any_running().unwrap());
        assert!(scan.members.is_empty());
        child.wait().unwrap();
    }
}
