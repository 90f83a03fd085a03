//! The terminal on standard input, handed to CMD's process group as a shell hands it to
//! a job: CMD runs in a group of its own, and a group that is not the terminal's
//! foreground group is stopped (SIGTTIN) when it reads it.
//!
//! The runner gives the terminal to CMD's group only if its own group holds it (it was
//! started in the foreground of an interactive shell), and takes it back when CMD exits
//! or is stopped (Ctrl-Z): it then stops itself, so that the shell sees the job stopped,
//! and gives the terminal to CMD again when continued in the foreground (`fg`). With no
//! shell to `fg` it (the runner leads the terminal's session: `ssh -t`, `docker exec
//! -it`), the kernel ignores the runner's SIGTSTP, and CMD goes on in front. When
//! the runner is not in the foreground (a background job, a pipeline's non-first part
//! run by a shell without job control, a service without a terminal), nothing changes
//! hands, and CMD behaves as the runner itself would.
//!
//! `tcsetpgrp` from a background group sends SIGTTOU to the caller, so SIGTTOU is
//! blocked in the calling thread around it, as shells do; the runner's handler for
//! SIGCONT (`signals.rs`) does not interfere.

use std::io::IsTerminal;
use std::os::fd::AsFd;

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::unistd::Pid;

/// The terminal on standard input and the runner's own process group.
#[derive(Debug)]
pub(crate) struct Terminal {
    runner: Pid,
}

impl Terminal {
    /// The terminal on standard input, or `None` if standard input is not a terminal.
    pub(crate) fn on_stdin() -> Option<Self> {
        let tty = std::io::stdin().is_terminal();
        tty.then(|| Terminal {
            runner: nix::unistd::getpgrp(),
        })
    }

    /// The terminal's foreground process group now.
    fn foreground(&self) -> Option<Pid> {
        nix::unistd::tcgetpgrp(std::io::stdin().as_fd()).ok()
    }

    /// The runner's group is the terminal's foreground group.
    pub(crate) fn runner_in_front(&self) -> bool {
        self.foreground() == Some(self.runner)
    }

    /// `group` is the terminal's foreground group.
    pub(crate) fn in_front(&self, group: i32) -> bool {
        self.foreground() == Some(Pid::from_raw(group))
    }

    /// Makes `group` the terminal's foreground group.
    ///
    /// # Errors
    ///
    /// `tcsetpgrp` failed (the group is gone, or not in the terminal's session).
    pub(crate) fn give(&self, group: i32) -> nix::Result<()> {
        set_foreground(Pid::from_raw(group))
    }

    /// Makes the runner's group the foreground group again, if `group` holds it.
    pub(crate) fn take_back_from(&self, group: i32) {
        if self.in_front(group) {
            let _ = set_foreground(self.runner);
        }
    }
}

/// `tcsetpgrp` on standard input with SIGTTOU blocked in this thread meanwhile.
fn set_foreground(group: Pid) -> nix::Result<()> {
    let mut ttou = SigSet::empty();
    ttou.add(Signal::SIGTTOU);
    let old = ttou.thread_swap_mask(SigmaskHow::SIG_BLOCK)?;
    let set = nix::unistd::tcsetpgrp(std::io::stdin().as_fd(), group);
    // A SIGTTOU raised meanwhile stays pending after the restore only if it was sent to
    // this thread; `tcsetpgrp` with it blocked raises none.
    let _ = old.thread_set_mask();
    set
}
