//! Emergency clean-up: synchronous, without a runtime, for the paths where no shutdown
//! can run (a dropped runtime, a panic that aborts, an explicit last-ditch call).
//!
//! One function, [`Inner::emergency`], serves all of them: it refuses new acquisitions,
//! releases every registered entry with [`Reclaim::reclaim_now`] (newest first), then
//! cancels the root, and removes the temp root. It is idempotent: the registry decides each
//! release exactly once, and the temp root is removed by whoever sets its flag first.
//!
//! [`Reclaim::reclaim_now`]: crate::Reclaim::reclaim_now

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::inner::{Deferred, Inner, Records, release_now};
use crate::kind::{CancelReason, ReleasePath};
use crate::registry::{Registry, ResourceId};
use crate::supervisor::Supervisor;

/// How long a panic hook waits for the emergency releases before it lets the panic go on
/// (and, with `panic = "abort"`, the process end).
pub(crate) const HOOK_BUDGET: Duration = Duration::from_secs(3);

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
    /// Whether the releases were still running when a panic hook's budget ran out (a
    /// clean-up waiting for a lock the panicking thread holds): they go on in the
    /// background, and the temp root was removed regardless.
    #[serde(default)]
    pub unfinished: bool,
}

/// Counts shared with the thread that releases for a panic hook.
#[derive(Default)]
struct Progress {
    released: AtomicUsize,
    failed: AtomicUsize,
}

/// Releases every registered entry with `reclaim_now`, newest first, by
/// [`ReleasePath::Shutdown`].
fn reclaim_all_now(registry: &Registry, records: &Records, progress: &Progress) {
    let mut ids: Vec<ResourceId> = registry.map.iter().map(|e| *e.key()).collect();
    ids.sort_unstable_by(|a, b| b.cmp(a));
    for id in ids {
        if let Some((ok, _)) = release_now(registry, records, id, Some(ReleasePath::Shutdown)) {
            // Relaxed: plain tallies, read after a join or a channel receive.
            progress.released.fetch_add(1, Ordering::Relaxed);
            progress
                .failed
                .fetch_add(usize::from(!ok), Ordering::Relaxed);
        }
    }
}

impl Inner {
    /// Emergency clean-up on the calling thread (`emergency_cleanup()`).
    pub(crate) fn emergency(&self) -> EmergencyCleanup {
        self.refuse_all();
        let progress = Progress::default();
        reclaim_all_now(&self.registry, &self.records, &progress);
        self.end_emergency(&progress, false)
    }

    /// Emergency clean-up from a panic hook: the thread that panicked may hold a lock a
    /// clean-up needs (a decoder's, a file slot's), so the releases run on a thread of
    /// their own and the hook waits for them at most [`HOOK_BUDGET`]. The temp root is
    /// removed either way (through its fd; no lock involved).
    fn emergency_from_hook(self: &Arc<Self>) -> EmergencyCleanup {
        self.refuse_all();
        let progress = Arc::new(Progress::default());
        let (tx, rx) = std::sync::mpsc::channel();
        let (me, p) = (self.clone(), progress.clone());
        let spawned = std::thread::Builder::new()
            .name("custodian-emergency".into())
            .spawn(move || {
                reclaim_all_now(&me.registry, &me.records, &p);
                let _ = tx.send(());
            });
        let unfinished = match spawned {
            Ok(_) => rx.recv_timeout(HOOK_BUDGET).is_err(),
            // No thread to be had: do it here, the best that is left.
            Err(_) => {
                reclaim_all_now(&self.registry, &self.records, &progress);
                false
            }
        };
        if unfinished {
            tracing::warn!(budget = ?HOOK_BUDGET, "emergency clean-up: releases still running when the panic hook's budget ran out");
        }
        self.end_emergency(&progress, unfinished)
    }

    fn refuse_all(&self) {
        self.begin_shutdown();
        // Relaxed: `forced` is a report flag; the tokens publish the cancellation.
        self.forced.store(true, Ordering::Relaxed);
    }

    /// Cancels after releasing: a scope woken by the cancellation would drop its guards
    /// on another thread, and a dropped child guard only sends SIGTERM inline, leaving
    /// the SIGKILL to a task that an abort right after this never runs.
    fn end_emergency(&self, progress: &Progress, unfinished: bool) -> EmergencyCleanup {
        self.root_scope.raise(CancelReason::ForcedShutdown);
        self.cut.cancel();
        let mut out = EmergencyCleanup {
            released: progress.released.load(Ordering::Relaxed),
            failed: progress.failed.load(Ordering::Relaxed),
            temp_root_removed: false,
            unfinished,
        };
        match self.remove_temp_root() {
            Some(Ok(())) => out.temp_root_removed = true,
            Some(Err(err)) => tracing::warn!(%err, "could not remove the temp root"),
            None => {}
        }
        self.done.cancel();
        out
    }

    /// The last handle is gone without `shutdown()`: release what is left. The work
    /// (recursive removals, a child's SIGKILL and reap) goes to the supervisor's blocking
    /// pool, so that the dropping thread, often a runtime worker, does not block; if the
    /// runtime is gone, the pool drops the job unrun and it runs here instead.
    pub(crate) fn emergency_on_drop(&mut self) {
        self.refuse_all();
        self.root_scope.raise(CancelReason::ForcedShutdown);
        self.cut.cancel();
        self.done.cancel();
        let registry = std::mem::take(&mut self.registry);
        let records = self.records.clone();
        let root = self.take_temp_root();
        let job = Deferred::new(move || {
            let progress = Progress::default();
            reclaim_all_now(&registry, &records, &progress);
            if let Some(Err(err)) = root.map(|r| r.remove()) {
                tracing::warn!(%err, "could not remove the temp root");
            }
            let released = progress.released.load(Ordering::Relaxed);
            if released > 0 {
                tracing::warn!(
                    released,
                    failed = progress.failed.load(Ordering::Relaxed),
                    "supervisor dropped without shutdown: emergency clean-up ran"
                );
            }
        });
        drop(self.handle.spawn_blocking(move || job.run()));
    }
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
                let done = inner.emergency_from_hook();
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
