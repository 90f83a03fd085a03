//! The supervisor's quotas (layer 4): which rules count each kind, and taking their
//! permits, waiting or not.
//!
//! Invariants:
//! - permits are taken before the resource is created (waiting acquisitions, and the
//!   fail-fast ones that create what holds fds: files, spawns, locks, atomic files) or
//!   before its entry is inserted (the others), and are held by the entry (`Permits`)
//!   until its release has finished: never returned twice, never kept after;
//! - what a resource costs in `Quota::fds` is what its code path holds at most (see
//!   `Quota::fds`); a spawn takes its transient fds too and returns them once forked;
//! - a waiting acquisition holds no permit while it waits (see `Quotas::take`), so that
//!   it never keeps room that a holder of what it waits for needs;
//! - a wait that would close a wait-for cycle (every holder of the room it waits for is
//!   itself waiting) is refused with `QuotaExceeded` (see `registry::ledger`);
//! - a waiting acquisition dropped at any point returns what it took (owned permits),
//!   and counts itself out of `waiting`; its scope's cancellation ends it at once;
//! - without quotas, `Inner::quotas` is `None` and an acquisition pays one branch.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Operation};
use crate::kind::ResourceKind;
use crate::quota::{Quota, QuotaOn, QuotaUsage};
use crate::registry::ledger::{YIELD, units};
use crate::registry::{ByteCharge, Ledger, OwnerKey, Permits, Rule, ScopeShared};

pub(crate) struct Quotas {
    rules: Vec<Arc<Rule>>,
    /// For each kind, the rules that count it and what one resource costs in each.
    by_kind: [Vec<(usize, u32)>; ResourceKind::COUNT],
    /// The temp bytes rule, charged by temp files' writes.
    bytes: Option<Arc<Rule>>,
    ledger: Arc<Ledger>,
}

/// What one acquisition needs: a resource of `kind`, holding `fds` file descriptors at
/// most (`None`: the kind's usual count, `Quota::fds_of`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Need {
    pub(crate) kind: ResourceKind,
    pub(crate) fds: Option<u32>,
}

impl From<ResourceKind> for Need {
    fn from(kind: ResourceKind) -> Need {
        Need { kind, fds: None }
    }
}

/// A wait ended by its scope's cancellation.
fn cancelled(scope: &ScopeShared) -> Error {
    Error::Cancelled {
        scope: scope.name.to_string(),
        reason: scope
            .reason()
            .unwrap_or(crate::kind::CancelReason::Requested),
    }
}

