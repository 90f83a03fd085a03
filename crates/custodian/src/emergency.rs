//! Emergency clean-up: synchronous, without a runtime, for the paths where no shutdown
//! can run (a dropped runtime, a panic that aborts, an explicit last-ditch call).
//!
//! One function, [`Inner::emergency`], serves all of them: it refuses new acquisitions,
//! releases every registered entry with [`Reclaim::reclaim_now`] (newest first), then
//! cancels the root, and removes the temp root. It is idempotent: the registry decides each
//! release exactly once, and the temp root is removed by whoever sets its flag first.
//!
//! [`Reclaim::reclaim_now`]: crate::Reclaim::reclaim_now

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use serde::{Deserialize, Serialize};

use crate::inner::Inner;
use crate::kind::{CancelReason, ReleasePath};
use crate::registry::ResourceId;
use crate::supervisor::Supervisor;

/// What an emergency clean-up did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct EmergencyCleanup {
    /// Resources this call released.
    pub released: usize,
    /// Of those, how many failed to clean up (recorded in the supervisor's failures).
    pub failed: usize,
    /// Whether this call removed the temp root.
    pub temp_root_removed: bool,
}

/// When the panic hook installed by [`Supervisor::install_panic_hook`] cleans up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PanicCleanup {
    /// Only if this build aborts on panic (`panic = "abort"`): then no destructor will
    /// run, and the hook is the last chance. With unwinding, the supervisor's own `Drop`
    /// cleans up when the panic unwinds past its last handle.
    OnAbort,
    /// On every panic on any thread, even one that is caught later (by a scope or a
    /// Tokio task). The supervisor refuses new work afterwards. For programs that treat
    /// any panic as fatal.
    OnAnyPanic,
}

impl Inner {
    pub(crate) fn emergency(&self) -> EmergencyCleanup {
        self.begin_shutdown();
        // Relaxed: `forced` is a report flag; the tokens below publish the cancellation.
        self.forced.store(true, Ordering::Relaxed);
        // Release before cancelling: a scope woken by the cancellation would drop its
        // guards on another thread, and a dropped child guard only sends SIGTERM inline,
        // leaving the SIGKILL to a task that an abort right after this never runs.
        let mut out = EmergencyCleanup::default();
        let mut ids: Vec<ResourceId> = self.registry.map.iter().map(|e| *e.key()).collect();
        ids.sort_unstable_by(|a, b| b.cmp(a));
        for id in ids {
            if let Some(ok) = self.release_now(id, ReleasePath::Shutdown) {
                out.released += 1;
                out.failed += usize::from(!ok);
            }
        }
        self.root_scope.raise(CancelReason::ForcedShutdown);
        self.cut.cancel();
        match self.remove_temp_root() {
            Some(Ok(())) => out.temp_root_removed = true,
            Some(Err(err)) => tracing::warn!(%err, "could not remove the temp root"),
            None => {}
        }
        self.done.cancel();
        out
    }
}

impl Supervisor {
    /// Releases everything still registered *now*, synchronously and without a runtime
    /// ([`Reclaim::reclaim_now`](crate::Reclaim::reclaim_now) on each entry, newest
    /// first), removes the temp root, and refuses new acquisitions. Safe to call more
    /// than once, and from any thread; later calls find nothing left to do.
    ///
    /// This is the last resort (a panic hook, a fatal error path). It blocks the calling
    /// thread for as long as the removals take; prefer [`shutdown`](Self::shutdown).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> custodian::Result<()> {
    /// let sup = custodian::Supervisor::builder().start()?;
    /// let t = sup.temp_file().await?;
    /// let done = sup.emergency_cleanup();
    /// assert_eq!((done.released, done.failed, done.temp_root_removed), (1, 0, true));
    /// assert!(!t.path().exists() && !sup.temp_root().exists());
    /// assert_eq!(sup.emergency_cleanup().released, 0); // idempotent
    /// # Ok(()) }
    /// ```
    pub fn emergency_cleanup(&self) -> EmergencyCleanup {
        self.inner.emergency()
    }

    /// Installs a process-wide panic hook that runs
    /// [`emergency_cleanup`](Self::emergency_cleanup) (see [`PanicCleanup`] for when),
    /// then the hook that was installed before. Nothing is installed unless this is
    /// called. The hook holds only a weak reference: it never keeps the supervisor alive,
    /// and does nothing once the supervisor is gone. Installing it twice is harmless.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> custodian::Result<()> {
    /// use custodian::PanicCleanup;
    /// let sup = custodian::Supervisor::builder().start()?;
    /// sup.install_panic_hook(PanicCleanup::OnAnyPanic);
    /// let t = sup.temp_file().await?;
    /// let path = t.path().to_path_buf();
    /// std::thread::spawn(|| panic!("fatal")).join().unwrap_err();
    /// assert!(!path.exists() && sup.is_shutting_down());
    /// # Ok(()) }
    /// ```
    pub fn install_panic_hook(&self, when: PanicCleanup) {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let active = match when {
            PanicCleanup::OnAbort => cfg!(panic = "abort"),
            PanicCleanup::OnAnyPanic => true,
        };
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if active && let Some(inner) = weak.upgrade() {
                let done = inner.emergency();
                if done.released > 0 || done.temp_root_removed {
                    eprintln!(
                        "custodian: panic: emergency clean-up released {} resource(s), {} failed",
                        done.released, done.failed
                    );
                }
            }
            previous(info);
        }));
    }
}
