//! Lock-free per-kind counters and their serialisable snapshot.
//!
//! Every counter is an independent `Relaxed` atomic: each is a monotonic tally or a gauge
//! that no other memory access is ordered against. A snapshot taken while resources are
//! being acquired may therefore see `created` of one resource before its `live`; once the
//! system is quiescent every identity below holds exactly.
//!
//! Identity (per kind, when quiescent): `created == released.total() + live`.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::kind::{ReleasePath, ResourceKind};

#[derive(Debug, Default)]
struct KindCounters {
    created: AtomicU64,
    released: [AtomicU64; ReleasePath::COUNT],
    failures: AtomicU64,
    pending: AtomicU64,
    live: AtomicU64,
    peak: AtomicU64,
}

/// The live counters of one supervisor.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    kinds: [KindCounters; ResourceKind::COUNT],
    /// The containment tier, set once by `start`.
    containment: std::sync::OnceLock<crate::containment::ContainmentTier>,
    /// The watcher's state (`Builder::watcher`): changed a few times in a
    /// supervisor's life, never on a hot path.
    watcher: std::sync::Mutex<WatcherStats>,
}

impl Stats {
    /// Records the containment tier in force (once, at `start`).
    pub(crate) fn set_containment(&self, tier: crate::containment::ContainmentTier) {
        let _ = self.containment.set(tier);
    }

    /// Records what is known of the watcher now.
    pub(crate) fn set_watcher(&self, state: WatcherState, pid: Option<u32>, ended: Option<String>) {
        let mut w = self
            .watcher
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *w = WatcherStats { state, pid, ended };
    }

