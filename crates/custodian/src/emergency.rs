//! Emergency clean-up: synchronous, without a runtime, for the paths where no shutdown
//! can run (a dropped runtime, a panic that aborts, an explicit last-ditch call).
//!
//! One sequence serves all of them (`run`, `from_hook`, `on_last_drop`): it refuses new acquisitions,
//! releases every registered entry with [`Reclaim::reclaim_now`] (newest first), then
//! cancels the root, and removes the temp root. It is idempotent: the registry decides each
//! release exactly once, and the temp root is removed by whoever sets its flag first.
//!
//! [`Reclaim::reclaim_now`]: crate::Reclaim::reclaim_now

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::id::ResourceId;
use crate::inner::{Deferred, Inner, Records, release_now};
use crate::kind::{CancelReason, ReleasePath};
use crate::registry::Registry;

/// How long a panic hook waits for the emergency releases before it lets the panic go on
/// (and, with `panic = "abort"`, the process end).
pub(crate) const HOOK_BUDGET: Duration = Duration::from_secs(3);

/// What an emergency clean-up did.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
/// let sup = tokio_custodian::Supervisor::builder().start()?;
/// let _t = sup.temp_file().await?;
/// let done: tokio_custodian::EmergencyCleanup = sup.emergency_cleanup();
/// assert_eq!((done.released, done.failed, done.temp_root_removed, done.unfinished), (1, 0, true, false));
/// # Ok(()) }
/// ```
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

