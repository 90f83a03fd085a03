//! The one escalation: SIGTERM, a grace, SIGKILL rounds (each waiting for its targets,
//! each after a look for forks in flight), and a final look that names every process
//! still running by pid, start time and reason. The loop ([`run`]), its policy and its
//! final look are here; each stop finds and signals its own targets ([`Targets`]), by
//! its own proofs (never a bare pid):
//! - recovery (`sys::orphans`): a dead owner's groups and marked processes, through
//!   pidfds opened and proven by start time; blocking, polling `/proc`;
//! - the subreaper's stop (`reaper/stop.rs`): adopted processes, unreaped children of
//!   ours; blocking, reaping as they exit, looking for newly adopted ones at each poll;
//! - a managed child's stop (`resource/process/core.rs`): async (it awaits the pidfd
//!   and the cgroup's events instead of polling), so it shares the policy and the final
//!   look, not the loop: its group while its leader is unreaped, and its cgroup.
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

/// What one stop escalates over: its targets, found and signalled by its own proofs.
pub(crate) trait Targets {
    /// One target, with whatever proves it (a pidfd, an unreaped child's record).
    type Member;

    /// The target's pid, start time and the stop's own index of what it belongs to.
    fn id(m: &Self::Member) -> (u32, u64, usize);

    /// Targets not found before, each with the end of its grace (`None`: never), the
    /// grace counted from `t0`. Called first, then at each poll of the grace when
    /// [`RESCAN_IN_GRACE`](Self::RESCAN_IN_GRACE), and before each SIGKILL round;
    /// always right after [`poll`](Self::poll).
    fn find(&mut self, t0: Instant) -> io::Result<Vec<(Self::Member, Option<Instant>)>>;

    /// Signals one target. `EPERM` makes it a survivor at once (retrying cannot help).
    fn signal(&mut self, m: &Self::Member, sig: rustix::process::Signal) -> io::Result<()>;

    /// Called once per poll, before [`running`](Self::running) is asked of each (the
    /// subreaper reaps what exited here).
    fn poll(&mut self) -> io::Result<()> {
        Ok(())
    }

    /// Whether the target still runs.
    fn running(&mut self, m: &Self::Member) -> bool;

    /// Whether the grace was cut short (shutdown stopped waiting).
    fn cut(&self) -> bool {
        false
    }

    /// Whether new targets can appear during the grace (orphans re-parented to a
    /// subreaper): looked for at each poll, and the grace ends only after two looks in
    /// a row found nothing left.
    const RESCAN_IN_GRACE: bool;
}

/// What [`run`] did.
#[derive(Debug, Default)]
pub(crate) struct Escalation {
    /// Every target found: pid, start time, group.
    pub(crate) found: Vec<(u32, u64, usize)>,
    /// The groups of the targets that were sent SIGKILL.
    pub(crate) killed: Vec<usize>,
    /// Targets still running after the last round (or refused a signal), named.
    pub(crate) survivors: Vec<Left>,
}

struct Entry<M> {
    m: M,
    deadline: Option<Instant>,
    killed: bool,
}

/// The escalation, blocking: SIGTERM to every target found, each its own grace
/// (SIGKILL when it ends, or at once when the grace is cut), then up to
/// `policy.kill_rounds` SIGKILL rounds, each after a look for new targets and waiting
/// `policy.kill_wait`; the final look names what is left. A stop that finds nothing at
/// first does no round (nothing of it could fork).
pub(crate) fn run<T: Targets>(t: &mut T, policy: &Policy) -> io::Result<Escalation> {
    use rustix::process::Signal;
    let mut out = Escalation::default();
    let t0 = Instant::now();
    let mut live: Vec<Entry<T::Member>> = Vec::new();
    let add = |t: &mut T, live: &mut Vec<Entry<T::Member>>, out: &mut Escalation| {
        let found = t.find(t0)?;
        let any = !found.is_empty();
        for (m, deadline) in found {
            out.found.push(T::id(&m));
            if kept(t.signal(&m, Signal::TERM), T::id(&m), out) {
                live.push(Entry {
                    m,
                    deadline,
                    killed: false,
                });
            }
        }
        io::Result::Ok(any)
    };
    t.poll()?;
    let found = add(t, &mut live, &mut out)?;
    let mut pause = Backoff::new(Duration::from_millis(1), Duration::from_millis(20));
    let mut quiet = 0;
    loop {
        t.poll()?;
        let new = T::RESCAN_IN_GRACE && add(t, &mut live, &mut out)?;
        live.retain_mut(|e| t.running(&e.m));
        let (now, cut) = (Instant::now(), t.cut());
        let mut kept_live = Vec::with_capacity(live.len());
        for mut e in live.drain(..) {
            if !e.killed && (cut || e.deadline.is_some_and(|d| now >= d)) {
                e.killed = true;
                out.killed.push(T::id(&e.m).2);
                if !kept(t.signal(&e.m, Signal::KILL), T::id(&e.m), &mut out) {
                    continue;
                }
            }
            kept_live.push(e);
        }
        live = kept_live;
        quiet = if live.is_empty() && !new {
            quiet + 1
        } else {
            0
        };
        let done = if T::RESCAN_IN_GRACE {
            quiet >= 2 || (!live.is_empty() && live.iter().all(|e| e.killed))
        } else {
            live.iter().all(|e| e.killed)
        };
        if done {
            break;
        }
        if quiet == 0 {
            std::thread::sleep(pause.next_pause());
        }
    }
    wait_gone(t, &mut live, policy.kill_end())?;
    for _ in 0..if found { policy.kill_rounds } else { 0 } {
        // Forks in flight during the grace, orphans adopted meanwhile: look again.
        t.poll()?;
        add(t, &mut live, &mut out)?;
        live.retain_mut(|e| t.running(&e.m));
        if live.is_empty() {
            break;
        }
        let mut kept_live = Vec::with_capacity(live.len());
        for e in live.drain(..) {
            out.killed.push(T::id(&e.m).2);
            if kept(t.signal(&e.m, Signal::KILL), T::id(&e.m), &mut out) {
                kept_live.push(e);
            }
        }
        live = kept_live;
        wait_gone(t, &mut live, policy.kill_end())?;
    }
    // The final look: what still runs is a survivor, named with its reason.
    for e in &live {
        let (pid, start, group) = T::id(&e.m);
        if let Some(why) = final_look(pid, start) {
            out.survivors.push(Left {
                pid,
                start,
                group,
                why,
            });
        }
    }
    // One that refused a signal and ended after all is not a survivor.
    out.survivors
        .retain(|s| final_look(s.pid, s.start).is_some());
    Ok(out)
}

