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
        Cleanup::Async(Box::pin(async move {
            self.core.stop(self.grace, sent).await.map(drop)
        }))
    }

    fn reclaim_now(self: Box<Self>) -> io::Result<()> {
        if self.core.status().is_some() {
            return Ok(());
        }
        self.core.kill_now()
    }
}