/// Sweeps the registry: releases every registered entry with `reclaim_now`, newest
/// first, by [`ReleasePath::Shutdown`].
fn sweep_now(registry: &Registry, records: &Records, progress: &Progress) {
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

/// Emergency clean-up on the calling thread (`emergency_cleanup()`).
pub(crate) fn run(inner: &Inner) -> EmergencyCleanup {
    refuse_all(inner);
    let progress = Progress::default();
    sweep_now(&inner.registry, &inner.records, &progress);
    end(inner, &progress, false)
}

/// Emergency clean-up from a panic hook: the thread that panicked may hold a lock a
/// clean-up needs (a decoder's, a file slot's), so the releases run on a thread of
/// their own and the hook waits for them at most [`HOOK_BUDGET`]. The temp root is
/// removed either way (through its fd; no lock involved).
fn from_hook(inner: &Arc<Inner>) -> EmergencyCleanup {
    refuse_all(inner);
    let progress = Arc::new(Progress::default());
    let (tx, rx) = std::sync::mpsc::channel();
    let (me, p) = (inner.clone(), progress.clone());
    let spawned = std::thread::Builder::new()
        .name("custodian-emergency".into())
        .spawn(move || {
            sweep_now(&me.registry, &me.records, &p);
            let _ = tx.send(());
        });
    let unfinished = match spawned {
        Ok(_) => rx.recv_timeout(HOOK_BUDGET).is_err(),
        // No thread to be had: do it here, the best that is left.
        Err(_) => {
            sweep_now(&inner.registry, &inner.records, &progress);
            false
        }
    };
    if unfinished {
        tracing::warn!(budget = ?HOOK_BUDGET, "emergency clean-up: releases still running when the panic hook's budget ran out");
    }
    end(inner, &progress, unfinished)
}

fn refuse_all(inner: &Inner) {
    inner.begin_shutdown();
    // Relaxed: `forced` is a report flag; the tokens publish the cancellation.
    inner.forced.store(true, Ordering::Relaxed);
}

/// Cancels after releasing: a scope woken by the cancellation would drop its guards
/// on another thread, and a dropped child guard only sends SIGTERM inline, leaving
/// the SIGKILL to a task that an abort right after this never runs.
fn end(inner: &Inner, progress: &Progress, unfinished: bool) -> EmergencyCleanup {
    inner.root_scope.raise(CancelReason::ForcedShutdown);
    inner.cut.cancel();
    let mut out = EmergencyCleanup {
        released: progress.released.load(Ordering::Relaxed),
        failed: progress.failed.load(Ordering::Relaxed),
        temp_root_removed: false,
        unfinished,
    };
    match inner.remove_temp_root() {
        Some(Ok(())) => out.temp_root_removed = true,
        Some(Err(err)) => {
            tracing::warn!(%err, "could not remove the temp root");
            keep_journal(inner);
        }
        None => {}
    }
    // The cgroup tier: the children's cgroups went with their releases.
    if let Err(err) = inner.containment.remove() {
        tracing::warn!(%err, "could not remove the supervisor's cgroup");
    }
    inner.done.cancel();
    out
}

/// The temp root could not be removed: its journal stays when the supervisor is
/// dropped, so that the next sweep retries once this process is gone.
pub(crate) fn keep_journal(inner: &Inner) {
    if let Some(j) = &inner.journal {
        j.keep();
    }
}

/// The last handle is gone without `shutdown()`: release what is left. The urgent,
/// constant-time part runs here (`Reclaim::reclaim_urgent`: a child's SIGKILL to its
/// group), because the process may exit right after this drop; the rest (the wait and
/// reap, recursive removals, the temp root) goes to the supervisor's blocking pool, so
/// that the dropping thread, often a runtime worker, does not block; if the runtime is
/// gone, the pool drops the job unrun and it runs here instead. A process that exits
/// before the pool runs it leaves its temp root to the next start's reaper.
pub(crate) fn on_last_drop(inner: &mut Inner) {
    refuse_all(inner);
    inner.root_scope.raise(CancelReason::ForcedShutdown);
    inner.cut.cancel();
    inner.done.cancel();
    for e in inner.registry.map.iter() {
        // Constant work under a shard's read lock; it must not touch the registry.
        let urgent = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            e.reclaim.reclaim_urgent();
        }));
        if urgent.is_err() {
            tracing::warn!(id = e.key().get(), "reclaim_urgent panicked");
        }
    }
    let registry = std::mem::take(&mut inner.registry);
    let records = inner.records.clone();
    let root = inner.take_temp_root();
    // The cgroup tier: a forgotten guard may hold it past this drop; removed explicitly.
    let cgroup = inner.containment.cgroup.clone();
    // The journal outlives the root it records: dropped (unlinked) by the job, after the
    // removal, so that a process killed before the job ends leaves both to the next sweep.
    let journal = inner.journal.take();
    let job = Deferred::new(move || {
        let progress = Progress::default();
        sweep_now(&registry, &records, &progress);
        if let Some(Err(err)) = root.map(|r| r.remove()) {
            tracing::warn!(%err, "could not remove the temp root");
            // Kept: the next sweep, once this process is gone, retries the removal.
            if let Some(j) = &journal {
                j.keep();
            }
        }
        if let Some(Err(err)) = cgroup.map(|c| c.remove()) {
            tracing::warn!(%err, "could not remove the supervisor's cgroup");
        }
        drop(journal);
        let released = progress.released.load(Ordering::Relaxed);
        if released > 0 {
            tracing::warn!(
                released,
                failed = progress.failed.load(Ordering::Relaxed),
                "supervisor dropped without shutdown: emergency clean-up ran"
            );
        }
    });
    drop(inner.handle.spawn_blocking(move || job.run()));
}

/// When the panic hook installed by [`Supervisor::install_panic_hook`](crate::Supervisor::install_panic_hook) cleans up.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
/// use tokio_custodian::PanicCleanup;
/// let sup = tokio_custodian::Supervisor::builder().start()?;
/// // A program that treats any panic as fatal: release everything on the first one.
/// sup.install_panic_hook(PanicCleanup::OnAnyPanic);
/// # sup.shutdown().await; Ok(()) }
/// ```
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

/// Installs the process-wide panic hook (see `Supervisor::install_panic_hook`).
pub(crate) fn install_panic_hook(inner: &Arc<Inner>, when: PanicCleanup) {
    let weak: Weak<Inner> = Arc::downgrade(inner);
    let active = match when {
        PanicCleanup::OnAbort => cfg!(panic = "abort"),
        PanicCleanup::OnAnyPanic => true,
    };
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if active && let Some(inner) = weak.upgrade() {
            let done = from_hook(&inner);
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
