//! The release decision: removing a resource's registry entry, in each of its forms
//! (a guard's drop, a scope's sweep, shutdown with its report's records, the emergency
//! path without a runtime). Exactly one caller removes an entry, and that caller alone
//! retires it and runs its reclaim (see the invariants in the parent module).

use std::sync::Arc;

use crate::id::ResourceId;
use crate::kind::ReleasePath;
use crate::leak::{LeakRecord, LiveResource, Record};
use crate::registry::{Cleanup, Entry, Permits, Reclaim, Registry, ScopeShared, hold_until_done};

use super::{Inner, Listing, Records, Released, ReleasedInfo};

impl Inner {
    /// Releases `id` if it is still registered. `path` is `None` for a guard drop, whose
    /// path is derived from the state of the scope and thread.
    pub(crate) fn release(&self, id: ResourceId, path: Option<ReleasePath>) -> Option<Released> {
        let (_, entry) = self.registry.remove(&id)?;
        let path = path.unwrap_or_else(|| entry.scope.drop_path());
        Some(self.retire_and_reclaim(id, entry, path))
    }

    /// Releases `id` if it is still registered *to `scope`* (a scope sweep must not
    /// release a resource that was transferred elsewhere).
    pub(crate) fn release_in(
        &self,
        id: ResourceId,
        scope: &Arc<ScopeShared>,
        path: ReleasePath,
    ) -> Option<Released> {
        let (_, entry) = self
            .registry
            .remove_if(&id, |e| Arc::ptr_eq(&e.scope, scope))?;
        Some(self.retire_and_reclaim(id, entry, path))
    }

    /// Releases `id`, if still registered, for its guard's drop: the path follows the
    /// state of its scope and thread, and the clean-up runs in the background unless
    /// it is done inline (then nothing is handed on: no `Released` is built).
    #[inline]
    pub(crate) fn release_dropped(&self, id: ResourceId) {
        // Read in place and then taken apart, never bound whole: a binding of the
        // entry was one more copy of its 96 bytes on every drop.
        let removed = self.registry.remove(&id);
        let Some((_, entry)) = &removed else {
            return;
        };
        let path = entry.scope.drop_path();
        if entry.permits.is_some() {
            let Some((_, entry)) = removed else { return };
            return self
                .retire_and_reclaim(id, entry, path)
                .clean_up_in_background(self);
        }
        self.records.retire(id, entry, path);
        let Some((
            _,
            Entry {
                kind,
                label,
                scope,
                path: res_path,
                reclaim,
                ..
            },
        )) = removed
        else {
            return;
        };
        let cleanup = reclaim.reclaim();
        if matches!(cleanup, Cleanup::Done(Ok(()))) {
            // Nothing in it to drop: forgotten, the compiler emits no call of its drop
            // glue (a dozen instructions of every guard's drop).
            std::mem::forget(cleanup);
            return;
        }
        Released {
            id,
            kind,
            label,
            path: res_path.map(Into::into),
            scope,
            cleanup: Some(cleanup),
        }
        .clean_up_in_background(self);
    }

    #[inline]
    fn retire_and_reclaim(&self, id: ResourceId, entry: Entry, path: ReleasePath) -> Released {
        self.records.retire(id, &entry, path);
        let Entry {
            kind,
            label,
            scope,
            path: res_path,
            reclaim,
            permits,
            ..
        } = entry;
        let cleanup = if path == ReleasePath::Detached {
            // The guard keeps the resource; dropping the reclaim data only drops shared
            // handles. It is no longer ours: its quota permits return now.
            drop(reclaim);
            drop(permits);
            None
        } else {
            Some(hold_until_done(reclaim.reclaim(), permits))
        };
        Released {
            id,
            kind,
            label,
            path: res_path.map(Into::into),
            scope,
            cleanup,
        }
    }

    /// Releases `id` for shutdown, if still registered, with the path its scope would
    /// give it now (see `ScopeShared::shutdown_path`); its record for the report is
    /// pushed onto `records`: one per leftover, the entry's label and path moved into
    /// it (a leak's note, shared, is left to
    /// [`note_shutdown_leaks`](Self::note_shutdown_leaks)). Returns the clean-up left
    /// to run, if any (none once a reclaim is done and fine: a temp file's unlink, an
    /// fd's close).
    pub(crate) fn release_for_shutdown(
        &self,
        id: ResourceId,
        listing: &mut Listing,
        records: &mut Vec<Record>,
    ) -> Option<(Option<Released>, ReleasePath)> {
        let (taken, record) = self.take_recorded(id, listing, records)?;
        let cleanup = hold_until_done(taken.reclaim.reclaim(), taken.permits);
        if matches!(cleanup, Cleanup::Done(Ok(()))) {
            return Some((None, taken.path));
        }
        // Copies only for what may fail or is still running: its failure names them.
        let released = Released {
            id,
            kind: record.kind(),
            label: record.label().into(),
            path: record.path().map(Into::into),
            scope: taken.scope,
            cleanup: Some(cleanup),
        };
        Some((Some(released), taken.path))
    }

