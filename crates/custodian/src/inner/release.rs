//! The release decision: removing a resource's registry entry, in each of its forms
//! (a guard's drop, a scope's sweep, shutdown with its report's records, the emergency
//! path without a runtime). Exactly one caller removes an entry, and that caller alone
//! retires it and runs its reclaim (see the invariants in the parent module).

use std::sync::Arc;

use crate::id::ResourceId;
use crate::kind::ReleasePath;
use crate::leak::{LeakRecord, LiveResource, Record};
use crate::registry::{Cleanup, Entry, Registry, ScopeShared, hold_until_done};

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
    pub(crate) fn release_dropped(&self, id: ResourceId) {
        let Some((_, entry)) = self.registry.remove(&id) else {
            return;
        };
        let path = entry.scope.drop_path();
        if entry.permits.is_some() {
            return self
                .retire_and_reclaim(id, entry, path)
                .clean_up_in_background(self);
        }
        self.records.retire(id, &entry, path);
        let Entry {
            kind,
            label,
            scope,
            path: res_path,
            reclaim,
            ..
        } = entry;
        match reclaim.reclaim() {
            Cleanup::Done(Ok(())) => {}
            cleanup => Released {
                id,
                kind,
                label,
                path: res_path,
                scope,
                cleanup: Some(cleanup),
            }
            .clean_up_in_background(self),
        }
    }

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
            path: res_path,
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
        let (_, mut entry) = self.registry.remove(&id)?;
        let path = entry.scope.shutdown_path();
        let permits = entry.permits.take();
        let Entry {
            kind,
            label,
            scope,
            site,
            born,
            path: res_path,
            reclaim,
            ..
        } = entry;
        let (name, age) = (listing.scope_name(&scope), listing.age(born));
        records.push(Record::new(id, kind, label, name, site, age, res_path));
        let record = records.last()?;
        self.records.retire_recorded(record, &scope, path);
        let cleanup = hold_until_done(reclaim.reclaim(), permits);
        if matches!(cleanup, Cleanup::Done(Ok(()))) {
            return Some((None, path));
        }
        // Copies only for what may fail or is still running: its failure names them.
        let released = Released {
            id,
            kind,
            label: record.label().into(),
            path: record.path().map(Into::into),
            scope,
            cleanup: Some(cleanup),
        };
        Some((Some(released), path))
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
        let (_, mut entry) = self.registry.remove(&id)?;
        let path = entry.scope.shutdown_path();
        // Returned once the resource is gone, at the end.
        let _permits = entry.permits.take();
        let Entry {
            kind,
            label,
            scope,
            site,
            born,
            path: res_path,
            reclaim,
            ..
        } = entry;
        let (name, age) = (listing.scope_name(&scope), listing.age(born));
        records.push(Record::new(id, kind, label, name, site, age, res_path));
        let record = records.last()?;
        self.records.retire_recorded(record, &scope, path);
        // A panicking `reclaim_now` (the trait is public) must not abandon the releases
        // after it: it is recorded as a failure, and the sweep goes on.
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| reclaim.reclaim_now()))
                .unwrap_or_else(|p| {
                    Err(std::io::Error::other(format!(
                        "the emergency release panicked: {}",
                        crate::error::panic_message(p)
                    )))
                });
        if let Err(e) = outcome {
            let released = Released {
                id,
                kind,
                label: record.label().into(),
                path: record.path().map(Into::into),
                scope,
                cleanup: None,
            };
            self.records.record_failure(&released.split().0, &e);
        }
        Some(path)
    }
}

/// [`Inner::release_now`] on the parts it needs, for the emergency path of a supervisor
/// being dropped (which moves them out of `Inner`).
pub(crate) fn release_now(
    registry: &Registry,
    records: &Records,
    id: ResourceId,
    path: Option<ReleasePath>,
) -> Option<(bool, ReleasePath)> {
    release_now_then(registry, records, id, path, |_, _| ()).map(|(ok, path, ())| (ok, path))
}

/// [`release_now`], also making `record(id, entry)` of the entry before it is retired.
fn release_now_then<R>(
    registry: &Registry,
    records: &Records,
    id: ResourceId,
    path: Option<ReleasePath>,
    record: impl FnOnce(ResourceId, &Entry) -> R,
) -> Option<(bool, ReleasePath, R)> {
    let (_, entry) = registry.remove(&id)?;
    let made = record(id, &entry);
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
    // A panicking `reclaim_now` (the trait is public) must not abandon the releases
    // after it: it is recorded as a failure, and the sweep goes on.
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| reclaim.reclaim_now()))
        .unwrap_or_else(|p| {
            Err(std::io::Error::other(format!(
                "the emergency release panicked: {}",
                crate::error::panic_message(p)
            )))
        });
    match outcome {
        Ok(()) => Some((true, path, made)),
        Err(e) => {
            let info = ReleasedInfo {
                id,
                kind,
                label,
                path: res_path,
            };
            records.record_failure(&info, &e);
            Some((false, path, made))
        }
    }
}
