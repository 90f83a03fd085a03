//! The supervisor's quotas (layer 4): which rules count each kind, and taking their
//! permits, waiting or not.
//!
//! Invariants:
//! - permits are taken before the resource is created (waiting acquisitions) or before
//!   its entry is inserted (the others), and are held by the entry (`Permits`) until
//!   its release has finished: never returned twice, never kept after;
//! - a waiting acquisition holds no permit while it waits (see `Quotas::take`), so that
//!   it never keeps room that a holder of what it waits for needs;
//! - a waiting acquisition dropped at any point returns what it took (owned permits),
//!   and counts itself out of `waiting`;
//! - without quotas, `Inner::quotas` is `None` and an acquisition pays one branch.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Operation};
use crate::kind::ResourceKind;
use crate::quota::{Quota, QuotaOn, QuotaUsage};
use crate::registry::{ByteCharge, Permits, Rule};

pub(crate) struct Quotas {
    rules: Vec<Arc<Rule>>,
    /// For each kind, the rules that count it and what one resource costs in each.
    by_kind: [Vec<(usize, u32)>; ResourceKind::COUNT],
    /// The temp bytes rule, charged by temp files' writes.
    bytes: Option<Arc<Rule>>,
}

impl Quotas {
    /// `None` without quotas: the fast path.
    pub(crate) fn new(quotas: &[Quota]) -> Option<Arc<Quotas>> {
        if quotas.is_empty() {
            return None;
        }
        let rules: Vec<Arc<Rule>> = quotas.iter().map(|q| Arc::new(Rule::new(*q))).collect();
        let by_kind = ResourceKind::ALL.map(|kind| {
            rules
                .iter()
                .enumerate()
                .filter_map(|(i, r)| Some((i, r.quota.cost(kind))).filter(|(_, c)| *c > 0))
                .collect()
        });
        let bytes = rules
            .iter()
            .find(|r| r.quota.on() == QuotaOn::TempBytes)
            .cloned();
        Some(Arc::new(Quotas {
            rules,
            by_kind,
            bytes,
        }))
    }

    /// Whether acquiring a resource of `kind` takes anything.
    pub(crate) fn applies(&self, kind: ResourceKind) -> bool {
        !self.by_kind[kind.index()].is_empty()
            || (kind == ResourceKind::TempFile && self.bytes.is_some())
    }

    fn empty_permits(&self, kind: ResourceKind) -> Permits {
        Permits {
            counts: Vec::new(),
            bytes: (kind == ResourceKind::TempFile)
                .then(|| self.bytes.clone().map(ByteCharge::new))
                .flatten(),
        }
    }

    fn refused(&self, rule: &Rule, op: Operation) -> Error {
        // Relaxed: a counter.
        rule.refused.fetch_add(1, Ordering::Relaxed);
        Error::QuotaExceeded {
            op,
            quota: rule.quota,
        }
    }

    /// Takes `kind`'s permits now, or refuses with the first quota that has no room.
    pub(crate) fn try_take(&self, kind: ResourceKind, op: Operation) -> Result<Permits, Error> {
        self.take_now(kind)
            .map_err(|i| self.refused(&self.rules[i], op))
    }

    /// Takes `kind`'s permits now if every quota has room, counting nothing: the fast
    /// path of a waiting acquisition.
    pub(crate) fn take_if_room(&self, kind: ResourceKind) -> Option<Permits> {
        self.take_now(kind).ok()
    }

    /// `Err(i)`: rule `i` had no room (what was taken returns as it drops).
    fn take_now(&self, kind: ResourceKind) -> Result<Permits, usize> {
        self.take_now_with(kind, None)
    }