    /// Notes shutdown's released leftovers that were leaks (`released`, in release
    /// order), sharing their records, under one lock: only the newest of the bounded
    /// leak records can stay.
    pub(crate) fn note_shutdown_leaks(&self, released: &[(LiveResource, ReleasePath)]) {
        self.records.note_leaks(
            released
                .iter()
                .filter(|(_, path)| path.is_leak())
                .map(|(r, path)| LeakRecord::new(r.clone(), *path)),
        );
    }

    /// Releases `id`, if still registered, synchronously with [`Reclaim::reclaim_now`]
    /// by the path its scope would give it now, its record pushed onto `records` as in
    /// [`release_for_shutdown`](Self::release_for_shutdown) (a forced shutdown).
    /// Blocking: never call it on a worker thread of the runtime.
    pub(crate) fn release_now_recorded(
        &self,
        id: ResourceId,
        listing: &mut Listing,
        records: &mut Vec<Record>,
    ) -> Option<ReleasePath> {
        let (taken, record) = self.take_recorded(id, listing, records)?;
        if let Err(e) = reclaim_now_caught(taken.reclaim) {
            let info = ReleasedInfo {
                id,
                kind: record.kind(),
                label: record.label().into(),
                path: record.path().map(Into::into),
            };
            self.records.record_failure(&info, &e);
        }
        // The permits go back once the resource is gone.
        drop(taken.permits);
        Some(taken.path)
    }

    /// The part of shutdown's two releases before the reclaim: removes `id`'s entry, if
    /// still registered, pushes its record onto `records` (label and path moved in) and
    /// retires it by the path its scope would give it now.
    fn take_recorded<'r>(
        &self,
        id: ResourceId,
        listing: &mut Listing,
        records: &'r mut Vec<Record>,
    ) -> Option<(Taken, &'r Record)> {
        let (_, entry) = self.registry.remove(&id)?;
        let path = entry.scope.shutdown_path();
        let Entry {
            kind,
            label,
            scope,
            site,
            born,
            path: res_path,
            reclaim,
            permits,
            ..
        } = entry;
        let (name, age) = (listing.scope_name(&scope), listing.age(born));
        records.push(Record::new(
            id,
            kind,
            label,
            name,
            site,
            age,
            res_path.map(Into::into),
        ));
        let record = records.last()?;
        self.records.retire_recorded(record, &scope, path);
        let taken = Taken {
            scope,
            reclaim,
            permits,
            path,
        };
        Some((taken, record))
    }
}

/// What [`Inner::take_recorded`] leaves to release: the entry's parts its record did
/// not take, and its release path.
struct Taken {
    scope: Arc<ScopeShared>,
    reclaim: Box<dyn Reclaim>,
    permits: Option<Box<Permits>>,
    path: ReleasePath,
}

/// [`Reclaim::reclaim_now`], a panic turned into an error: the trait is public, and a
/// panicking one must not abandon the releases after it (it is recorded as a failure,
/// and the sweep goes on).
fn reclaim_now_caught(reclaim: Box<dyn Reclaim>) -> std::io::Result<()> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| reclaim.reclaim_now())).unwrap_or_else(
        |p| {
            Err(std::io::Error::other(format!(
                "the emergency release panicked: {}",
                crate::error::panic_message(p)
            )))
        },
    )
}

/// [`Inner::release_now`] on the parts it needs, for the emergency path of a supervisor
/// being dropped (which moves them out of `Inner`). `true` if the reclaim succeeded.
pub(crate) fn release_now(
    registry: &Registry,
    records: &Records,
    id: ResourceId,
    path: Option<ReleasePath>,
) -> Option<(bool, ReleasePath)> {
    let (_, entry) = registry.remove(&id)?;
    let path = path.unwrap_or_else(|| entry.scope.shutdown_path());
    records.retire(id, &entry, path);
    let Entry {
        kind,
        label,
        path: res_path,
        reclaim,
        // Returned once the resource is gone, below.
        permits: _permits,
        ..
    } = entry;
    match reclaim_now_caught(reclaim) {
        Ok(()) => Some((true, path)),
        Err(e) => {
            let info = ReleasedInfo {
                id,
                kind,
                label,
                path: res_path.map(Into::into),
            };
            records.record_failure(&info, &e);
            Some((false, path))
        }
    }
}
