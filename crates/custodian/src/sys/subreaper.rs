//! Child-subreaper primitives: `PR_SET_CHILD_SUBREAPER` held by a count (the setting is
//! process-wide, and several supervisors may ask for it), and reaping *one* pid. What
//! `/proc` says of this process's children (and their environment) is `procfs`'s.
//!
//! Nothing here decides what may be reaped: `reaper` (one layer up) proves that a child
//! was adopted before it calls [`reap`], by pid. Nothing here calls `waitpid(-1)`.

use std::io;
use std::sync::{Mutex, PoisonError};

use rustix::io::Errno;
use rustix::process::{Pid, WaitOptions};

/// How many holders want the setting on, and whether it was on before the first.
static HOLDERS: Mutex<(usize, bool)> = Mutex::new((0, false));

/// This process is a child subreaper while at least one hold lives; the last one dropped
/// turns the setting off again, unless it was on before the first hold.
#[derive(Debug)]
pub(crate) struct SubreaperHold(());

/// Makes this process a child subreaper (`PR_SET_CHILD_SUBREAPER`) for as long as the
/// hold lives.
pub(crate) fn hold() -> io::Result<SubreaperHold> {
    let mut h = HOLDERS.lock().unwrap_or_else(PoisonError::into_inner);
    if h.0 == 0 {
        let was_on = rustix::process::child_subreaper()?.is_some();
        if !was_on {
            rustix::process::set_child_subreaper(Some(rustix::process::getpid()))?;
        }
        h.1 = was_on;
    }
    h.0 += 1;
    Ok(SubreaperHold(()))
}

impl Drop for SubreaperHold {
    fn drop(&mut self) {
        let mut h = HOLDERS.lock().unwrap_or_else(PoisonError::into_inner);
        h.0 = h.0.saturating_sub(1);
        if h.0 == 0 && !h.1 {
            // Orphans whose parent dies from now on go to init again. Those already
            // adopted stay this process's children.
            let _ = rustix::process::set_child_subreaper(None);
        }
    }
}

/// Reaps `pid` if it has exited: `Ok(true)` reaped, `Ok(false)` still running. Only for
/// a pid proven to be an unreaped child nobody else waits for; `ECHILD` (not our child,
/// or already reaped) is an error.
pub(crate) fn reap(pid: u32) -> io::Result<bool> {
    let p = i32::try_from(pid)
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| io::Error::from(Errno::INVAL))?;
    Ok(rustix::process::waitpid(Some(p), WaitOptions::NOHANG)?.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_exited_child_of_ours_is_reaped() {
        let mut child = std::process::Command::new("sleep")
            .arg("1000")
            .spawn()
            .unwrap();
        assert!(!reap(child.id()).unwrap(), "still running");
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(reap(child.id()).is_err(), "ECHILD once reaped");
    }
}
