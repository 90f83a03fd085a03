//! What the supervisor's state shows without changing it: live resources, the leak and
//! failure records, the retrying clean-ups, and the leak scanner's check.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::id::ResourceId;
use crate::leak::{FailureRecord, LeakRecord, LiveResource, PendingCleanup, Record};
use crate::registry::{Born, Entry, ScopeShared};

use super::Inner;
use super::records::lock;

impl Inner {
    /// Live resources, in acquisition order.
    pub(crate) fn live(&self) -> Vec<LiveResource> {
        let mut listing = Listing::new();
        let mut v: Vec<Record> = self
            .registry
            .map
            .iter()
            .map(|e| live_resource(*e.key(), e.value(), &mut listing))
            .collect();
        // Ids are unique: the unstable sort gives the same order, without the stable
        // sort's buffer and moves.
        v.sort_unstable_by_key(Record::id);
        LiveResource::all(v)
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
        let mut listing = Listing::new();
        for e in self.registry.map.iter() {
            let Some(limit) = self.config.leak_after[e.kind.index()] else {
                continue;
            };
            // Relaxed: the flag only deduplicates warnings.
            if e.born.elapsed() >= limit && !e.warned.swap(true, Ordering::Relaxed) {
                old.push(live_resource(*e.key(), e.value(), &mut listing));
            }
        }
        // Logged after the iteration: no registry lock is held while the subscriber runs.
        for r in old {
            tracing::warn!(id = r.id().get(), kind = r.kind().as_str(), label = r.label(), site = %r.site(), age = ?r.age(), "resource alive longer than its leak threshold");
        }
    }
}

/// A record of the entry `id`, `e` (its label and path copied: it stays registered).
pub(super) fn live_resource(id: ResourceId, e: &Entry, l: &mut Listing) -> Record {
    Record::new(
        id,
        e.kind,
        e.label.clone(),
        l.scope_name(&e.scope),
        e.site,
        l.age(e.born),
        e.path.as_deref().map(Into::into),
    )
}

/// What the records of one listing (or of one shutdown's leftovers) share: one reading
/// of the clock for their ages, and each scope's name made an `Arc<str>` once, however
/// many of its resources are listed.
pub(crate) struct Listing {
    now: Born,
    /// By the scope's address; the `Arc` held here keeps the address from being reused.
    seen: HashMap<usize, (Arc<ScopeShared>, Arc<str>)>,
    /// The last scope asked about, and its name: runs of one scope skip the hash.
    last: Option<(usize, Arc<str>)>,
}

impl Listing {
    pub(crate) fn new() -> Listing {
        Listing {
            now: Born::now(),
            seen: HashMap::new(),
            last: None,
        }
    }

    /// An empty listing at the same instant: shutdown's chunks released on several
    /// threads keep one reading of the clock for all their records.
    pub(crate) fn fork(&self) -> Listing {
        Listing {
            now: self.now,
            seen: HashMap::new(),
            last: None,
        }
    }

    /// How long before this listing's instant `born` was.
    pub(crate) fn age(&self, born: Born) -> std::time::Duration {
        born.age_at(self.now)
    }

    pub(crate) fn scope_name(&mut self, scope: &Arc<ScopeShared>) -> Arc<str> {
        let key = Arc::as_ptr(scope) as usize;
        if let Some((k, name)) = &self.last
            && *k == key
        {
            return name.clone();
        }
        let (_, name) = self
            .seen
            .entry(key)
            .or_insert_with(|| (scope.clone(), Arc::from(&*scope.name)));
        self.last = Some((key, name.clone()));
        name.clone()
    }
}
