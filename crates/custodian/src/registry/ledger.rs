//! Who holds each quota's room, and who waits (layer 3): the wait-for cycle check that
//! keeps quotas from stopping a service (see docs/services.md, "No deadlock").
//!
//! An *owner* is what a request is to custodian: the top-level scope an acquisition was
//! made in (nested scopes and scoped tasks belong to it), or, for the root scope's
//! resources, the Tokio task that acquired them. Every unit a count quota hands out is
//! attributed to its owner while its resource is live, and to no one once its release
//! has begun (its clean-up will return it).
//!
//! An owner is *blocked* if it holds room and has an acquisition waiting. A quota *may
//! free* room if some of its units are held by an owner that is not blocked (or by no
//! one: a clean-up in flight, a waiter being served). Blocked owners whose waits are all
//! on quotas that cannot free are stuck for ever: a cycle (in the OR sense: each waits
//! for *some* holder, and every holder is stuck). The check runs whenever a cycle can
//! close: an owner starts waiting, room is taken, room returns. It refuses the youngest
//! stuck wait (which then returns `QuotaExceeded` and takes nothing), and again until no
//! owner is stuck.
//!
//! Invariants:
//! - attribution changes and the count quotas' semaphore takes and returns happen under
//!   the one lock, so the check sees a consistent picture; it counts what is on an
//!   owner's account or being released, never the semaphore's free count (a semaphore
//!   hands room to its first waiter bit by bit: units that waiter cannot use yet);
//! - an owner's record lives while it holds room or waits, and is removed at zero;
//! - lock order: this lock, then a semaphore's internal lock; never a registry shard or a
//!   scope state lock inside it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;

use super::permits::Rule;

/// Who holds room: see the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum OwnerKey {
    /// A top-level scope, by id.
    Scope(u64),
    /// The root scope's resources, by the Tokio task that acquired them.
    Task(tokio::task::Id),
    /// The root scope's resources acquired outside any task (`block_on`).
    Unscoped,
}

#[derive(Default)]
struct Owner {
    /// Units held, per rule.
    held: Vec<u64>,
    /// Its waits: (sequence number, rule, the refusal token).
    waits: Vec<(u64, usize, CancellationToken)>,
}

impl Owner {
    fn holds(&self) -> bool {
        self.held.iter().any(|&n| n > 0)
    }
}

#[derive(Default)]
struct Graph {
    owners: HashMap<OwnerKey, Owner>,
    next_seq: u64,
    /// Waits now: the check has work only then.
    waits: usize,
    /// Units on no one's account, per rule: resources whose release has begun (their
    /// clean-up returns them).
    releasing: Vec<u64>,
}

pub(crate) struct Ledger {
    rules: Vec<Arc<Rule>>,
    graph: Mutex<Graph>,
    /// Woken when a wait ends or room returns: newcomers that let requests in progress
    /// go first look again (see `Ledger::take`).
    pub(crate) gate: tokio::sync::Notify,
}

/// `Ledger::take`'s refusal for a newcomer that must let requests in progress go first.
pub(crate) const YIELD: usize = usize::MAX;

/// A wait in progress: refused (its token cancelled) if it closes a cycle; removed from
/// the graph when dropped.
pub(crate) struct Wait {
    ledger: Arc<Ledger>,
    owner: OwnerKey,
    seq: u64,
    pub(crate) refused: CancellationToken,
}

