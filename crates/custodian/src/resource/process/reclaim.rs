//! What the registry holds for a child: enough to stop and reap it without its guard.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use super::core::ChildCore;
use crate::registry::{Cleanup, Reclaim};
use crate::sys::process::Sig;

pub(super) struct ChildReclaim {
    pub(super) core: Arc<ChildCore>,
    pub(super) grace: Duration,
}

impl Reclaim for ChildReclaim {
    /// Constant work inline (one SIGTERM to the group), the escalation and the reap as a
    /// task that the owning scope and shutdown wait for.
    fn reclaim(self: Box<Self>) -> Cleanup {
        if self.core.status().is_some() {
            return Cleanup::Done(Ok(()));
        }
        // On failure the task sends it again and reports the error.
        let sent = self.core.signal(Sig::TERM).is_ok();
        let guard = KillOnDrop(Some(self.core.clone()));
        Cleanup::Async(Box::pin(async move {
            let mut guard = guard;
            let r = self.core.stop(self.grace, sent).await.map(drop);
            guard.0 = None;
            r
        }))
    }

    fn reclaim_now(self: Box<Self>) -> io::Result<()> {
        if self.core.status().is_some() {
            return Ok(());
        }
        self.core.kill_now()
    }
}

/// Moved into the stop task: if the task is dropped before the child is reaped (the
/// runtime shut down with the task unrun or mid-wait, e.g. a runtime dropped without
/// `shutdown()`), the SIGTERM already sent may have been ignored and nobody would reap;
/// so it finishes the job synchronously, like the emergency path (SIGKILL, at most
/// 200 ms of waiting, sweep, reap). The only case where a child's release blocks.
struct KillOnDrop(Option<Arc<ChildCore>>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(core) = self.0.take()
            && core.status().is_none()
            && let Err(error) = core.kill_now()
        {
            tracing::warn!(pid = core.pid, %error, "could not stop a child whose stop task was dropped");
        }
    }
}