/// Whether to keep waiting for `m` after a signal: not if the kernel refused it
/// (`EPERM`), which makes it a survivor at once.
fn kept(r: io::Result<()>, (pid, start, group): (u32, u64, usize), out: &mut Escalation) -> bool {
    let perm = matches!(&r, Err(e) if e.kind() == io::ErrorKind::PermissionDenied);
    if perm {
        out.survivors.push(Left {
            pid,
            start,
            group,
            why: LeftWhy::Refused,
        });
    }
    !perm
}

/// Polls until no target runs or `until` passes (`None`: no end).
fn wait_gone<T: Targets>(
    t: &mut T,
    live: &mut Vec<Entry<T::Member>>,
    until: Option<Instant>,
) -> io::Result<()> {
    let mut pause = Backoff::new(Duration::from_millis(1), Duration::from_millis(20));
    loop {
        t.poll()?;
        live.retain_mut(|e| t.running(&e.m));
        if live.is_empty() || until.is_some_and(|u| Instant::now() >= u) {
            return Ok(());
        }
        std::thread::sleep(pause.next_pause());
    }
}

/// Why a process was left running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LeftWhy {
    /// The sweeping process itself (recovery only: never signalled).
    Sweeper,
    /// An ancestor of the sweeping process (recovery only: never signalled).
    Ancestor,
    /// In the sweeping process's own process group: a partner of its pipeline
    /// (`custodian sweep | tee log`; recovery only: never signalled).
    SweeperGroup,
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
            LeftWhy::SweeperGroup => "in the sweeping process's own process group",
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

    /// One fake target: alive, obeys SIGTERM, refuses every signal, the first poll at
    /// which it can be found.
    struct T(bool, bool, bool, usize);

    struct Fake {
        targets: Vec<T>,
        polls: usize,
        returned: usize,
    }

    impl Targets for Fake {
        type Member = usize;

        fn id(m: &usize) -> (u32, u64, usize) {
            // Index 3 stands for this very process (it refuses every signal).
            if *m == 3 {
                (std::process::id(), procfs::self_start().unwrap(), 3)
            } else {
                (u32::MAX - u32::try_from(*m).unwrap(), 0, *m)
            }
        }

        fn find(&mut self, t0: Instant) -> io::Result<Vec<(usize, Option<Instant>)>> {
            let end = t0.checked_add(Duration::from_millis(30));
            let mut out = Vec::new();
            while self.returned < self.targets.len() && self.targets[self.returned].3 <= self.polls
            {
                out.push((self.returned, end));
                self.returned += 1;
            }
            Ok(out)
        }

        fn signal(&mut self, &m: &usize, sig: rustix::process::Signal) -> io::Result<()> {
            let t = &mut self.targets[m];
            if t.2 {
                return Err(io::ErrorKind::PermissionDenied.into());
            }
            if sig == rustix::process::Signal::KILL || t.1 {
                t.0 = false;
            }
            Ok(())
        }

        fn poll(&mut self) -> io::Result<()> {
            self.polls += 1;
            Ok(())
        }

        fn running(&mut self, &m: &usize) -> bool {
            self.targets[m].0
        }

        const RESCAN_IN_GRACE: bool = true;
    }

    #[test]
    fn one_loop_terms_waits_the_grace_kills_and_names_what_refused() {
        let mut fake = Fake {
            targets: vec![
                T(true, true, false, 0),  // leaves on SIGTERM
                T(true, false, false, 0), // ignores SIGTERM
                T(true, true, false, 3),  // adopted during the grace
                T(true, false, true, 0),  // refuses: EPERM
            ],
            polls: 0,
            returned: 0,
        };
        let policy = Policy::new(Duration::from_millis(30), 2, Duration::from_millis(10));
        let t0 = Instant::now();
        let ran = run(&mut fake, &policy).unwrap();
        assert!(
            t0.elapsed() >= Duration::from_millis(30),
            "the grace was waited"
        );
        let found: Vec<usize> = ran.found.iter().map(|f| f.2).collect();
        assert_eq!(found, [0, 1, 2, 3]);
        assert_eq!(
            ran.killed,
            [1],
            "only the one that ignored SIGTERM needed SIGKILL"
        );
        assert_eq!(ran.survivors.len(), 1, "{:?}", ran.survivors);
        let s = ran.survivors[0];
        assert_eq!(
            (s.pid, s.group, s.why),
            (std::process::id(), 3, LeftWhy::Refused)
        );
        assert!(fake.targets.iter().take(3).all(|t| !t.0), "all stopped");
    }
}
