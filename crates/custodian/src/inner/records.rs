//! Counters and the bounded leak and failure records.

use crate::leak::{FailureRecord, LeakRecord};
use crate::stats::Stats;
use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};

use super::pending::PendingInfo;

/// How many leak and failure records are kept (the oldest are dropped first).
const RECORDS_KEPT: usize = 1024;

/// Counters and records, shared with background clean-ups (which must not keep the
/// whole supervisor alive).
#[derive(Default)]
pub(crate) struct Records {
    pub(crate) stats: Stats,
    pub(super) leaks: Mutex<VecDeque<LeakRecord>>,
    pub(super) failures: Mutex<VecDeque<FailureRecord>>,
}

impl Records {
    pub(super) fn record_failure(&self, p: &PendingInfo, error: &std::io::Error) {
        self.stats.failed(p.kind);
        tracing::warn!(id = p.id.get(), kind = p.kind.as_str(), label = &*p.label, path = ?p.path, %error, "clean-up failed");
        push_bounded(
            &self.failures,
            FailureRecord {
                id: p.id,
                kind: p.kind,
                label: p.label.to_string(),
                path: p.path.clone(),
                error: error.to_string(),
            },
        );
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
