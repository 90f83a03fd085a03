//! Counters and the bounded leak and failure records, and the clean-ups waiting for a
//! retry.

use crate::id::ResourceId;
use crate::kind::ReleasePath;
use crate::label::Label;
use crate::leak::{FailureRecord, LeakRecord, LiveResource, PendingCleanup, Record};
use crate::registry::scope_name::ScopeName;
use crate::registry::{Entry, ScopeShared};
use crate::stats::Stats;
use std::collections::{BTreeMap, VecDeque};
use std::panic::Location;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::clean_up::ReleasedInfo;

/// How many leak and failure records are kept (the oldest are dropped first).
const RECORDS_KEPT: usize = 1024;

/// Counters and records, shared with background clean-ups (which must not keep the
/// whole supervisor alive).
#[derive(Default)]
pub(crate) struct Records {
    pub(crate) stats: Stats,
    pub(super) leaks: Mutex<VecDeque<LeakNote>>,
    pub(super) failures: Mutex<VecDeque<FailureRecord>>,
    /// Clean-ups that failed transiently, with the time of their first failure.
    retrying: Mutex<BTreeMap<ResourceId, (PendingCleanup, Instant)>>,
}

impl Records {
    pub(super) fn record_failure(&self, p: &ReleasedInfo, error: &std::io::Error) {
        self.stats.failed(p.kind);
        tracing::warn!(id = p.id.get(), kind = p.kind.as_str(), label = &*p.label, path = ?p.path, %error, "clean-up failed");
        push_bounded(
            &self.failures,
            FailureRecord {
                id: p.id,
                kind: p.kind,
                label: String::from(&*p.label),
                path: p.path.clone(),
                error: error.to_string(),
            },
        );
    }

    /// A clean-up failed transiently (`attempts` so far): listed as released until
    /// [`end_retry`](Self::end_retry).
    pub(super) fn retry(&self, p: &ReleasedInfo, error: &std::io::Error, attempts: u32) {
        let mut map = lock(&self.retrying);
        let first = !map.contains_key(&p.id);
        if first {
            self.stats.retrying(p.kind, true);
            tracing::warn!(id = p.id.get(), kind = p.kind.as_str(), label = &*p.label, path = ?p.path, %error, "clean-up failed; retrying");
        }
        let since = map.get(&p.id).map_or_else(Instant::now, |(_, t)| *t);
        let record = PendingCleanup {
            id: p.id,
            kind: p.kind,
            label: String::from(&*p.label),
            path: p.path.clone(),
            error: error.to_string(),
            error_kind: error.kind().to_string(),
            attempts,
            failing_for: Duration::ZERO,
        };
        map.insert(p.id, (record, since));
    }

    /// A retried clean-up ended: it succeeded, or failed for good with `error`.
    pub(super) fn end_retry(
        &self,
        p: &ReleasedInfo,
        attempts: u32,
        error: Option<&std::io::Error>,
    ) {
        if lock(&self.retrying).remove(&p.id).is_some() {
            self.stats.retrying(p.kind, false);
        }
        match error {
            None => {
                tracing::info!(
                    id = p.id.get(),
                    kind = p.kind.as_str(),
                    label = &*p.label,
                    attempts,
                    "clean-up succeeded on a retry"
                );
            }
            Some(e) => {
                let e = std::io::Error::new(
                    e.kind(),
                    format!("{e} (gave up after {attempts} attempts)"),
                );
                self.record_failure(p, &e);
            }
        }
    }

    /// The bookkeeping of a release: stats, scope count, leak record, tracing.
    /// Inlined into the releases: a guard's drop pays no call frame for it; a leak's
    /// record is out of line.
    #[inline(always)]
    pub(super) fn retire(&self, id: ResourceId, entry: &Entry, path: ReleasePath) {
        let kind = entry.kind;
        self.stats.released(kind, path);
        entry.scope.live.fetch_sub(1, Ordering::Relaxed);
        if path.is_leak() {
            self.note_leak(id, entry, path);
        } else {
            tracing::debug!(
                id = id.get(),
                kind = kind.as_str(),
                label = &*entry.label,
                by = path.as_str(),
                "released"
            );
        }
    }

