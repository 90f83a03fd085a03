//! The counters of the child-subreaper opt-in, for the stats and the shutdown report.

use serde::{Deserialize, Serialize};

/// What a supervisor with [`Builder::child_subreaper`](crate::Builder::child_subreaper)
/// adopted: descendants of its managed children that left their process group and were
/// orphaned, then stopped and reaped by it. All zero without the opt-in.
///
/// ```
/// let s = tokio_custodian::AdoptionStats::default();
/// assert_eq!((s.adopted, s.live), (0, 0));
/// assert!(serde_json::to_string(&s).unwrap().contains("\"adopted\":0"));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AdoptionStats {
    /// Processes proven to descend from a managed child and adopted, so far.
    pub adopted: u64,
    /// Adopted processes reaped, so far.
    pub reaped: u64,
    /// Adopted processes that needed SIGKILL (SIGTERM and the grace were not enough).
    pub kill_needed: u64,
    /// Adopted processes not reaped yet.
    pub live: u64,
    /// Zombie children found at the last scan that could not be proven adopted (never
    /// seen alive with the marker, not in a group the supervisor owns): left alone, as
    /// they may be children that other code spawned and will wait for.
    pub unproven_zombies: u64,
}