impl Ledger {
    pub(crate) fn new(rules: Vec<Arc<Rule>>) -> Arc<Ledger> {
        Arc::new(Ledger {
            rules,
            graph: Mutex::default(),
            gate: tokio::sync::Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Graph> {
        // Counts and lists, consistent at every unlock (nothing in it panics midway).
        self.graph.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `take` (semaphore takes of rule-indexed permits) under the lock and
    /// attributes what it took to `owner`. With `yielding` (the rules a waiting
    /// acquisition needs), an owner that holds nothing lets a request in progress
    /// (holding room) that waits on one of them go first: `Err(YIELD)`, nothing taken.
    /// Otherwise freed room would go to newcomers, which then hold some and wait too,
    /// and the cycle check would refuse request after request.
    pub(crate) fn take<T>(
        &self,
        owner: OwnerKey,
        yielding: Option<&[usize]>,
        take: impl FnOnce() -> Result<T, usize>,
        units: impl Fn(&T) -> Vec<(usize, u64)>,
    ) -> Result<T, usize> {
        let mut g = self.lock();
        if let Some(rules) = yielding
            && Self::yields(&g, owner, rules)
        {
            return Err(YIELD);
        }
        let t = take()?;
        let units = units(&t);
        if units.iter().any(|&(_, n)| n > 0) {
            let n = self.rules.len();
            let o = g.owners.entry(owner).or_default();
            o.held.resize(n, 0);
            for &(i, u) in &units {
                o.held[i] += u;
            }
            self.check(&mut g);
        }
        Ok(t)
    }

    /// `owner` gives back `units` (`None`: units of a release in flight);
    /// `drop_permits` returns them to the semaphores under the lock. With `releasing`,
    /// they move to no one's account instead (a release has begun: its clean-up will
    /// return them).
    pub(crate) fn give_back(
        &self,
        owner: Option<OwnerKey>,
        units: &[(usize, u64)],
        releasing: bool,
        drop_permits: impl FnOnce(),
    ) {
        let mut g = self.lock();
        g.releasing.resize(self.rules.len(), 0);
        match owner {
            Some(owner) => {
                if let Some(o) = g.owners.get_mut(&owner) {
                    for &(i, u) in units {
                        if let Some(h) = o.held.get_mut(i) {
                            *h = h.saturating_sub(u);
                        }
                    }
                    if !o.holds() && o.waits.is_empty() {
                        g.owners.remove(&owner);
                    }
                }
            }
            None => {
                for &(i, u) in units {
                    g.releasing[i] = g.releasing[i].saturating_sub(u);
                }
            }
        }
        if releasing {
            for &(i, u) in units {
                g.releasing[i] += u;
            }
        }
        drop_permits();
        self.check(&mut g);
        let waits = g.waits;
        drop(g);
        if waits > 0 {
            self.gate.notify_waiters();
        }
    }

    /// Begins a wait of `owner` on `rule`. `None`: refused at once, it would close a
    /// cycle (the caller returns `QuotaExceeded`).
    pub(crate) fn wait(self: &Arc<Self>, owner: OwnerKey, rule: usize) -> Option<Wait> {
        let mut g = self.lock();
        let seq = g.next_seq;
        g.next_seq += 1;
        let refused = CancellationToken::new();
        let o = g.owners.entry(owner).or_default();
        o.held.resize(self.rules.len(), 0);
        o.waits.push((seq, rule, refused.clone()));
        g.waits += 1;
        self.check(&mut g);
        // `Wait::drop` takes the lock.
        drop(g);
        let w = Wait {
            ledger: self.clone(),
            owner,
            seq,
            refused,
        };
        if w.refused.is_cancelled() {
            return None;
        }
        Some(w)
    }

    /// Whether a newcomer `owner` must let a request in progress go first on `rules`.
    fn yields(g: &Graph, owner: OwnerKey, rules: &[usize]) -> bool {
        if g.waits == 0 || g.owners.get(&owner).is_some_and(Owner::holds) {
            return false;
        }
        (g.owners.values())
            .filter(|o| o.holds())
            .any(|o| o.waits.iter().any(|w| rules.contains(&w.1)))
    }

    /// Whether `owner` must still yield on `rules` (see `take`).
    pub(crate) fn must_yield(&self, owner: OwnerKey, rules: &[usize]) -> bool {
        Self::yields(&self.lock(), owner, rules)
    }

    /// Refuses the youngest stuck wait until no owner is stuck.
    fn check(&self, g: &mut Graph) {
        if g.waits == 0 {
            return;
        }
        loop {
            let stuck = self.stuck(g);
            // The youngest wait of a stuck owner.
            let Some((key, seq)) = stuck
                .iter()
                .flat_map(|k| g.owners[k].waits.iter().map(move |w| (*k, w.0)))
                .max_by_key(|&(_, s)| s)
            else {
                return;
            };
            let o = g.owners.get_mut(&key).expect("a stuck owner is recorded");
            if let Some(at) = o.waits.iter().position(|w| w.0 == seq) {
                let (_, _, token) = o.waits.swap_remove(at);
                token.cancel();
                g.waits -= 1;
            }
            self.gate.notify_waiters();
        }
    }

    /// The owners stuck for ever: blocked, and every quota they wait on is held only by
    /// stuck owners.
    fn stuck(&self, g: &Graph) -> Vec<OwnerKey> {
        let mut blocked: Vec<OwnerKey> = (g.owners.iter())
            .filter(|(_, o)| o.holds() && !o.waits.is_empty())
            .map(|(k, _)| *k)
            .collect();
        // What is on someone's account or being released. Not the semaphores' own
        // count: a semaphore hands room to the first waiter bit by bit (units that
        // waiter holds but cannot use until it has its whole need).
        let mut in_use = g.releasing.clone();
        in_use.resize(self.rules.len(), 0);
        for o in g.owners.values() {
            for (i, h) in o.held.iter().enumerate() {
                in_use[i] += h;
            }
        }
        loop {
            let mut held_blocked = vec![0u64; self.rules.len()];
            for k in &blocked {
                for (i, h) in g.owners[k].held.iter().enumerate() {
                    held_blocked[i] += h;
                }
            }
            let may_free = |i: usize| in_use[i] > held_blocked[i];
            let before = blocked.len();
            blocked.retain(|k| !g.owners[k].waits.iter().any(|w| may_free(w.1)));
            if blocked.len() == before {
                return blocked;
            }
        }
    }
}

impl Drop for Wait {
    fn drop(&mut self) {
        let mut g = self.ledger.lock();
        let Some(o) = g.owners.get_mut(&self.owner) else {
            return;
        };
        if let Some(at) = o.waits.iter().position(|w| w.0 == self.seq) {
            o.waits.swap_remove(at);
            g.waits -= 1;
        }
        let o = &g.owners[&self.owner];
        if !o.holds() && o.waits.is_empty() {
            g.owners.remove(&self.owner);
        }
        drop(g);
        self.ledger.gate.notify_waiters();
    }
}

/// Units of each rule in a list of rule-indexed permits.
pub(crate) fn units(counts: &[(usize, OwnedSemaphorePermit)]) -> Vec<(usize, u64)> {
    counts
        .iter()
        .map(|(i, p)| (*i, p.num_permits() as u64))
        .collect()
}
