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
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
// Tokio's clock, like the leak scanner's interval: ages follow paused test time too.
use tokio::time::Instant;

use dashmap::DashMap;

use crate::id::ResourceId;
use crate::kind::ResourceKind;

pub(crate) mod ledger;
pub(crate) mod permits;
pub(crate) mod reclaim;
pub(crate) mod scope_state;

pub(crate) use ledger::{Ledger, OwnerKey};
pub(crate) use permits::{ByteCharge, Permits, Rule, hold_until_done};
pub use reclaim::{Cleanup, ProcessIds, Reclaim};
pub(crate) use scope_state::ScopeShared;

/// One registered resource.
pub(crate) struct Entry {
    pub(crate) kind: ResourceKind,
    pub(crate) label: Box<str>,
    pub(crate) scope: Arc<ScopeShared>,
    pub(crate) site: &'static Location<'static>,
    pub(crate) born: Instant,
    pub(crate) path: Option<PathBuf>,
    pub(crate) reclaim: Box<dyn Reclaim>,
    /// Set once the leak scanner has warned about this entry.
    pub(crate) warned: AtomicBool,
    /// Quota permits, returned when the release has finished (boxed: one word when
    /// there are no quotas).
    pub(crate) permits: Option<Box<Permits>>,
}

/// The map of live resources.
#[derive(Default)]
pub(crate) struct Registry {
    pub(crate) map: DashMap<ResourceId, Entry, BuildHasherDefault<IdHasher>>,
    next: AtomicU64,
}

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
