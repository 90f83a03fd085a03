//! # custodian
//!
//! Every file, temp file, temp dir (and, through companion modules, child process and
//! audio decoder) that an async Tokio service acquires gets an owner, and is released
//! exactly once on every path: explicit `close().await`, guard drop, scope end, panic,
//! task cancellation (a dropped future, an aborted task), and shutdown.
//!
//! * A [`Supervisor`] owns a registry of live resources, a private temp root (mode 0700,
//!   locked) and a cancellation tree of [`Scope`]s.
//! * Guards ([`ManagedFile`], [`TempFile`], [`TempDir`]) release on drop without ever
//!   blocking: constant work inline, the rest (a recursive removal) on the blocking pool,
//!   tracked so that the owning scope does not end before it is done.
//! * The registry entry alone can reclaim a resource, so an escaped or forgotten guard is
//!   still released at scope end or shutdown, and reported as a leak with its creation
//!   site.
//! * [`Supervisor::stats`], [`Supervisor::live`], [`Supervisor::leaks`] and the
//!   [`ShutdownReport`] tell what happened, as text or JSON; `tracing` events mark every
//!   acquisition and release.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
//! use tokio::io::AsyncWriteExt;
//!
//! let sup = tokio_custodian::Supervisor::builder().start()?;
//! let bytes = sup
//!     .try_scope("transcode", async |s| {
//!         let work = s.temp_dir().await?;
//!         let mut out = s.temp_file().await?;
//!         out.write_all(b"RIFF....WAVE").await.unwrap();
//!         out.flush().await.unwrap();
//!         Ok(work.path().is_dir())
//!     })
//!     .await?;
//! assert!(bytes);
//! let report = sup.shutdown().await;
//! assert!(report.is_clean(), "{report}");
//! # Ok(()) }
//! ```
//!
//! See `docs/architecture.md` in the repository for the promises, the flow of one
//! resource, what is not guaranteed, the glossary of release paths as reports print them
//! (`close`, `drop`, `panic`, `cancelled`, `scope_end`, `shutdown`, `detached`), and the
//! crate's layout for maintainers.

#![deny(unsafe_code)]

// The layers, lowest first (`.ci/layers.py` checks that `crate::` paths only point down).
// 1. OS primitives.
mod sys;
// 2. Vocabulary: kinds, errors, ids, sites and records, counters, the shutdown report.
mod error;
mod id;
mod kind;
mod label;
mod leak;
mod report;
mod stats;
// Quotas: what they limit and count.
mod quota;
// The crash journal's records and the sweep report.
mod journal;
// The child-subreaper opt-in: what a supervisor adopted, proven, stopped and reaped.
mod reaper;
// Containment tiers: the setting, the tier in force and why, the supervisor's cgroup.
mod containment;
// 3. The registry, its extension API (`Reclaim`, `Cleanup`) and per-scope state.
mod registry;
// 4. The supervisor's shared state (and the handle type pointing to it).
mod inner;
// 5. Scopes (and `Registration`, the handle a registration returns).
mod scope;
// 6. Resources: one module per kind of guard.
mod resource;
// 7. Shutdown, hooks, signals, emergency clean-up.
mod emergency;
mod hook;
mod shutdown;
mod signal;
// Shutdown's drain phase.
mod drain;
// Crash recovery: the sweep of a state dir.
mod recovery;
// systemd's notify protocol (opt-in).
mod notify;
// The inspect server (opt-in) and its client.
mod inspect;
// The watcher (opt-in): recovers this process's journal the moment it dies.
mod watcher;
// 8. The public handle's methods and its builder.
mod supervisor;
// 9. Tools over the public handle: the leak check for tests.
#[cfg(feature = "testing")]
pub mod testing;
// The stats through the `metrics` facade.
#[cfg(feature = "metrics")]
pub mod metrics;

pub use containment::{Containment, ContainmentTier, Controller, LimitUnavailable, Unavailable};
pub use emergency::{EmergencyCleanup, PanicCleanup};
pub use error::{Error, Operation, PublicError, Result};
pub use id::ResourceId;
pub use journal::{
    DeadOwner, DeathProof, SkipReason, Skipped, SpareReason, Spared, StoppedGroup, Survivor,
    SurvivorReason, SweepReport,
};
pub use kind::{CancelReason, ReleasePath, ResourceKind};
pub use label::Label;
pub use leak::{FailureRecord, LeakRecord, LiveResource, PendingCleanup, Site};
pub use quota::{Quota, QuotaOn, QuotaUsage};
#[allow(deprecated)]
pub use recovery::clean_older_than;
pub use recovery::default_state_dir;
pub use recovery::{AgeKept, AgeKeptReason, AgeReport, AgeSweep, BaseRefusal};
pub use recovery::{Recovery, RecoveryReport, recover};
#[allow(deprecated)]
pub use recovery::{sweep, sweep_with_grace};
pub use registry::{Cleanup, ProcessIds, Reclaim};
pub use report::{DrainReport, HookOutcome, HookReport, Phase, ShutdownCause, ShutdownReport};
pub use resource::{ATOMIC_TEMP_PREFIX, AtomicFile, AtomicWrite, CreateAtomicFile, Durability};
pub use resource::{AcquireLock, FileLock, GaveUp, LockMode, LockOptions, Retry, RetryError};
pub use resource::{BoundedOutput, Command, DEFAULT_CHILD_GRACE, ManagedChild};
pub use resource::{CreateTempDir, CreateTempFile, OpenFile};
pub use resource::{ManagedFile, OpenOptions, PersistError, TempBuilder, TempDir, TempFile};
pub use scope::{Registration, Scope};
pub use stats::AdoptionStats;
pub use stats::{KindStats, StatsSnapshot, WatcherState, WatcherStats};
pub use supervisor::{Builder, Supervisor};
// The inspect server's snapshot and its client (`Builder::inspect`).
pub use inspect::{InspectedChild, InspectedResource, InspectedScope, Inspection};
pub use inspect::{inspect, sockets_in as inspect_sockets_in, sockets_of as inspect_sockets_of};

/// The README's example, compiled and run as a doctest so that it stays true.
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctest;