    /// As `take_now`, with rule `got.0`'s permit already in hand (a waiting acquisition
    /// that was just served by that rule's queue).
    fn take_now_with(
        &self,
        kind: ResourceKind,
        mut got: Option<(usize, OwnedSemaphorePermit)>,
    ) -> Result<Permits, usize> {
        let rules = &self.by_kind[kind.index()];
        let mut permits = self.empty_permits(kind);
        permits.counts.reserve_exact(rules.len());
        for &(i, cost) in rules {
            let p = match got.take_if(|(j, _)| *j == i) {
                Some((_, p)) => p,
                None => (self.rules[i].sem.clone())
                    .try_acquire_many_owned(cost)
                    .map_err(|_| i)?,
            };
            permits.counts.push(p);
        }
        Ok(permits)
    }

    /// Takes `kind`'s permits, waiting for room (first come, first served in each
    /// quota), until `stop` fires (shutdown cancelling the root: `ShuttingDown`). A
    /// resource that can never fit (its cost above the limit) is refused at once.
    ///
    /// It holds nothing while it waits: it waits in the queue of one quota that has no
    /// room, then takes the others at once or gives that one back and waits again. A
    /// waiter holding one quota's room while it waits for another's would starve a
    /// holder of the second that needs the first (a deadlock).
    pub(crate) fn take(
        self: &Arc<Self>,
        kind: ResourceKind,
        op: Operation,
        stop: CancellationToken,
    ) -> impl Future<Output = Result<Permits, Error>> + Send + 'static {
        let this = self.clone();
        async move {
            let rules = &this.by_kind[kind.index()];
            if let Some(&(i, _)) = rules
                .iter()
                .find(|&&(i, cost)| u64::from(cost) > this.rules[i].quota.limit())
            {
                return Err(this.refused(&this.rules[i], op));
            }
            let mut got = None;
            let mut waited = false;
            loop {
                let i = match this.take_now_with(kind, got.take()) {
                    Ok(p) => return Ok(p),
                    Err(i) => i,
                };
                let (rule, cost) = (&this.rules[i], this.rules[i].quota.cost(kind));
                let _waiting = Waiting::new(rule, !std::mem::replace(&mut waited, true));
                let p = tokio::select! {
                    p = rule.sem.clone().acquire_many_owned(cost) => p.map_err(|_| Error::ShuttingDown { op })?,
                    () = stop.cancelled() => return Err(Error::ShuttingDown { op }),
                };
                got = Some((i, p));
            }
        }
    }

    /// What a resource of `from` holds, as a resource of `to` (a temp file persisted as
    /// a managed file, the same open fd): the shares of rules that count both at the
    /// same cost carry over (never handed to a waiter in between), `from`'s others
    /// return, and those only `to` needs are taken now, or refused.
    pub(crate) fn convert(
        &self,
        mut held: Permits,
        from: ResourceKind,
        to: ResourceKind,
        op: Operation,
    ) -> Result<Permits, Error> {
        let counts = std::mem::take(&mut held.counts);
        let mut old: Vec<_> = self.by_kind[from.index()].iter().zip(counts).collect();
        let mut out = self.empty_permits(to);
        for &(i, cost) in &self.by_kind[to.index()] {
            let p = match old.iter().position(|(rc, _)| **rc == (i, cost)) {
                Some(k) => old.swap_remove(k).1,
                None => (self.rules[i].sem.clone())
                    .try_acquire_many_owned(cost)
                    .map_err(|_| self.refused(&self.rules[i], op))?,
            };
            out.counts.push(p);
        }
        Ok(out)
    }

    pub(crate) fn usage(&self) -> Vec<QuotaUsage> {
        self.rules.iter().map(|r| r.usage()).collect()
    }
}

/// Counts one acquisition in `waiting` while it waits (and in `waited` if `first`: an
/// acquisition that waits again, in another quota's queue, counts once).
struct Waiting<'a>(&'a Rule);

impl<'a> Waiting<'a> {
    fn new(rule: &'a Rule, first: bool) -> Self {
        // Relaxed: counters.
        if first {
            rule.waited.fetch_add(1, Ordering::Relaxed);
        }
        rule.waiting.fetch_add(1, Ordering::Relaxed);
        Waiting(rule)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}
