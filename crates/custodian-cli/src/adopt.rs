//! The runner as child subreaper: descendants of CMD that left its process group
//! (`setsid`, double fork) are re-parented to the runner when their parent dies. Each is
//! reaped as it exits ([`reap_exited`], on every SIGCHLD, as tini does: a long-lived
//! entrypoint must not fill the pid table with zombies), and those still running once
//! CMD has ended are stopped and reaped ([`reap_adopted`]): SIGTERM, up to the grace,
//! SIGKILL, reap.
//!
//! Why every child but CMD and the watcher is the runner's to reap: the runner spawns
//! no other child (the library forks one, the watcher of `--state-dir`, which it reaps
//! itself by its pidfd: left alone here by pid), and a subreaper is only given its own
//! descendants.
//! As a pid namespace's PID 1 it is also given orphans of processes that entered the
//! namespace from outside (`docker exec`, `nsenter`); reaping their zombies is what an
//! init must do, and once PID 1 exits the kernel kills the whole namespace anyway.
//!
//! Safety of the signals and waits: every pid acted on is a child of this process that
//! it has not reaped yet, so the kernel cannot reuse it. CMD's leader is never waited
//! for here while it runs: a `waitid(P_ALL, WNOWAIT)` only peeks at which child exited,
//! and each is reaped by its pid; once CMD has been reaped by custodian, [`reap_adopted`]
//! may take every child. Nothing here reaps with `waitpid(-1)`.
//! Why not the library's opt-in (`Builder::child_subreaper`): it must prove a child was
//! adopted from one of its managed children (other code in a library's process may wait
//! for its own children), so an escapee that cleared its environment and left its group
//! is not its to reap. The runner has no such other code.
//! What is not covered: a descendant still attached to a live parent outside the group
//! is not a child of the runner and is not found; one that escapes while CMD runs gets
//! its SIGTERM only after CMD ended, not with the forwarded signal.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, WaitOptions};

/// Makes this process the subreaper of its descendants.
pub(crate) fn become_subreaper() -> std::io::Result<()> {
    rustix::process::set_child_subreaper(Some(rustix::process::getpid()))?;
    Ok(())
}

/// Reaps every child of this process that has exited, except `cmd` (CMD's leader, whose
/// wait is custodian's) and `watcher` (the supervisor's watcher, which it reaps itself).
/// Returns how many were reaped.
///
/// Each exited child is found by a peek (`waitid(P_ALL, WNOWAIT)`: it reaps nothing) and
/// reaped by its pid, O(1) each, as tini's `waitpid(-1)` loop but never CMD. When the
/// peek shows CMD (exited, not yet reaped by custodian), the others are found through
/// the kernel's lists of this process's children instead.
pub(crate) fn reap_exited(cmd: Option<u32>, watcher: Option<u32>) -> usize {
    use nix::sys::wait::{Id, WaitPidFlag, waitid};
    let peek = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    let mut reaped = 0;
    loop {
        let Ok(status) = waitid(Id::All, peek) else {
            // ECHILD: no child at all.
            return reaped;
        };
        let Some(pid) = status.pid().and_then(|p| u32::try_from(p.as_raw()).ok()) else {
            // None has exited.
            return reaped;
        };
        if Some(pid) == cmd || Some(pid) == watcher {
            break;
        }
        if reap(pid) {
            reaped += 1;
        } else {
            // Not reapable after all (reaped by someone else meanwhile): the lists decide.
            break;
        }
    }
    for (pid, state) in crate::os::own_children() {
        if Some(pid) != cmd && Some(pid) != watcher && state == 'Z' && reap(pid) {
            reaped += 1;
        }
    }
    reaped
}

/// Reaps `pid`, an unreaped child of ours other than CMD: adopted (see the header).
fn reap(pid: u32) -> bool {
    let p = i32::try_from(pid).ok().and_then(Pid::from_raw);
    p.is_some_and(|p| {
        matches!(
            rustix::process::waitpid(Some(p), WaitOptions::NOHANG),
            Ok(Some(_))
        )
    })
}

/// Stops and reaps every child this process has now but `watcher` (the supervisor's,
/// which must outlive this), and those that become its children while it does (an
/// adopted daemon's own children). Returns how many were adopted.
/// Bounded: gives up `grace` + 5 s after it started (what a SIGKILL cannot stop, a
/// process stuck in the kernel, is then left to the init process).
pub(crate) fn reap_adopted(grace: Duration, watcher: Option<u32>) -> usize {
    let start = Instant::now();
    let give_up = start.checked_add(grace.saturating_add(Duration::from_secs(5)));
    let mut seen = HashSet::new();
    loop {
        let mut kids = crate::os::own_children();
        kids.retain(|&(pid, _)| Some(pid) != watcher);
        if kids.is_empty() {
            break;
        }
        let past_grace = start.elapsed() >= grace;
        for (pid, _) in kids {
            let Some(p) = Pid::from_raw(pid as i32) else {
                continue;
            };
            // Unreaped child: the pid is still ours (see the header).
            if seen.insert(pid) {
                let _ = rustix::process::kill_process(p, Signal::TERM);
            } else if past_grace {
                let _ = rustix::process::kill_process(p, Signal::KILL);
            }
            let _ = rustix::process::waitpid(Some(p), WaitOptions::NOHANG);
        }
        if give_up.is_some_and(|g| Instant::now() >= g) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    seen.len()
}
