//! What the registry holds for a child: enough to stop and reap it without its guard.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use super::core::{ChildCore, Exiting};
use super::escapees::Escapees;
use crate::registry::{Cleanup, ProcessIds, Reclaim};
use crate::sys::process::Sig;

pub(super) struct ChildReclaim {
    pub(super) core: Arc<ChildCore>,
    pub(super) grace: Duration,
    /// Under the child-subreaper opt-in: what its descendants left adopted.
    pub(super) escapees: Option<Escapees>,
}

impl Reclaim for ChildReclaim {
    /// Constant work inline (one SIGTERM to the group), the escalation and the reap as a
    /// task that the owning scope and shutdown wait for.
    /// Under the child-subreaper opt-in, what the child's descendants left adopted is
    /// stopped alongside (the same grace), even if the child itself was reaped already.
    fn reclaim(self: Box<Self>) -> Cleanup {
        if self.core.status().is_some() {
            // Reaped (its cgroup killed then): an empty cgroup is removed inline.
            let emptied = self.core.cgroup_removed_if_empty();
            let (core, grace) = (self.core.clone(), self.grace);
            return match (self.escapees, emptied) {
                (None, Some(done)) => Cleanup::Done(done),
                (e, _) => {
                    // Dropped unrun with the runtime: the escapees are killed all the same,
                    // and the cgroup emptied and removed.
                    let mut backstop = KillOnDrop(Some(core.clone()), e.clone());
                    Cleanup::Async(Box::pin(async move {
                        let stopped = match &e {
                            Some(e) => e.stop(true).await,
                            None => Ok(()),
                        };
                        let emptied = core.cgroup_emptied(grace).await;
                        backstop.disarm();
                        stopped.and(emptied)
                    }))
                }
            };
        }
        // On failure the task sends it again and reports the error.
        let sent = self.core.signal(Sig::TERM).is_ok();
        // Children released together (a scope's end) share one group scan: counted from
        // their SIGTERM to their stop's first ask (see `core/census.rs`).
        let exiting = sent.then(Exiting::new);
        // Captured before the first poll: if the runtime is gone and drops the task
        // unrun (or mid-way), the child is still killed and reaped, and its escapees.
        let mut backstop = KillOnDrop(Some(self.core.clone()), self.escapees.clone());
        Cleanup::Async(Box::pin(async move {
            let Some(e) = &self.escapees else {
                let stopped = self
                    .core
                    .stop_exiting(self.grace, sent, exiting)
                    .await
                    .map(drop);
                // The cgroup tier: `populated 0`, then the cgroup removed.
                let emptied = self.core.cgroup_emptied(self.grace).await;
                backstop.disarm();
                return stopped.and(emptied);
            };
            let stop = self.core.stop_exiting(self.grace, sent, exiting);
            let (stopped, escaped) = tokio::join!(stop, e.stop(false));
            // What escaped while the group had its grace.
            let late = e.stop(true).await;
            let emptied = self.core.cgroup_emptied(self.grace).await;
            backstop.disarm();
            stopped.map(drop).and(escaped).and(late).and(emptied)
        }))
    }

    /// Its pid, which is its group's id (a managed child leads its own group), and its
    /// cgroup under the cgroup tier: read lock-free, for `inspect`.
    fn process(&self) -> Option<ProcessIds> {
        let core = &self.core;
        let ids = ProcessIds::new(core.pid)
            .with_group(core.pid)
            .with_reaped(core.reaped_now());
        Some(match core.cgroup.get() {
            Some(cg) => ids.with_cgroup(cg.path()),
            None => ids,
        })
    }

    fn reclaim_now(self: Box<Self>) -> io::Result<()> {
        // The group first: its death orphans (to us) what it left outside the group,
        // which the escapees' scan then finds; the other way round it would be left.
        let killed = match self.core.status() {
            Some(_) => Ok(()),
            None => self.core.kill_now(),
        };
        let escaped = self.escapees.as_ref().map_or(Ok(()), Escapees::kill_now);
        let emptied = self.core.cgroup_emptied_now();
        killed.and(escaped).and(emptied)
    }

    /// SIGKILL to the group at once (constant work); the wait and the reap follow in
    /// `reclaim_now`, if the process lives long enough to run it.
    fn reclaim_urgent(&self) {
        if self.core.status().is_none() {
            let _ = self.core.signal(Sig::KILL);
        }
        self.core.cgroup_kill();
        if let Some(e) = &self.escapees {
            e.kill_urgent();
        }
    }
}

/// Kills and reaps the child, then what its descendants left adopted, if the stop task
/// is dropped before it finished (only happens when the runtime shuts down under it).
/// Blocks up to the emergency waits.
struct KillOnDrop(Option<Arc<ChildCore>>, Option<Escapees>);

impl KillOnDrop {
    fn disarm(&mut self) {
        self.0 = None;
        self.1 = None;
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let core = self.0.take();
        if let Some(core) = &core
            && core.status().is_none()
            && let Err(e) = core.kill_now()
        {
            tracing::warn!(error = %e, "could not stop a child whose stop task was dropped");
        }
        // After the group's kill, which may have orphaned more of them to us.
        if let Some(e) = self.1.take()
            && let Err(err) = e.kill_now()
        {
            tracing::warn!(error = %err, "could not stop the escapees of a dropped stop task");
        }
        if let Some(core) = core
            && let Err(e) = core.cgroup_emptied_now()
        {
            tracing::warn!(error = %e, "could not empty the cgroup of a dropped stop task");
        }
    }
}
