//! A managed child's escapees under the child-subreaper opt-in: the descendants it left
//! adopted by this process (see `crate::reaper`), stopped when the child is released,
//! with the child's grace, whether or not the child itself was reaped already.

use std::io;
use std::sync::{Arc, RwLockReadGuard};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::reaper::Reaper;

/// What a child's release needs to stop what its descendants left adopted.
#[derive(Clone, Debug)]
pub(super) struct Escapees {
    pub(super) reaper: Arc<Reaper>,
    pub(super) seq: u64,
    pub(super) grace: Duration,
    /// The supervisor's `Inner::cut`: ends the grace when shutdown stops waiting.
    pub(super) cut: CancellationToken,
}

impl Escapees {
    /// SIGTERM, the grace, SIGKILL, the reaps, on the blocking pool (it scans `/proc`).
    ///
    /// Cancel safe in the sense that the stop runs to its end on the blocking pool.
    /// Until the `last` stop of the release ends, what is adopted from the child is the
    /// release's (with the child's grace), not a stray for the scan task (with its own).
    pub(super) async fn stop(&self, last: bool) -> io::Result<()> {
        let this = self.clone();
        let stopped = tokio::task::spawn_blocking(move || {
            let r = this
                .reaper
                .stop(Some(this.seq), this.grace, Some(&this.cut));
            if last {
                this.reaper.released(this.seq);
            }
            r
        })
        .await;
        // The blocking pool dropped it unrun (the runtime is going): strays from now on.
        if last || stopped.is_err() {
            self.reaper.released(self.seq);
        }
        stopped.map_err(io::Error::other)?
    }

    /// Emergency: SIGKILL, a brief wait, the reaps. Blocking, bounded.
    pub(super) fn kill_now(&self) -> io::Result<()> {
        let r = self.reaper.kill_now(Some(self.seq));
        self.reaper.released(self.seq);
        r
    }

    /// SIGKILL to what is adopted now (constant work per process).
    pub(super) fn kill_urgent(&self) {
        self.reaper.kill_urgent(self.seq);
    }
}

/// Puts the supervisor's one owner marker (`sys::marker`) in `cmd`'s environment, when
/// it has a crash journal or the child-subreaper opt-in (recovery and the subreaper find
/// descendants by it); under the opt-in, also numbers the child for adoption.
///
/// The cost: any environment change makes std copy the whole environment into a new
/// `envp` at every spawn (about 2k instructions per variable, see `docs/benchmarks.md`);
/// one variable for both keeps it to one change. The cgroup tier's children go without
/// it, unless the subreaper or a watcher needs it: their cgroup proves descent to
/// recovery (`recovery/cgroup.rs`), and to the live release, which never read it. A
/// watcher keeps it: the journal's record of the cgroup is the watcher's only other way
/// to it, and the journal can be removed under the owner (`recovery/unjournalled.rs`).
pub(super) fn mark(
    inner: &crate::inner::Inner,
    cmd: &mut tokio::process::Command,
    grace: Duration,
) -> Option<Adopting> {
    if let Some(r) = &inner.reaper {
        return Some(Adopting::new(r, cmd, grace));
    }
    if let Some(j) = &inner.journal {
        if inner.containment.cgroup.is_none() || inner.watcher.is_some() {
            cmd.env(crate::sys::marker::VAR, j.mark().next().1);
        } else {
            drop_inherited(cmd);
        }
    }
    None
}

/// Keeps a marker this process inherited (it was itself a journalled owner's child) out
/// of a child that gets none of its own: with it, the child would pass for that other
/// owner's descendant, and its sweep (run by this process, or by anyone once that owner
/// died) would stop the child (tests/review_cg4_sweeper_descendants.rs). Only then is the
/// environment changed, so the common spawn stays on the copy-free path.
fn drop_inherited(cmd: &mut tokio::process::Command) {
    for var in [crate::sys::marker::VAR, crate::sys::marker::LEGACY_VAR] {
        if std::env::var_os(var).is_some() {
            cmd.env_remove(var);
        }
    }
}

/// The opt-in's part of one spawn: the child's number and marker, set before the fork.
pub(super) struct Adopting {
    reaper: Arc<Reaper>,
    seq: u64,
}

impl Adopting {
    /// Numbers the child and puts the marker in its environment.
    pub(super) fn new(
        reaper: &Arc<Reaper>,
        cmd: &mut tokio::process::Command,
        grace: Duration,
    ) -> Self {
        let (seq, marker) = reaper.marker(grace);
        cmd.env(crate::sys::marker::VAR, marker);
        Adopting {
            reaper: reaper.clone(),
            seq,
        }
    }

    /// Held from before the fork until [`spawned`](Self::spawned): a scan never takes
    /// the new child for an adopted one.
    pub(super) fn gate(&self) -> RwLockReadGuard<'_, ()> {
        self.reaper.spawn_gate()
    }

    /// The child was spawned as `pid` (unreaped).
    pub(super) fn spawned(&self, pid: u32) {
        self.reaper.managed(pid, self.seq);
    }

    /// The spawn failed: nothing will be adopted from this number.
    pub(super) fn failed(&self) {
        self.reaper.released(self.seq);
    }

    /// A child recorded by [`spawned`](Self::spawned) was reaped outside `ChildCore`.
    pub(super) fn reaped(&self, pid: u32) {
        self.reaper.managed_reaped(pid);
    }

    /// The reaper, for the child's core (told of its reap).
    pub(super) fn reaper(&self) -> std::sync::Weak<Reaper> {
        Arc::downgrade(&self.reaper)
    }

    /// What the child's release stops.
    pub(super) fn escapees(self, grace: Duration, cut: CancellationToken) -> Escapees {
        Escapees {
            reaper: self.reaper,
            seq: self.seq,
            grace,
            cut,
        }
    }
}
