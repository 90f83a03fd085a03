//! The one escalation: SIGTERM, a grace, SIGKILL rounds (each waiting for its targets,
//! each after a look for forks in flight), and a final look that names every process
//! still running by pid, start time and reason. Its policy and its final look are here;
//! the three stops that run it each find and signal their own targets, by their own
//! proofs (never a bare pid):
//! - recovery (`sys::orphans`): a dead owner's groups and marked processes, through
//!   pidfds opened and proven by start time; blocking, polling `/proc`;
//! - the subreaper's stop (`reaper/stop.rs`): adopted processes, unreaped children of
//!   ours; blocking, reaping as they exit;
//! - a managed child's stop (`resource/process/core.rs`, async): its group while its
//!   leader is unreaped, and its cgroup; its final look reads the group (or the cgroup)
//!   once the SIGKILL round is over.
//!
//! Survivors are reported by each: recovery in its report (and the journal keeps
//! them), the two live stops as the error of the release (`Error::Io` naming the
//! program, kind `TimedOut`, with the pids and reasons), which the shutdown report and
//! the failure records carry.

use std::fmt;
use std::io;
use std::time::{Duration, Instant};

use super::procfs;

/// How a stop escalates after its SIGTERM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Policy {
    /// SIGTERM to SIGKILL. A grace too long to add to the clock never ends by itself.
    pub(crate) grace: Duration,
    /// SIGKILL rounds at most (each after a look for new targets).
    pub(crate) kill_rounds: usize,
    /// How long one SIGKILL round waits for its targets to be gone.
    pub(crate) kill_wait: Duration,
}

impl Policy {
    /// `grace`, then up to `kill_rounds` rounds of SIGKILL, each waiting `kill_wait`.
    pub(crate) const fn new(grace: Duration, kill_rounds: usize, kill_wait: Duration) -> Self {
        Policy {
            grace,
            kill_rounds,
            kill_wait,
        }
    }

    /// When a grace started at `from` ends; `None`: never (saturating, never a panic).
    pub(crate) fn grace_end(&self, from: Instant) -> Option<Instant> {
        from.checked_add(self.grace)
    }

    /// When a SIGKILL round started now stops waiting.
    pub(crate) fn kill_end(&self) -> Option<Instant> {
        Instant::now().checked_add(self.kill_wait)
    }
}

/// The pauses between two looks while waiting: 1 ms, doubling up to `max`.
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub(crate) fn new(first: Duration, max: Duration) -> Self {
        Backoff { next: first, max }
    }

    /// The next pause.
    pub(crate) fn next_pause(&mut self) -> Duration {
        let p = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        p
    }
}

/// Why a process was left running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LeftWhy {
    /// The sweeping process itself (recovery only: never signalled).
    Sweeper,
    /// An ancestor of the sweeping process (recovery only: never signalled).
    Ancestor,
    /// The kernel refused the signal (`EPERM`: it changed user).
    Refused,
    /// Still running after SIGKILL, in uninterruptible sleep (`D`): stuck in the kernel.
    Uninterruptible,
    /// Still running after every SIGKILL round.
    Running,
}

impl fmt::Display for LeftWhy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LeftWhy::Sweeper => "the sweeping process",
            LeftWhy::Ancestor => "an ancestor of the sweeping process",
            LeftWhy::Refused => "the signal was refused (EPERM)",
            LeftWhy::Uninterruptible => "stuck in the kernel (state D) after SIGKILL",
            LeftWhy::Running => "still running after SIGKILL",
        })
    }
}

/// A process still running after a stop, named.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Left {
    pub(crate) pid: u32,
    pub(crate) start: u64,
    /// The stop's own index of what it belonged to (a group, a marker, a child).
    pub(crate) group: usize,
    pub(crate) why: LeftWhy,
}

impl fmt::Display for Left {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pid {}: {}", self.pid, self.why)
    }
}

/// The final look at one target after the last SIGKILL round: `None` if the process
/// `(pid, start)` is gone (or a zombie), else why it is still there. Blocking: one
/// `/proc/PID/stat` read.
pub(crate) fn final_look(pid: u32, start: u64) -> Option<LeftWhy> {
    match procfs::proc_stat(pid) {
        Ok(Some(st)) if st.start == start && !st.zombie => Some(if st.state == b'D' {
            LeftWhy::Uninterruptible
        } else {
            LeftWhy::Running
        }),
        _ => None,
    }
}

/// The final look at processes known only by pid (a group's or a cgroup's members,
/// just listed): each still running is named, its start time read now. `EPERM` to a
/// probe (signal 0, which sends nothing) says the kill was refused.
pub(crate) fn name_running(pids: &[u32], group: usize) -> Vec<Left> {
    let mut out = Vec::new();
    for &pid in pids {
        let Some(st) = procfs::stat(pid) else {
            continue;
        };
        let Some(mut why) = final_look(pid, st.start) else {
            continue;
        };
        let probe = i32::try_from(pid)
            .ok()
            .and_then(rustix::process::Pid::from_raw)
            .map(rustix::process::test_kill_process);
        if probe == Some(Err(rustix::io::Errno::PERM)) {
            why = LeftWhy::Refused;
        }
        out.push(Left {
            pid,
            start: st.start,
            group,
            why,
        });
    }
    out
}

/// The error a live stop returns when processes survived it: kind `TimedOut`, every
/// survivor named by pid and reason.
pub(crate) fn survivors_error(what: &str, left: &[Left]) -> io::Error {
    let mut msg = format!("{} {what} survived SIGKILL:", left.len());
    for (i, l) in left.iter().enumerate() {
        msg.push_str(if i == 0 { " " } else { "; " });
        msg.push_str(&l.to_string());
    }
    io::Error::new(io::ErrorKind::TimedOut, msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_final_look_names_what_runs_and_the_error_names_every_survivor() {
        let me = std::process::id();
        let start = procfs::self_start().unwrap();
        assert_eq!(final_look(me, start), Some(LeftWhy::Running));
        assert_eq!(final_look(me, start + 1), None, "another process");
        assert_eq!(final_look(u32::MAX, 0), None, "gone");
        let left = [
            Left {
                pid: 7,
                start: 1,
                group: 0,
                why: LeftWhy::Refused,
            },
            Left {
                pid: 8,
                start: 1,
                group: 0,
                why: LeftWhy::Uninterruptible,
            },
        ];
        let named = name_running(&[me, u32::MAX], 3);
        assert_eq!(named.len(), 1, "{named:?}");
        assert_eq!(
            (named[0].pid, named[0].start, named[0].group),
            (me, start, 3)
        );
        let e = survivors_error("processes", &left);
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert_eq!(
            e.to_string(),
            "2 processes survived SIGKILL: pid 7: the signal was refused (EPERM); \
             pid 8: stuck in the kernel (state D) after SIGKILL"
        );
        let p = Policy::new(Duration::MAX, 1, Duration::ZERO);
        assert_eq!(p.grace_end(Instant::now()), None, "saturating: never");
        let mut b = Backoff::new(Duration::from_millis(1), Duration::from_millis(5));
        let pauses: Vec<_> = (0..5).map(|_| b.next_pause().as_millis()).collect();
        assert_eq!(pauses, [1, 2, 4, 5, 5]);
    }
}
