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
//!     .scope("transcode", async |s| {
//!         let work = s.temp_dir().await?;
//!         let mut out = s.temp_file().await?;
//!         out.write_all(b"RIFF....WAVE").await.unwrap();
//!         out.flush().await.unwrap();
//!         tokio_custodian::Result::Ok(work.path().is_dir())
//!     })
//!     .await??;
//! assert!(bytes);
//! let report = sup.shutdown().await;
//! assert!(report.is_clean(), "{report}");
//! # Ok(()) }
//! ```
//!
//! See `docs/architecture.md` in the repository for the promises, the flow of one
//! resource and what is not guaranteed.
//!
//! ## Layout (for maintainers)
//!
//! The modules form layers, lowest first: `sys` (OS primitives); the vocabulary (`kind`,
//! `error`, `id`, `leak`, `stats`, `report`); `registry` (entries, the `Reclaim`/`Cleanup`
//! extension API, per-scope state); `inner` (the supervisor's shared state, where every
//! release is decided; its header has the release glossary); `scope`; `resource` (one
//! module per kind of guard); `shutdown`, `hook`, `signal`, `emergency`; `supervisor`
//! (the public handle's methods and its builder). `crate::` paths only point down:
//! `.ci/layers.py` checks it, and a lower layer that must reach up is handed a callback.
//!
//! Each type's inherent methods live in its own module, with two stated exceptions:
//! - the acquisition methods of a resource kind stay with the kind (`Scope::temp_file`,
//!   `Scope::temp`, `Scope::open`, `Scope::command`... in `resource/`), so that a new
//!   kind is one new module;
//! - [`Supervisor`] is declared in `inner` (so that scopes and guards, below the handle,
//!   can hold one) while all its methods live in `supervisor/`; its shortcuts to the root
//!   scope's acquisitions are together in `supervisor/shortcuts.rs`.

#![deny(unsafe_code)]

// The layers, lowest first (`.ci/layers.py` checks that `crate::` paths only point down).
// 1. OS primitives.
mod sys;
// 2. Vocabulary: kinds, errors, ids, sites and records, counters, the shutdown report.
mod error;
mod id;
mod kind;
mod leak;
mod report;
mod stats;
// Quotas: what they limit and count.
mod quota;
// The crash journal's records and the sweep report.
mod journal;
// The child-subreaper opt-in: what a supervisor adopted, proven, stopped and reaped.
mod reaper;
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
// 8. The public handle's methods and its builder.
mod supervisor;

pub use emergency::{EmergencyCleanup, PanicCleanup};
pub use error::{Error, Operation, PublicError, Result};
pub use id::ResourceId;
pub use journal::{
    DeadOwner, DeathProof, SkipReason, Skipped, SpareReason, Spared, StoppedGroup, Survivor,
    SurvivorReason, SweepReport,
};
pub use kind::{CancelReason, ReleasePath, ResourceKind};
pub use leak::{FailureRecord, LeakRecord, LiveResource, PendingCleanup, Site};
pub use quota::{Quota, QuotaOn, QuotaUsage};
pub use reaper::AdoptionStats;
pub use recovery::{AgeKept, AgeKeptReason, AgeReport, clean_older_than};
pub use recovery::{default_state_dir, sweep, sweep_with_grace};
pub use registry::{Cleanup, Reclaim};
pub use report::{DrainReport, HookOutcome, HookReport, Phase, ShutdownReport};
pub use resource::{ATOMIC_TEMP_PREFIX, AtomicFile, AtomicWrite, CreateAtomicFile, Durability};
pub use resource::{AcquireLock, FileLock, GaveUp, LockMode, LockOptions, Retry, RetryError};
pub use resource::{Command, DEFAULT_CHILD_GRACE, ManagedChild};
pub use resource::{CreateTempDir, CreateTempFile, OpenFile};
pub use resource::{ManagedFile, OpenOptions, PersistError, TempBuilder, TempDir, TempFile};
pub use scope::{Registration, Scope};
pub use stats::{KindStats, StatsSnapshot};
pub use supervisor::{Builder, Supervisor};

/// The README's example, compiled and run as a doctest so that it stays true.
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctest;