    /// The watcher's state now.
    pub(crate) fn watcher(&self) -> WatcherStats {
        self.watcher
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn created(&self, kind: ResourceKind) {
        let c = &self.kinds[kind.index()];
        c.created.fetch_add(1, Ordering::Relaxed);
        let live = c.live.fetch_add(1, Ordering::Relaxed) + 1;
        // A plain load first: the peak is rarely raised, and a read-modify-write on a
        // line every thread shares costs its ownership even when it changes nothing.
        if live > c.peak.load(Ordering::Relaxed) {
            c.peak.fetch_max(live, Ordering::Relaxed);
        }
    }

    pub(crate) fn released(&self, kind: ResourceKind, path: ReleasePath) {
        let c = &self.kinds[kind.index()];
        c.released[path.index()].fetch_add(1, Ordering::Relaxed);
        c.live.fetch_sub(1, Ordering::Relaxed);
    }

    /// A clean-up failed transiently and waits for a retry (`+1`), or its retry ended
    /// (`-1`, then either nothing more or [`failed`](Self::failed)).
    pub(crate) fn retrying(&self, kind: ResourceKind, waiting: bool) {
        let c = &self.kinds[kind.index()].pending;
        if waiting {
            c.fetch_add(1, Ordering::Relaxed);
        } else {
            c.fetch_sub(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn failed(&self, kind: ResourceKind) {
        self.kinds[kind.index()]
            .failures
            .fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> StatsSnapshot {
        let kinds = ResourceKind::ALL
            .iter()
            .map(|&kind| {
                let c = &self.kinds[kind.index()];
                let released = ReleasePath::ALL
                    .iter()
                    .map(|&p| (p, c.released[p.index()].load(Ordering::Relaxed)))
                    .collect();
                let stats = KindStats {
                    created: c.created.load(Ordering::Relaxed),
                    released,
                    failures: c.failures.load(Ordering::Relaxed),
                    pending: c.pending.load(Ordering::Relaxed),
                    live: c.live.load(Ordering::Relaxed),
                    peak: c.peak.load(Ordering::Relaxed),
                };
                (kind, stats)
            })
            .collect();
        StatsSnapshot {
            kinds,
            quotas: Vec::new(),
            containment: self.containment.get().cloned().unwrap_or_default(),
            journal_write_failures: 0,
            watcher: self.watcher(),
        }
    }
}

/// The state of a supervisor's watcher ([`Builder::watcher`](crate::Builder::watcher)):
/// the process that recovers its crash journal if it dies without a shutdown.
///
/// ```
/// use tokio_custodian::WatcherState;
/// assert_eq!(WatcherState::default(), WatcherState::Off);
/// assert_eq!(serde_json::to_string(&WatcherState::Died).unwrap(), "\"died\"");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum WatcherState {
    /// No watcher was asked for.
    #[default]
    Off,
    /// Running, watching this process.
    Watching,
    /// Told that shutdown released everything; it exited without acting and was reaped.
    Finished,
    /// It ended while it should have been watching (SIGKILLed, or killed by the OOM
    /// killer): a crash of this process is now left to the next start or
    /// `custodian sweep`. A `tracing` warning said so.
    Died,
    /// The supervisor was dropped without a shutdown: the watcher goes once the
    /// emergency clean-up has dropped the journal (or recovers it if this process dies
    /// first).
    LetGo,
}

/// What is known of the watcher: its state, pid and how it ended.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
/// let sup = tokio_custodian::Supervisor::builder().start()?;
/// let w = sup.stats().watcher;
/// assert_eq!((w.state, w.pid), (tokio_custodian::WatcherState::Off, None));
/// # sup.shutdown().await; Ok(()) }
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WatcherStats {
    /// Where it is in its life.
    pub state: WatcherState,
    /// Its pid while it runs (and, once it ended, the pid it had).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// How it ended: `exit 0`, `signal 9`, `reaped elsewhere`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<String>,
}

impl fmt::Display for WatcherStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            WatcherState::Off => "off",
            WatcherState::Watching => "watching",
            WatcherState::Finished => "finished",
            WatcherState::Died => "DIED (a crash now waits for the next sweep)",
            WatcherState::LetGo => "let go",
        };
        f.write_str(state)?;
        if let Some(pid) = self.pid {
            write!(f, " (pid {pid}")?;
            if let Some(e) = &self.ended {
                write!(f, ", {e}")?;
            }
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// Counters of one resource kind at one moment.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
/// let sup = tokio_custodian::Supervisor::builder().start()?;
/// let _a = sup.temp_file().await?;
/// drop(sup.temp_file().await?);
/// let s = sup.stats().kind(tokio_custodian::ResourceKind::TempFile);
/// assert_eq!((s.created, s.live, s.peak, s.failures), (2, 1, 2, 0));
/// # drop(_a); sup.shutdown().await; Ok(()) }
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct KindStats {
    /// Resources of this kind ever registered.
    pub created: u64,
    /// Releases, by the path that released them.
    pub released: BTreeMap<ReleasePath, u64>,
    /// Clean-ups that failed for good (the resource still counts as released: custodian
    /// gave up ownership and reported the failure).
    pub failures: u64,
    /// Clean-ups that failed with a transient error (out of fds or memory, busy) and wait
    /// for a retry: released by their guard, not yet cleaned up. See
    /// [`Supervisor::pending_cleanups`](crate::Supervisor::pending_cleanups).
    #[serde(default)]
    pub pending: u64,
    /// Resources registered now.
    pub live: u64,
    /// The most resources of this kind registered at once.
    pub peak: u64,
}

impl KindStats {
    /// All releases, whatever the path.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// drop(sup.temp_file().await?);
    /// let s = sup.stats().kind(tokio_custodian::ResourceKind::TempFile);
    /// assert_eq!((s.created, s.released_total(), s.live), (1, 1, 0));
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn released_total(&self) -> u64 {
        self.released.values().sum()
    }

    /// Releases by one path.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// use tokio_custodian::{ReleasePath, ResourceKind};
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// sup.temp_file().await?.close().await?;
    /// assert_eq!(sup.stats().kind(ResourceKind::TempFile).released(ReleasePath::Close), 1);
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn released(&self, path: ReleasePath) -> u64 {
        self.released.get(&path).copied().unwrap_or(0)
    }

    /// Releases that happened without the guard: escaped or forgotten at scope end, or
    /// still alive at shutdown.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// use tokio_custodian::ResourceKind;
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// sup.scope("job", async |s| std::mem::forget(s.temp_file().await)).await?;
    /// assert_eq!(sup.stats().kind(ResourceKind::TempFile).leaked(), 1);
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn leaked(&self) -> u64 {
        self.released
            .iter()
            .filter(|(p, _)| p.is_leak())
            .map(|(_, n)| n)
            .sum()
    }
}

/// A serialisable snapshot of a supervisor's counters.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
/// let sup = tokio_custodian::Supervisor::builder().start()?;
/// drop(sup.temp_dir().await?);
/// let stats = sup.stats();
/// assert!(stats.is_consistent());
/// assert_eq!(stats.live(), 0);
/// let json = serde_json::to_value(&stats).unwrap();
/// assert_eq!(json["kinds"]["temp_dir"]["created"], 1);
/// # sup.shutdown().await; Ok(()) }
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StatsSnapshot {
    /// Counters per resource kind.
    pub kinds: BTreeMap<ResourceKind, KindStats>,
    /// Each [`Quota`](crate::Quota)'s use, waits and refusals (empty without quotas); as
    /// [`Supervisor::quotas`](crate::Supervisor::quotas).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quotas: Vec<crate::quota::QuotaUsage>,
    /// The containment tier in force, and why not a stronger one
    /// ([`Builder::containment`](crate::Builder::containment)).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// assert!(!sup.stats().containment.is_cgroup()); // not asked for
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    #[serde(default)]
    pub containment: crate::containment::ContainmentTier,
    /// Crash journal records that could not be written (a full or read-only file
    /// system): each leaves the journal short of a record, so a crash after it may leave
    /// a child that no record names (the environment marker still finds it). Always 0
    /// without a [state dir](crate::Builder::state_dir).
    #[serde(default)]
    pub journal_write_failures: u64,
    /// The watcher ([`Builder::watcher`](crate::Builder::watcher)): off, watching, or
    /// how it ended.
    #[serde(default)]
    pub watcher: WatcherStats,
}

impl StatsSnapshot {
    /// The counters of one kind (all zero if it never occurred).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// assert_eq!(sup.stats().kind(tokio_custodian::ResourceKind::Child).created, 0);
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn kind(&self, kind: ResourceKind) -> KindStats {
        self.kinds.get(&kind).cloned().unwrap_or_default()
    }

    /// Whether `created == released + live` holds for every kind. True whenever no
    /// acquisition or release is in flight.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let _t = sup.temp_file().await?;
    /// assert!(sup.stats().is_consistent());
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn is_consistent(&self) -> bool {
        self.kinds
            .values()
            .all(|k| k.created == k.released_total() + k.live)
    }

    /// Resources registered now, all kinds together.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let _t = sup.temp_dir().await?;
    /// assert_eq!(sup.stats().live(), 1);
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn live(&self) -> u64 {
        self.kinds.values().map(|k| k.live).sum()
    }

    /// Clean-ups waiting for a retry, all kinds together (see [`KindStats::pending`]).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// sup.temp_dir().await?.close().await?;
    /// assert_eq!(sup.stats().pending(), 0);
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn pending(&self) -> u64 {
        self.kinds.values().map(|k| k.pending).sum()
    }
}

impl fmt::Display for StatsSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<14} {:>8} {:>8} {:>6} {:>6} {:>8} {:>8} {:>7}",
            "kind", "created", "released", "live", "peak", "pending", "failures", "leaked"
        )?;
        for (kind, k) in &self.kinds {
            if k.created == 0 {
                continue;
            }
            writeln!(
                f,
                "{:<14} {:>8} {:>8} {:>6} {:>6} {:>8} {:>8} {:>7}",
                kind.as_str(),
                k.created,
                k.released_total(),
                k.live,
                k.peak,
                k.pending,
                k.failures,
                k.leaked()
            )?;
        }
        for q in &self.quotas {
            writeln!(f, "quota {q}")?;
        }
        // Said when asked for: the default (not requested) adds no line.
        if self.containment != crate::containment::ContainmentTier::default() {
            writeln!(f, "containment: {}", self.containment)?;
        }
        if self.watcher.state != WatcherState::Off {
            writeln!(f, "watcher: {}", self.watcher)?;
        }
        Ok(())
    }
}

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
