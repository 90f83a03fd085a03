//! CMD's process group as a job of the runner: signalled as a whole, given the terminal
//! while it runs in the runner's foreground, and stopped with the runner (`tty.rs`).

use std::os::fd::{AsFd, OwnedFd};

use rustix::process::{Pid, Signal, WaitId, WaitIdOptions};

use crate::tty::Terminal;

/// CMD's process group as a job: signalled as a whole, given the terminal while it runs.
pub(crate) struct Job<'t> {
    terminal: Option<&'t Terminal>,
    group: Option<Pid>,
    /// CMD's leader, to learn that it was stopped without racing its reaping.
    pidfd: Option<OwnedFd>,
}

impl<'t> Job<'t> {
    pub(crate) fn new(
        terminal: Option<&'t Terminal>,
        child: &tokio_custodian::ManagedChild,
    ) -> Self {
        let group = Pid::from_raw(child.process_group() as i32);
        // The leader is unreaped (its wait has not been polled): the pid is its own.
        let pidfd = child
            .id()
            .and_then(|p| Pid::from_raw(p as i32))
            .and_then(|p| {
                rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok()
            });
        let job = Job {
            terminal,
            group,
            pidfd,
        };
        job.to_front();
        job
    }

    /// Gives CMD's group the terminal if the runner's group holds it.
    fn to_front(&self) {
        if let (Some(t), Some(g)) = (self.terminal, self.group)
            && t.runner_in_front()
        {
            let _ = t.give(g.as_raw_nonzero().get());
        }
    }

    /// Signals the group. Only while the leader is unreaped (see the header).
    pub(crate) fn signal(&self, sig: Signal) {
        if let Some(g) = self.group {
            let _ = rustix::process::kill_process_group(g, sig);
        }
    }

    /// A child changed state: if CMD's leader was stopped, hand the terminal back (or
    /// give it, if it was stopped reading the terminal before it had it).
    pub(crate) fn changed(&self) {
        let (Some(t), Some(fd), Some(g)) = (self.terminal, &self.pidfd, self.group) else {
            return;
        };
        let opts = WaitIdOptions::STOPPED | WaitIdOptions::NOHANG;
        let Ok(Some(st)) = rustix::process::waitid(WaitId::PidFd(fd.as_fd()), opts) else {
            return;
        };
        let ttin = [Signal::TTIN, Signal::TTOU].map(|s| Some(s.as_raw()));
        let group = g.as_raw_nonzero().get();
        if ttin.contains(&st.stopping_signal()) && (t.runner_in_front() || t.in_front(group)) {
            // Read the terminal before it was handed over: it has it now.
            let _ = t.give(group);
            self.signal(Signal::CONT);
        } else if st.stopped() && rustix::process::getpid() != Pid::INIT {
            // Ctrl-Z: the job stops as a whole, so that the shell sees it stopped and
            // can `fg` it; the runner's SIGCONT then comes back through `continued`.
            // Not as a namespace's PID 1: the kernel ignores its SIGSTOP to itself, and
            // there is no shell to `fg` it (tini leaves CMD stopped too).
            t.take_back_from(group);
            // SIGTSTP, not SIGSTOP: the kernel discards it when the runner's group is
            // orphaned (no job-control shell could continue it: the runner leads its
            // terminal's session), where SIGSTOP would hang the terminal for good. To
            // this thread, so that it has stopped (or been discarded) when `raise`
            // returns.
            let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGTSTP);
            // Continued, or never stopped: a terminal stop CMD got as it would have
            // been ignored had it been the runner's, so it goes on in front.
            let tty_stops = [Signal::TSTP, Signal::TTIN, Signal::TTOU].map(|s| Some(s.as_raw()));
            if tty_stops.contains(&st.stopping_signal()) {
                self.to_front();
                self.signal(Signal::CONT);
            }
        }
    }

    /// The runner was continued: in the foreground, CMD gets the terminal back.
    pub(crate) fn continued(&self) {
        self.to_front();
    }
}

impl Drop for Job<'_> {
    /// CMD's leader ended (or its wait failed): the runner's group gets the terminal
    /// back if CMD's holds it.
    fn drop(&mut self) {
        if let (Some(t), Some(g)) = (self.terminal, self.group) {
            t.take_back_from(g.as_raw_nonzero().get());
        }
    }
}