    /// A leaked resource was reclaimed: the warning and the bounded record.
    #[cold]
    #[inline(never)]
    fn note_leak(&self, id: ResourceId, entry: &Entry, path: ReleasePath) {
        let Entry {
            kind,
            label,
            scope,
            site,
            born,
            path: res_path,
            ..
        } = entry;
        let kind = *kind;
        tracing::warn!(id = id.get(), kind = kind.as_str(), label = &**label, site = %site, released_by = path.as_str(), "leaked resource reclaimed");
        push_bounded(
            &self.leaks,
            LeakNote::Owned {
                id,
                kind,
                label: label.clone(),
                scope: ScopeName::new(&scope.name),
                site,
                age: born.elapsed(),
                path: res_path.as_deref().map(PathBuf::from),
                released_by: path,
            },
        );
    }

    /// [`retire`](Self::retire) of a shutdown leftover whose `record` was made from its
    /// entry (label and path moved in); a leak's note, sharing that record, is left to
    /// [`note_leaks`](Self::note_leaks), once for all leftovers.
    pub(super) fn retire_recorded(&self, record: &Record, scope: &ScopeShared, path: ReleasePath) {
        let kind = record.kind();
        self.stats.released(kind, path);
        scope.live.fetch_sub(1, Ordering::Relaxed);
        if path.is_leak() {
            tracing::warn!(id = record.id().get(), kind = kind.as_str(), label = record.label(), site = %record.site(), released_by = path.as_str(), "leaked resource reclaimed");
        } else {
            tracing::debug!(
                id = record.id().get(),
                kind = kind.as_str(),
                label = record.label(),
                by = path.as_str(),
                "released"
            );
        }
    }

    /// Notes `leaks`, in release order, under one lock: only the newest
    /// [`RECORDS_KEPT`] are kept, so only they are taken.
    pub(super) fn note_leaks(&self, leaks: impl DoubleEndedIterator<Item = LeakRecord>) {
        let mut newest: Vec<LeakRecord> = leaks.rev().take(RECORDS_KEPT).collect();
        newest.reverse();
        let mut q = lock(&self.leaks);
        for r in newest {
            if q.len() == RECORDS_KEPT {
                q.pop_front();
            }
            q.push_back(LeakNote::Shared(r));
        }
    }

    pub(super) fn retrying(&self) -> Vec<PendingCleanup> {
        lock(&self.retrying)
            .values()
            .map(|(r, since)| PendingCleanup {
                failing_for: since.elapsed(),
                ..r.clone()
            })
            .collect()
    }
}

/// A leak as recorded at its release: what the public [`LeakRecord`] is made of, made
/// into one only when read (`Supervisor::leaked`, the shutdown report). Strings are
/// not built for records that are evicted unread (only the newest [`RECORDS_KEPT`] are
/// kept): the site stays a `&'static Location`, a short scope name stays inline.
/// Shutdown's leftovers share the record the report lists them with.
pub(super) enum LeakNote {
    Owned {
        id: ResourceId,
        kind: crate::kind::ResourceKind,
        label: Label,
        scope: ScopeName,
        site: &'static Location<'static>,
        age: Duration,
        path: Option<PathBuf>,
        released_by: ReleasePath,
    },
    Shared(LeakRecord),
}

impl LeakNote {
    pub(super) fn record(&self) -> LeakRecord {
        match self {
            LeakNote::Owned {
                id,
                kind,
                label,
                scope,
                site,
                age,
                path,
                released_by,
            } => LeakRecord::new(
                LiveResource::one(Record::new(
                    *id,
                    *kind,
                    label.clone(),
                    Arc::from(&**scope),
                    site,
                    *age,
                    path.clone(),
                )),
                *released_by,
            ),
            LeakNote::Shared(r) => r.clone(),
        }
    }
}

pub(super) fn push_bounded<T>(m: &Mutex<VecDeque<T>>, item: T) {
    let mut q = lock(m);
    if q.len() == RECORDS_KEPT {
        q.pop_front();
    }
    q.push_back(item);
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The protected data are plain records: a panic while holding the lock cannot leave
    // them inconsistent.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
