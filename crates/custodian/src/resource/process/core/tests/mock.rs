//! The mock OS of the stop's tests: a child and its group as a mock kernel sees them,
//! every signal and reap recorded with the paused clock's reading.

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rustix::io::Errno;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::super::{ChildCore, ProcessOs};
use crate::sys::process::Sig;

/// The mock child's pid (and group id); never signalled for real.
pub(super) const PID: u32 = 4242;

/// One OS call that changes something, as the mock recorded it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Call {
    Group(Sig),
    Process(Sig),
    Reap,
}

use Call::{Group, Process, Reap};

pub(super) const TERM: Sig = Sig::TERM;
pub(super) const KILL: Sig = Sig::KILL;

/// A child and its group, as the mock kernel sees them.
pub(super) struct World {
    pub(super) start: Instant,
    pub(super) calls: Vec<(Duration, Call)>,
    /// The leader's exit signal once it has exited.
    pub(super) exited: Option<Sig>,
    pub(super) reaped: bool,
    /// The leader exits on SIGTERM (it always does on SIGKILL).
    pub(super) leader_obeys_term: bool,
    /// Other running members of the group; they exit on SIGKILL.
    pub(super) members: usize,
    pub(super) members_obey_term: bool,
    /// Members survive SIGKILL too (`EPERM`, stuck in the kernel).
    pub(super) members_survive_kill: bool,
    /// Every group signal fails with this.
    pub(super) group_fails: Option<Errno>,
    /// Without an exit event the exit is polled, as without a pidfd.
    pub(super) has_event: bool,
    /// Fires when the leader exits.
    pub(super) event: Arc<watch::Sender<bool>>,
}

/// A mock [`ProcessOs`]: a shared [`World`], cloned into the core and kept by the test.
#[derive(Clone)]
pub(super) struct Mock(Arc<Mutex<World>>);

impl Mock {
    pub(super) fn new() -> Self {
        Mock(Arc::new(Mutex::new(World {
            start: Instant::now(),
            calls: Vec::new(),
            exited: None,
            reaped: false,
            leader_obeys_term: false,
            members: 0,
            members_obey_term: false,
            members_survive_kill: false,
            group_fails: None,
            has_event: true,
            event: Arc::new(watch::Sender::new(false)),
        })))
    }

    pub(super) fn with(self, f: impl FnOnce(&mut World)) -> Self {
        f(&mut self.world());
        self
    }

    pub(super) fn world(&self) -> MutexGuard<'_, World> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn core(&self, cut: &CancellationToken) -> Arc<ChildCore<Mock>> {
        ChildCore::with_os(self.clone(), (), PID, cut.clone())
    }

    pub(super) fn calls(&self) -> Vec<(Duration, Call)> {
        self.world().calls.clone()
    }

    /// The leader exits (from outside: a crash, its own end).
    pub(super) fn exit_leader(&self, sig: Sig) {
        self.world().exit(sig);
    }

    pub(super) fn members_exit(&self) {
        self.world().members = 0;
    }
}

impl World {
    fn record(&mut self, call: Call) {
        let at = Instant::now().saturating_duration_since(self.start);
        self.calls.push((at, call));
    }

    fn exit(&mut self, sig: Sig) {
        if self.exited.is_none() {
            self.exited = Some(sig);
            self.event.send_replace(true);
        }
    }

    fn deliver_to_leader(&mut self, sig: Sig) {
        if sig == KILL || self.leader_obeys_term {
            self.exit(sig);
        }
    }
}

impl ProcessOs for Mock {
    type Child = ();
    type ExitEvent = watch::Sender<bool>;
    type Scan = ();

    fn has_exited(&self, (): &(), _pid: u32) -> io::Result<bool> {
        let w = self.world();
        if w.reaped {
            return Err(Errno::CHILD.into());
        }
        Ok(w.exited.is_some())
    }

    fn signal_process(&self, (): &(), _pid: u32, sig: Sig) -> io::Result<()> {
        let mut w = self.world();
        w.record(Process(sig));
        w.deliver_to_leader(sig);
        Ok(())
    }

    fn signal_group(&self, _pid: u32, sig: Sig) -> io::Result<()> {
        let mut w = self.world();
        w.record(Group(sig));
        if let Some(e) = w.group_fails {
            return Err(e.into());
        }
        w.deliver_to_leader(sig);
        if (sig == KILL && !w.members_survive_kill) || w.members_obey_term {
            w.members = 0;
        }
        Ok(())
    }

    fn try_reap(&self, (): &mut ()) -> io::Result<Option<ExitStatus>> {
        let mut w = self.world();
        w.record(Reap);
        if w.reaped {
            return Err(Errno::CHILD.into());
        }
        let Some(sig) = w.exited else {
            return Ok(None);
        };
        w.reaped = true;
        Ok(Some(ExitStatus::from_raw(sig.as_raw())))
    }

    fn exit_event(&self, (): &()) -> Option<Arc<watch::Sender<bool>>> {
        let w = self.world();
        w.has_event.then(|| w.event.clone())
    }

    async fn exit_event_fired(
        &self,
        event: &watch::Sender<bool>,
        exited: impl FnOnce() -> io::Result<bool> + Send,
    ) -> io::Result<bool> {
        let mut rx = event.subscribe();
        // The sender lives as long as `event`: this only ends when it fires.
        rx.wait_for(|&fired| fired)
            .await
            .map_err(io::Error::other)?;
        exited()
    }

    fn group_scan(&self, (): &(), _pid: u32, _exiting: Option<super::super::Exiting>) {}

    async fn group_running(&self, (): ()) -> io::Result<((), io::Result<bool>)> {
        Ok(((), Ok(self.world().members > 0)))
    }

    async fn survivors(&self, _pid: u32) -> io::Result<Vec<crate::sys::escalate::Left>> {
        let n = self.world().members;
        Ok((0..n)
            .map(|i| crate::sys::escalate::Left {
                pid: 1000 + u32::try_from(i).unwrap(),
                start: 0,
                group: 0,
                why: crate::sys::escalate::LeftWhy::Running,
            })
            .collect())
    }
}
