//! Quota permits held by a registry entry (layer 3): taken before the entry is
//! inserted, returned when its release has finished, exactly once, whatever the path
//! (the entry is removed once; see `inner::Inner::retire_and_reclaim`).
//!
//! - [`Rule`]: one quota's semaphore and counters (built by `inner::quota`);
//! - [`Permits`]: what one entry holds: a permit of each rule that counts its kind, and
//!   for a temp file its [`ByteCharge`];
//! - [`ByteCharge`]: the temp bytes a temp file holds, shared with its guard, which
//!   charges its writes; cleared (returned) when the entry's permits drop, so that a
//!   forgotten guard cannot keep bytes charged.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::quota::{Quota, QuotaUsage};
use crate::registry::Cleanup;
use crate::registry::ledger::{Ledger, OwnerKey, units};

/// One quota: its semaphore (one permit per unit of the limit) and its counters.
pub(crate) struct Rule {
    pub(crate) quota: Quota,
    pub(crate) sem: Arc<Semaphore>,
    /// The semaphore's size: the limit, saturated to the semaphore's maximum.
    size: u64,
    /// Acquisitions waiting now.
    pub(crate) waiting: AtomicU64,
    pub(crate) waited: AtomicU64,
    pub(crate) refused: AtomicU64,
    /// Waits refused to break a wait-for cycle (also counted in `refused`).
    pub(crate) cycles: AtomicU64,
}

impl Rule {
    pub(crate) fn new(quota: Quota) -> Rule {
        // `Builder::start` refuses a larger limit (one read through serde); saturate
        // anyway rather than let `Semaphore::new` panic.
        let size = quota.limit().min(Semaphore::MAX_PERMITS as u64);
        Rule {
            quota,
            sem: Arc::new(Semaphore::new(size as usize)),
            size,
            waiting: AtomicU64::new(0),
            waited: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            cycles: AtomicU64::new(0),
        }
    }

    /// Units taken now (resources, fds or bytes).
    pub(crate) fn in_use(&self) -> u64 {
        self.size
            .saturating_sub(self.sem.available_permits() as u64)
    }

    pub(crate) fn usage(&self) -> QuotaUsage {
        // Relaxed: counters for people and /stats.
        QuotaUsage {
            quota: self.quota,
            in_use: self.in_use(),
            waiting: self.waiting.load(Ordering::Relaxed),
            waited: self.waited.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            cycles: self.cycles.load(Ordering::Relaxed),
        }
    }
}

/// The quota permits of one registry entry.
#[derive(Default)]
pub(crate) struct Permits {
    /// The count quotas' permits, by rule index.
    pub(crate) counts: Vec<(usize, OwnedSemaphorePermit)>,
    pub(crate) bytes: Option<Arc<ByteCharge>>,
    /// The ledger the counts were taken under: their return runs its cycle check.
    pub(crate) ledger: Option<Arc<Ledger>>,
    /// Whose account the counts are on (see `ledger`): `None` once the release has
    /// begun.
    pub(crate) owner: Option<OwnerKey>,
}

impl Permits {
    /// Returns `n` units of rule `rule` now (what a spawn needed only for a moment).
    pub(crate) fn shrink(&mut self, rule: usize, n: u32) {
        let Some(k) = self.counts.iter().position(|(i, _)| *i == rule) else {
            return;
        };
        let n = (n as usize).min(self.counts[k].1.num_permits());
        if n == 0 {
            return;
        }
        let part = self.counts[k].1.split(n);
        match &self.ledger {
            Some(ledger) => ledger.give_back(self.owner, &[(rule, n as u64)], false, || drop(part)),
            None => drop(part),
        }
    }

    /// Moves the counts to no one's account: the release has begun, and its clean-up
    /// will return them whatever the owner does.
    pub(crate) fn unattribute(&mut self) {
        if let (Some(ledger), Some(key)) = (&self.ledger, self.owner.take()) {
            ledger.give_back(Some(key), &units(&self.counts), true, || {});
        }
    }
}

impl Drop for Permits {
    fn drop(&mut self) {
        if let Some(b) = &self.bytes {
            b.release();
        }
        let counts = std::mem::take(&mut self.counts);
        match self.ledger.take() {
            // Returned room may close a wait-for cycle: the ledger checks, whoever's it was.
            Some(ledger) if !counts.is_empty() => {
                ledger.give_back(self.owner, &units(&counts), false, || drop(counts));
            }
            _ => drop(counts),
        }
    }
}

