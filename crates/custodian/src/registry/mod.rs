//! The registry (layer 3): one entry per live resource, the reclaim data that releases
//! it ([`reclaim`], the public extension API), and the per-scope state the entries
//! point to ([`scope_state`]).
//!
//! Invariants:
//! - an entry is inserted before the acquiring call returns and removed exactly once;
//!   *removing the entry is the release decision*: whoever removes it (guard drop, close,
//!   scope sweep, shutdown) runs its [`Reclaim`], everyone else finds nothing to do;
//! - the entry alone is enough to reclaim the resource, so a forgotten guard is still
//!   released;
//! - no lock of the registry is held while a reclaim runs.

use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::panic::Location;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
// Tokio's clock, like the leak scanner's interval: ages follow paused test time too.
use tokio::time::Instant;

use dashmap::DashMap;

use crate::id::ResourceId;
use crate::kind::ResourceKind;
use crate::label::Label;

pub(crate) mod ledger;
pub(crate) mod permits;
pub(crate) mod reclaim;
pub(crate) mod scope_name;
pub(crate) mod scope_state;

pub(crate) use ledger::{Ledger, OwnerKey};
pub(crate) use permits::{ByteCharge, Permits, Rule, hold_until_done};
pub use reclaim::{Cleanup, ProcessIds, Reclaim};
pub(crate) use scope_state::ScopeShared;

/// One registered resource.
pub(crate) struct Entry {
    pub(crate) kind: ResourceKind,
    pub(crate) label: Label,
    pub(crate) scope: Arc<ScopeShared>,
    pub(crate) site: &'static Location<'static>,
    pub(crate) born: Born,
    /// Boxed, not a `PathBuf`: the 8 bytes of its capacity pay for `born`'s `Instant`.
    pub(crate) path: Option<Box<Path>>,
    pub(crate) reclaim: Box<dyn Reclaim>,
    /// Set once the leak scanner has warned about this entry.
    pub(crate) warned: AtomicBool,
    /// Quota permits, returned when the release has finished (boxed: one word when
    /// there are no quotas).
    pub(crate) permits: Option<Box<Permits>>,
}

/// When an entry was registered, on Tokio's clock (so that ages follow paused test
/// time too). The instant itself, not an offset from an anchor: a registration pays one
/// clock reading and no subtraction (std's `Instant` arithmetic, about 50 instructions,
/// was over a tenth of a registration); the ages are computed when they are read.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Born(Instant);

impl Born {
    #[inline]
    pub(crate) fn now() -> Born {
        Born(Instant::now())
    }

    /// How long ago it was (zero if the clock reads earlier).
    pub(crate) fn elapsed(&self) -> Duration {
        self.age_at(Born::now())
    }

    /// How long before `now` it was (zero if `now` is earlier): one reading of the
    /// clock for many entries (shutdown's records of its leftovers).
    pub(crate) fn age_at(&self, now: Born) -> Duration {
        now.0.saturating_duration_since(self.0)
    }
}

/// The map of live resources.
#[derive(Default)]
pub(crate) struct Registry {
    /// Read and inserted into directly; removed from only through [`Registry::remove`]
    /// and [`Registry::remove_if`], which give capacity back after a burst.
    pub(crate) map: DashMap<ResourceId, Entry, BuildHasherDefault<IdHasher>>,
    next: AtomicU64,
}

/// How often the registry checks whether its table is mostly empty: at the removal of
/// every id that is a multiple of this (ids are sequential, so about one removal in
/// this many, with no shared counter to update on every removal). Reading the capacity
/// and the length takes every shard's read lock in turn, about 300 instructions: under
/// 2 per removal at this rate.
const SHRINK_CHECK_EVERY: u64 = 256;

/// Below this capacity (in entries) the table is never shrunk: a few shards' worth of
/// slots, not worth the rehash.
const SHRINK_ABOVE: usize = 4096;

/// The registry's hash: ids are sequential and made by [`Registry::next_id`], never chosen
/// by a caller, so a multiplication by an odd constant spreads them (the low bits that
/// pick a table slot stay distinct, the high bits that pick a shard are mixed) at a
/// fraction of SipHash's cost, with no flooding to defend against.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Not used by `ResourceId` (it hashes one `u64`); correct for anything else.
        for &b in bytes {
            self.write_u64(self.0.rotate_left(8) ^ u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        // 2^64 / golden ratio, odd: a bijection on every low-bit window.
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl Registry {
    /// Removes `id`'s entry: the release decision (see the module's invariants).
    #[inline]
    pub(crate) fn remove(&self, id: &ResourceId) -> Option<(ResourceId, Entry)> {
        // The capacity check first: the removal's result then goes straight to the
        // caller (checked after, the 112-byte entry was moved once more).
        self.removing(*id);
        self.map.remove(id)
    }

    /// Removes `id`'s entry if `keep_if` holds for it (a sweep: still in its scope).
    #[inline]
    pub(crate) fn remove_if(
        &self,
        id: &ResourceId,
        keep_if: impl FnOnce(&Entry) -> bool,
    ) -> Option<(ResourceId, Entry)> {
        self.removing(*id);
        self.map.remove_if(id, |_, e| keep_if(e))
    }

    /// Gives the table's capacity back once it is over four times what the live
    /// entries need: a burst (100,000 temp files held at once, then released) would
    /// otherwise keep its peak's table (15 MB) until the supervisor is dropped. The
    /// shrink rehashes the live entries, one shard lock at a time, and is paid for by
    /// the removals that emptied the table (amortised constant work per release). No
    /// shard lock is held by the caller. Checked just before the removal of `id`,
    /// whether or not it is still registered: one entry more or less does not change
    /// what a shrink is for, and a second attempt on an id costs one more check.
    #[inline]
    fn removing(&self, id: ResourceId) {
        if id.get().is_multiple_of(SHRINK_CHECK_EVERY) {
            self.shrink_if_sparse();
        }
    }

    #[cold]
    fn shrink_if_sparse(&self) {
        let capacity = self.map.capacity();
        if capacity > SHRINK_ABOVE && self.map.len() * 4 < capacity {
            self.map.shrink_to_fit();
        }
    }

    pub(crate) fn next_id(&self) -> ResourceId {
        // Only uniqueness and monotonicity per thread matter; no data is published by it.
        ResourceId::new(self.next.fetch_add(1, Ordering::Relaxed) + 1)
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("live", &self.map.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_fits_its_budget() {
        // 16/7 × (slot + control byte) + label + id-list slot ≤ 256 B just after a
        // resize: the slot must stay within 104 B.
        assert!(std::mem::size_of::<(ResourceId, Entry)>() <= 104);
    }

    #[tokio::test(start_paused = true)]
    async fn born_follows_paused_time() {
        let b = Born::now();
        tokio::time::advance(Duration::from_secs(61)).await;
        let age = b.elapsed();
        assert!(
            age >= Duration::from_secs(61) && age < Duration::from_secs(62),
            "{age:?}"
        );
        // An instant from before the clock was paused reads back too.
        let earlier = Born(Instant::now() - Duration::from_secs(3600));
        assert!(earlier.elapsed() >= Duration::from_secs(3600));
        // A clock reading earlier than the entry's birth gives zero, not a panic.
        assert_eq!(Born::now().age_at(earlier), Duration::ZERO);
    }
}
