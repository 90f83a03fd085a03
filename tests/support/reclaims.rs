//! Resources for registration tests: one that owns nothing (what is measured is
//! custodian's own bookkeeping) and one that counts its reclaims (exactly once is
//! checked by reading its slot).

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use tokio_custodian::{Cleanup, Reclaim};

/// A resource that owns nothing.
#[derive(Debug)]
pub struct Nothing;

impl Reclaim for Nothing {
    fn reclaim(self: Box<Self>) -> Cleanup {
        Cleanup::Done(Ok(()))
    }
}

/// Counts its reclaims in `slots[at]`.
#[derive(Debug)]
pub struct Count {
    /// One counter per resource of the test.
    pub slots: Arc<Vec<AtomicU8>>,
    /// This resource's counter.
    pub at: usize,
}

impl Reclaim for Count {
    fn reclaim(self: Box<Self>) -> Cleanup {
        self.slots[self.at].fetch_add(1, Ordering::SeqCst);
        Cleanup::Done(Ok(()))
    }
}