/// The bytes one temp file holds against the temp bytes quota.
pub(crate) struct ByteCharge {
    rule: Arc<Rule>,
    /// `None` once released: the guard's later writes are not charged (they fail anyway,
    /// the file being reclaimed).
    held: Mutex<Option<Held>>,
}

struct Held {
    permit: Option<OwnedSemaphorePermit>,
    bytes: u64,
}

impl ByteCharge {
    pub(crate) fn new(rule: Arc<Rule>) -> Arc<ByteCharge> {
        Arc::new(ByteCharge {
            rule,
            held: Mutex::new(Some(Held {
                permit: None,
                bytes: 0,
            })),
        })
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Option<Held>> {
        // A permit and a count: a panic cannot leave them inconsistent.
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes sure `end` bytes are charged; refuses (never waits) if the quota has no room.
    pub(crate) fn charge_to(&self, end: u64) -> io::Result<()> {
        let mut g = self.held();
        let Some(h) = g.as_mut() else {
            return Ok(());
        };
        if self.try_charge(h, end) {
            return Ok(());
        }
        // Relaxed: a counter.
        self.rule.refused.fetch_add(1, Ordering::Relaxed);
        Err(io::Error::new(
            io::ErrorKind::QuotaExceeded,
            format!(
                "quota {} exceeded: this temp file holds {} bytes, a write needs {} more",
                self.rule.quota,
                h.bytes,
                end - h.bytes
            ),
        ))
    }

    /// Charges up to `end` if there is room; `false` if not (nothing changed).
    fn try_charge(&self, h: &mut Held, end: u64) -> bool {
        if end <= h.bytes {
            return true;
        }
        // A semaphore hands out at most `u32::MAX` permits at a time: a larger charge (a
        // write after a far seek) is taken in chunks, all or nothing (a partial one
        // returns as `got` drops).
        let (mut need, mut got) = (end - h.bytes, None::<OwnedSemaphorePermit>);
        while need > 0 {
            let n = u32::try_from(need).unwrap_or(u32::MAX);
            let Ok(p) = self.rule.sem.clone().try_acquire_many_owned(n) else {
                return false;
            };
            match &mut got {
                Some(g) => g.merge(p),
                None => got = Some(p),
            }
            need -= u64::from(n);
        }
        let Some(p) = got else {
            return false;
        };
        match &mut h.permit {
            Some(held) => held.merge(p),
            slot @ None => *slot = Some(p),
        }
        h.bytes = end;
        true
    }

    /// Settles the charge to `size` (the file's `fstat` size): returns what it holds
    /// beyond, and charges what it lacks if there is room (bytes already on disk are never
    /// refused; they stay uncounted until a later settle finds room).
    pub(crate) fn settle(&self, size: u64) {
        let mut g = self.held();
        let Some(h) = g.as_mut() else {
            return;
        };
        if size < h.bytes {
            if let (Some(p), Ok(n)) = (h.permit.as_mut(), usize::try_from(h.bytes - size)) {
                drop(p.split(n));
                h.bytes = size;
            }
        } else {
            self.try_charge(h, size);
        }
    }

    fn release(&self) {
        drop(self.held().take());
    }
}

/// Keeps `permits` until `cleanup` has finished: a quota's room returns only once the
/// resource is gone (a child reaped, a dir removed), not when its release was decided.
pub(crate) fn hold_until_done(cleanup: Cleanup, permits: Option<Box<Permits>>) -> Cleanup {
    let Some(mut permits) = permits else {
        return cleanup;
    };
    permits.unattribute();
    match cleanup {
        Cleanup::Done(r) => Cleanup::Done(r),
        Cleanup::Blocking(mut work) => {
            let mut held = Some(permits);
            Cleanup::Blocking(Box::new(move || {
                let r = work();
                // After the first attempt: a retried clean-up does not hold the quota.
                drop(held.take());
                r
            }))
        }
        Cleanup::Async(fut) => Cleanup::Async(Box::pin(async move {
            let r = fut.await;
            drop(permits);
            r
        })),
    }
}