/// Whom an acquisition in `scope` is charged to (see `registry::ledger`).
pub(crate) fn owner(scope: &ScopeShared) -> OwnerKey {
    match scope.top_level_id() {
        Some(id) => OwnerKey::Scope(id),
        None => tokio::task::try_id().map_or(OwnerKey::Unscoped, OwnerKey::Task),
    }
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
            ledger: Ledger::new(rules.clone()),
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

    /// The rules that count `need` and what it costs in each.
    fn costs(&self, need: Need) -> impl Iterator<Item = (usize, u32)> + '_ {
        self.by_kind[need.kind.index()].iter().map(move |&(i, c)| {
            match (self.rules[i].quota.on(), need.fds) {
                (QuotaOn::Fds, Some(fds)) => (i, fds),
                _ => (i, c),
            }
        })
    }

    /// The index of the `fds` rule, if any.
    pub(crate) fn fds_rule(&self) -> Option<usize> {
        self.rules.iter().position(|r| r.quota.on() == QuotaOn::Fds)
    }

    fn empty_permits(&self, kind: ResourceKind) -> Permits {
        Permits {
            counts: Vec::new(),
            bytes: (kind == ResourceKind::TempFile)
                .then(|| self.bytes.clone().map(ByteCharge::new))
                .flatten(),
            ledger: None,
            owner: None,
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

    /// A wait refused because it would close a wait-for cycle.
    fn cycle(&self, rule: &Rule, op: Operation) -> Error {
        // Relaxed: a counter.
        rule.cycles.fetch_add(1, Ordering::Relaxed);
        self.refused(rule, op)
    }

    /// Takes `need`'s permits now, or refuses with the first quota that has no room.
    pub(crate) fn try_take(
        &self,
        need: impl Into<Need>,
        op: Operation,
        owner: OwnerKey,
    ) -> Result<Permits, Error> {
        self.take_now(need.into(), owner)
            .map_err(|i| self.refused(&self.rules[i], op))
    }

    /// Takes `need`'s permits now if every quota has room, counting nothing: the fast
    /// path of a waiting acquisition.
    /// A newcomer lets requests in progress go first (see `Ledger::take`).
    pub(crate) fn take_if_room(&self, need: impl Into<Need>, owner: OwnerKey) -> Option<Permits> {
        self.take_now_with(need.into(), None, owner, true).ok()
    }

    /// `Err(i)`: rule `i` had no room (what was taken returns as it drops).
    fn take_now(&self, need: Need, owner: OwnerKey) -> Result<Permits, usize> {
        self.take_now_with(need, None, owner, false)
    }

    /// As `take_now`, with rule `got.0`'s permit already in hand (a waiting acquisition
    /// that was just served by that rule's queue). Under the ledger's lock, charged to
    /// `owner`.
    fn take_now_with(
        &self,
        need: Need,
        mut got: Option<(usize, OwnedSemaphorePermit)>,
        owner: OwnerKey,
        yielding: bool,
    ) -> Result<Permits, usize> {
        let rules: Vec<usize>;
        let yielding = if yielding {
            rules = self.costs(need).map(|c| c.0).collect();
            Some(&rules[..])
        } else {
            None
        };
        let mut permits = self.ledger.take(
            owner,
            yielding,
            || {
                let mut permits = self.empty_permits(need.kind);
                for (i, cost) in self.costs(need) {
                    let p = match got.take_if(|(j, _)| *j == i) {
                        Some((_, p)) => p,
                        None => (self.rules[i].sem.clone())
                            .try_acquire_many_owned(cost)
                            .map_err(|_| i)?,
                    };
                    permits.counts.push((i, p));
                }
                Ok(permits)
            },
            |p| units(&p.counts),
        )?;
        permits.ledger = Some(self.ledger.clone());
        permits.owner = Some(owner);
        Ok(permits)
    }

    /// Takes `need`'s permits, waiting for room (first come, first served in each
    /// quota), until `root` fires (shutdown cancelling the root: `ShuttingDown`) or
    /// `scope` is cancelled (`Cancelled`). A resource that can never fit (its cost above
    /// the limit) is refused at once, and so is a wait that would close a wait-for cycle.
    ///
    /// It holds nothing while it waits: it waits in the queue of one quota that has no
    /// room, then takes the others at once or gives that one back and waits again. A
    /// waiter holding one quota's room while it waits for another's would starve a
    /// holder of the second that needs the first (a deadlock).
    pub(crate) fn take(
        self: &Arc<Self>,
        need: impl Into<Need>,
        op: Operation,
        scope: &Arc<ScopeShared>,
        root: CancellationToken,
    ) -> impl Future<Output = Result<Permits, Error>> + Send + 'static {
        let (this, need, scope) = (self.clone(), need.into(), scope.clone());
        let owner = owner(&scope);
        async move {
            if let Some((i, _)) = this
                .costs(need)
                .find(|&(i, cost)| u64::from(cost) > this.rules[i].quota.limit())
            {
                return Err(this.refused(&this.rules[i], op));
            }
            let mut got = None;
            let mut waited = false;
            loop {
                let i = match this.take_now_with(need, got.take(), owner, true) {
                    Ok(p) => return Ok(p),
                    Err(YIELD) => {
                        this.yield_to_holders(need, owner, &scope, &root, op, &mut waited)
                            .await?;
                        continue;
                    }
                    Err(i) => i,
                };
                let cost = this.costs(need).find(|&(j, _)| j == i).map_or(0, |c| c.1);
                let rule = &this.rules[i];
                let Some(wait) = this.ledger.wait(owner, i) else {
                    return Err(this.cycle(rule, op));
                };
                let _waiting = Waiting::new(rule, !std::mem::replace(&mut waited, true));
                let p = tokio::select! {
                    // Served and refused at once: served.
                    biased;
                    p = rule.sem.clone().acquire_many_owned(cost) => p.map_err(|_| Error::ShuttingDown { op })?,
                    () = root.cancelled() => return Err(Error::ShuttingDown { op }),
                    () = scope.token.cancelled() => return Err(cancelled(&scope)),
                    () = wait.refused.cancelled() => return Err(this.cycle(rule, op)),
                };
                drop(wait);
                got = Some((i, p));
            }
        }
    }

    /// Waits, holding nothing, until no request in progress waits on a rule `need`
    /// takes from (a newcomer's turn comes after theirs), or the stop or the scope's
    /// cancellation.
    async fn yield_to_holders(
        &self,
        need: Need,
        owner: OwnerKey,
        scope: &ScopeShared,
        root: &CancellationToken,
        op: Operation,
        waited: &mut bool,
    ) -> Result<(), Error> {
        let rules: Vec<usize> = self.costs(need).map(|c| c.0).collect();
        let Some(&first) = rules.first() else {
            return Ok(());
        };
        let _waiting = Waiting::new(&self.rules[first], !std::mem::replace(waited, true));
        loop {
            let changed = self.ledger.gate.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if !self.ledger.must_yield(owner, &rules) {
                return Ok(());
            }
            tokio::select! {
                () = changed => {}
                () = root.cancelled() => return Err(Error::ShuttingDown { op }),
                () = scope.token.cancelled() => return Err(cancelled(scope)),
            }
        }
    }

    /// What a resource of `from` holds, as a resource of `to` (a temp file persisted as
    /// a managed file, the same open fd): the shares of rules that count both at the
    /// same cost carry over (never handed to a waiter in between), `from`'s others
    /// return, and those only `to` needs are taken now, or refused. The owner stays.
    pub(crate) fn convert(
        &self,
        mut held: Permits,
        to: ResourceKind,
        op: Operation,
    ) -> Result<Permits, Error> {
        let owner = held.owner.unwrap_or(OwnerKey::Unscoped);
        // Off the owner's account for a moment, then `out` goes on it whole.
        held.unattribute();
        let mut old = std::mem::take(&mut held.counts);
        let out = self.ledger.take(
            owner,
            None,
            || {
                let mut out = self.empty_permits(to);
                for (i, cost) in self.costs(to.into()) {
                    let same =
                        (old.iter()).position(|(j, p)| *j == i && p.num_permits() == cost as usize);
                    let p = match same {
                        Some(k) => old.swap_remove(k).1,
                        None => (self.rules[i].sem.clone())
                            .try_acquire_many_owned(cost)
                            .map_err(|_| i)?,
                    };
                    out.counts.push((i, p));
                }
                Ok(out)
            },
            |p| units(&p.counts),
        );
        // What did not carry over returns as `held` drops.
        held.counts = old;
        match out {
            Ok(mut out) => {
                out.ledger = Some(self.ledger.clone());
                out.owner = Some(owner);
                Ok(out)
            }
            Err(i) => Err(self.refused(&self.rules[i], op)),
        }
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

impl super::Inner {
    /// Room for `need`, acquired in `scope`: taken now if there is some, else waited for
    /// (see `Quotas::take`). `None` without a quota that counts it.
    ///
    /// Cancel safe: dropped while it waits, it takes nothing.
    pub(crate) async fn room(
        &self,
        scope: &Arc<ScopeShared>,
        need: Need,
        op: Operation,
    ) -> Result<Option<Permits>, Error> {
        let Some(q) = self.quotas.as_ref().filter(|q| q.applies(need.kind)) else {
            return Ok(None);
        };
        if let Some(p) = q.take_if_room(need, owner(scope)) {
            return Ok(Some(p));
        }
        q.take(need, op, scope, self.root_token.clone())
            .await
            .map(Some)
    }
}
