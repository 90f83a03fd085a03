//! What the supervisor's state shows without changing it: live resources, the leak and
//! failure records, the retrying clean-ups, and the leak scanner's check.

use std::sync::atomic::Ordering;

use crate::id::ResourceId;
use crate::leak::{FailureRecord, LeakRecord, LiveResource, PendingCleanup};
use crate::registry::Entry;

use super::Inner;
use super::records::lock;

impl Inner {
    /// Live resources, in acquisition order.
    pub(crate) fn live(&self) -> Vec<LiveResource> {
        let mut v: Vec<LiveResource> = self
            .registry
            .map
            .iter()
            .map(|e| live_resource(*e.key(), e.value()))
            .collect();
        // Ids are unique: the unstable sort gives the same order, without the stable
        // sort's buffer and moves (shutdown snapshots every live resource).
        v.sort_unstable_by_key(|r| r.id);
        v
    }

    pub(crate) fn leak_records(&self) -> Vec<LeakRecord> {
        lock(&self.records.leaks)
            .iter()
            .map(|n| n.record())
            .collect()
    }

    pub(crate) fn failure_records(&self) -> Vec<FailureRecord> {
        lock(&self.records.failures).iter().cloned().collect()
    }

    pub(crate) fn pending_cleanups(&self) -> Vec<PendingCleanup> {
        self.records.retrying()
    }

    /// Warns once about every resource older than its kind's threshold.
    pub(crate) fn scan_leaks(&self) {
        let mut old = Vec::new();
        for e in self.registry.map.iter() {
            let Some(limit) = self.config.leak_after[e.kind.index()] else {
                continue;
            };
            // Relaxed: the flag only deduplicates warnings.
            if e.born.elapsed() >= limit && !e.warned.swap(true, Ordering::Relaxed) {
                old.push(live_resource(*e.key(), e.value()));
            }
        }
        // Logged after the iteration: no registry lock is held while the subscriber runs.
        for r in old {
            tracing::warn!(id = r.id.get(), kind = r.kind.as_str(), label = %r.label, site = %r.site, age = ?r.age, "resource alive longer than its leak threshold");
        }
    }
}

pub(super) fn live_resource(id: ResourceId, e: &Entry) -> LiveResource {
    LiveResource {
        id,
        kind: e.kind,
        // `String::from(&str)`: `to_string` on a `Box<str>` would go through `Display`.
        label: String::from(&*e.label),
        scope: String::from(&*e.scope.name),
        site: e.site.into(),
        age: e.born.elapsed(),
        path: e.path.clone(),
    }
}
