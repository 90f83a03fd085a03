//! The shutdown report: what shutdown did, for people (`Display`, tables) and machines
//! (serde).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::kind::{CancelReason, ReleasePath};
use crate::leak::{FailureRecord, LeakRecord, LiveResource, Site, duration_ms};
use crate::stats::StatsSnapshot;

/// How long one phase of shutdown took (JSON: `{"name": ..., "took_ms": ...}`).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
/// let sup = tokio_custodian::Supervisor::builder().start()?;
/// let report = sup.shutdown().await;
/// let names: Vec<&str> = report.phases.iter().map(|p| p.name.as_str()).collect();
/// assert_eq!(names[0], "refuse and cancel");
/// assert_eq!(names.last(), Some(&"remove temp root"));
/// let json = serde_json::to_value(&report.phases[0]).unwrap();
/// assert!(json["took_ms"].is_f64());
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Phase {
    /// The phase's name.
    pub name: String,
    /// How long it took (JSON: `took_ms`, fractional milliseconds).
    #[serde(with = "duration_ms", rename = "took_ms", alias = "took")]
    pub took: Duration,
}

/// What began a shutdown: the first request wins, later ones join it.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
/// use tokio_custodian::ShutdownCause;
/// let sup = tokio_custodian::Supervisor::builder().start()?;
/// let report = sup.shutdown().await;
/// assert_eq!(report.began_by, ShutdownCause::Call);
/// assert_eq!(report.began_by.to_string(), "a shutdown() call");
/// assert_eq!(ShutdownCause::Signal("SIGTERM".into()).to_string(), "SIGTERM");
/// assert_eq!(serde_json::to_string(&report.began_by).unwrap(), r#""call""#);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ShutdownCause {
    /// [`Supervisor::shutdown`](crate::Supervisor::shutdown) or
    /// [`shutdown_now`](crate::Supervisor::shutdown_now) was called (also what a report
    /// from before this field was recorded reads as).
    #[default]
    Call,
    /// A signal caught by the handlers of
    /// [`Builder::handle_signals`](crate::Builder::handle_signals): its name, `SIGINT`
    /// or `SIGTERM` (JSON: `{"signal": "SIGTERM"}`).
    Signal(String),
}

impl fmt::Display for ShutdownCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShutdownCause::Call => f.write_str("a shutdown() call"),
            ShutdownCause::Signal(name) => f.write_str(name),
        }
    }
}

/// What [`Supervisor::shutdown`](crate::Supervisor::shutdown) did: readable as a table
/// (`Display`), serialisable for machines.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
/// let sup = tokio_custodian::Supervisor::builder().start()?;
/// drop(sup.temp_file().await?);
/// let report = sup.shutdown().await;
/// assert!(report.is_clean());
/// // For people: a table that begins with what began the shutdown.
/// assert!(report.to_string().starts_with("shutdown (graceful, supervisor shutting down) began by a shutdown() call"));
/// // For machines: JSON with durations in milliseconds.
/// let json = serde_json::to_value(&report).unwrap();
/// assert_eq!(json["began_by"], "call");
/// assert_eq!(json["stats"]["kinds"]["temp_file"]["released"]["drop"], 1);
/// assert!(json["took_ms"].as_f64().unwrap() >= 0.0);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// What began it: a call, or a signal (SIGINT, SIGTERM).
    #[serde(default)]
    pub began_by: ShutdownCause,
    /// The whole shutdown (JSON: `took_ms`).
    #[serde(with = "duration_ms", rename = "took_ms", alias = "took")]
    pub took: Duration,
    /// Each phase, in order.
    pub phases: Vec<Phase>,
    /// Why the root was cancelled, as scopes saw it last: [`CancelReason::Shutdown`],
    /// raised to [`CancelReason::ForcedShutdown`] or [`CancelReason::Deadline`].
    #[serde(default = "default_reason")]
    pub reason: CancelReason,
    /// Whether a forced shutdown was requested (before or during shutdown).
    #[serde(default)]
    pub forced: bool,
    /// Each shutdown hook, in the order they ran.
    #[serde(default)]
    pub hooks: Vec<HookReport>,
    /// Whether every scope finished within the grace period.
    pub scopes_finished: bool,
    /// Whether every background clean-up finished within the grace period.
    pub cleanups_finished: bool,
    /// Resources shutdown had to reclaim that nobody else would have released: held by
    /// the root scope ([`ReleasePath::Shutdown`]) or left behind by a scope that had
    /// ended ([`ReleasePath::ScopeEnd`]). Leaks, with their creation sites.
    pub alive_at_shutdown: Vec<LiveResource>,
    /// Resources held by scopes that were still running when shutdown cut them off (the
    /// grace period ran out, or the shutdown was forced), reclaimed by shutdown as
    /// [`ReleasePath::Cancelled`]: not leaks, but work that did not finish in time.
    #[serde(default)]
    pub cut_off: Vec<LiveResource>,
    /// Every resource released without its guard during the supervisor's life.
    pub leaks: Vec<LeakRecord>,
    /// Every clean-up that failed during the supervisor's life, with its error.
    pub failures: Vec<FailureRecord>,
    /// The counters after shutdown.
    pub stats: StatsSnapshot,
    /// The temp root.
    pub temp_root: PathBuf,
    /// Why the temp root could not be removed, if it could not.
    pub temp_root_error: Option<String>,
    /// What the child-subreaper opt-in adopted, stopped and reaped during the
    /// supervisor's life (all zero without it).
    #[serde(default)]
    pub adopted: crate::stats::AdoptionStats,
    /// How the drain went; `None` without one ([`Builder::drain`](crate::Builder::drain)
    /// off, or the shutdown forced before it began).
    #[serde(default)]
    pub drain: Option<DrainReport>,
    /// Why the supervisor's cgroup could not be removed, if it could not (the cgroup
    /// tier; the tier itself is in [`stats`](Self::stats)`.containment`).
    #[serde(default)]
    pub cgroup_error: Option<String>,
}

/// How shutdown's drain phase went (see [`Builder::drain`](crate::Builder::drain)).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
/// use std::time::Duration;
/// let sup = tokio_custodian::Supervisor::builder().drain(Duration::from_secs(5)).start()?;
/// let report = sup.shutdown().await; // nothing running: the drain ends at once
/// let drain = report.drain.expect("a drain was configured");
/// assert_eq!((drain.scopes_at_start, drain.scopes_finished, drain.ran_out), (0, 0, false));
/// assert_eq!(drain.budget, Duration::from_secs(5));
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DrainReport {
    /// Its budget (JSON: `budget_ms`).
    #[serde(with = "duration_ms", rename = "budget_ms", alias = "budget")]
    pub budget: Duration,
    /// How long it took (JSON: `took_ms`).
    #[serde(with = "duration_ms", rename = "took_ms", alias = "took")]
    pub took: Duration,
    /// Top-level scopes running when it began.
    pub scopes_at_start: usize,
    /// Top-level scopes that ended during it by themselves (returned, or their future
    /// was dropped, as a request whose client hung up): none was cancelled. Each was
    /// counted in `scopes_at_start`: never more than it.
    pub scopes_finished: usize,
    /// Whether it ended before every top-level scope had: its budget or the grace ran
    /// out, or shutdown was forced. The scopes left were then cancelled.
    pub ran_out: bool,
    /// New top-level scopes, root-scope resources and tasks refused with
    /// [`Error::Draining`](crate::Error::Draining) during the drain.
    pub refused: u64,
}

fn default_reason() -> CancelReason {
    CancelReason::Shutdown
}

impl ShutdownReport {
    /// Nothing leaked, nothing failed, nothing was left over, no hook overran.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// drop(sup.temp_file().await?);
    /// assert!(sup.shutdown().await.is_clean());
    /// # Ok(()) }
    /// ```
    pub fn is_clean(&self) -> bool {
        self.alive_at_shutdown.is_empty()
            && self.cut_off.is_empty()
            && self.leaks.is_empty()
            && self.failures.is_empty()
            && self.scopes_finished
            && self.cleanups_finished
            && self.temp_root_error.is_none()
            && self.cgroup_error.is_none()
            && self.adopted.live == 0
            && self.stats.live() == 0
            && self
                .hooks
                .iter()
                .all(|h| h.outcome == HookOutcome::Completed)
    }

    /// Releases during the supervisor's life, all kinds together, by release path.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// use tokio_custodian::ReleasePath;
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// drop(sup.temp_file().await?);
    /// let _kept = sup.temp_file().await?;
    /// let r = sup.shutdown().await;
    /// assert_eq!(r.released_by_path()[&ReleasePath::Drop], 1);
    /// assert_eq!(r.released_by_path()[&ReleasePath::Shutdown], 1);
    /// # Ok(()) }
    /// ```
    pub fn released_by_path(&self) -> BTreeMap<ReleasePath, u64> {
        let mut m = BTreeMap::new();
        for k in self.stats.kinds.values() {
            for (p, n) in &k.released {
                if *n > 0 {
                    *m.entry(*p).or_insert(0) += n;
                }
            }
        }
        m
    }

    /// The hooks that did not complete within their budget (overran, were cut or
    /// skipped by a forced shutdown, or panicked).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// use std::time::Duration;
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// sup.on_shutdown("slow", Duration::from_millis(10), |_| async {
    ///     tokio::time::sleep(Duration::from_secs(60)).await;
    /// })?;
    /// let r = sup.shutdown().await;
    /// assert_eq!(r.failed_hooks()[0].name, "slow");
    /// # Ok(()) }
    /// ```
    pub fn failed_hooks(&self) -> Vec<&HookReport> {
        self.hooks
            .iter()
            .filter(|h| h.outcome != HookOutcome::Completed)
            .collect()
    }
}

impl fmt::Display for ShutdownReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = if self.forced { "forced" } else { "graceful" };
        writeln!(
            f,
            "shutdown ({mode}, {}) began by {}, took {:.3?}",
            self.reason, self.began_by, self.took
        )?;
        writeln!(f, "  {:<24} {:>12}", "phase", "took")?;
        for p in &self.phases {
            writeln!(f, "  {:<24} {:>12.3?}", p.name, p.took)?;
        }
        if !self.hooks.is_empty() {
            writeln!(
                f,
                "\n  {:<24} {:>12} {:>12}  outcome",
                "hook", "budget", "took"
            )?;
            for h in &self.hooks {
                writeln!(
                    f,
                    "  {:<24} {:>12.3?} {:>12.3?}  {}",
                    h.name, h.budget, h.took, h.outcome
                )?;
            }
        }
        if let Some(d) = &self.drain {
            writeln!(
                f,
                "\ndrain: {} of {} top-level scopes finished in {:.3?} (budget {:.3?}){}, {} refused",
                d.scopes_finished,
                d.scopes_at_start,
                d.took,
                d.budget,
                if d.ran_out { ", RAN OUT" } else { "" },
                d.refused
            )?;
        }
        writeln!(
            f,
            "\nscopes finished in time: {}, clean-ups finished in time: {}",
            yes_no(self.scopes_finished),
            yes_no(self.cleanups_finished)
        )?;
        writeln!(f)?;
        write!(f, "{}", self.stats)?;
        let by_path = self.released_by_path();
        if !by_path.is_empty() {
            writeln!(f, "\n  {:<24} {:>8}", "released by", "count")?;
            for (p, n) in by_path {
                writeln!(f, "  {:<24} {:>8}", p.as_str(), n)?;
            }
        }
        if !self.cut_off.is_empty() {
            writeln!(f, "\ncut off by the deadline ({}):", self.cut_off.len())?;
            for r in &self.cut_off {
                writeln!(f, "  {r}")?;
            }
        }
        if !self.alive_at_shutdown.is_empty() {
            writeln!(f, "\nalive at shutdown ({}):", self.alive_at_shutdown.len())?;
            for r in &self.alive_at_shutdown {
                writeln!(f, "  {r}")?;
            }
        }
        if !self.leaks.is_empty() {
            writeln!(f, "\nleaked ({}):", self.leaks.len())?;
            for r in &self.leaks {
                writeln!(f, "  {r}")?;
            }
        }
        if !self.failures.is_empty() {
            writeln!(f, "\nclean-up failures ({}):", self.failures.len())?;
            for r in &self.failures {
                writeln!(f, "  {r}")?;
            }
        }
        let a = &self.adopted;
        if a.adopted > 0 || a.unproven_zombies > 0 {
            writeln!(
                f,
                "\nadopted (child subreaper): {} adopted, {} reaped, {} needed SIGKILL, {} left, {} unproven zombies left alone",
                a.adopted, a.reaped, a.kill_needed, a.live, a.unproven_zombies
            )?;
        }
        if let (crate::containment::ContainmentTier::Cgroup { path }, Some(e)) =
            (&self.stats.containment, &self.cgroup_error)
        {
            writeln!(f, "\ncgroup {} NOT removed: {e}", path.display())?;
        }
        match &self.temp_root_error {
            None => writeln!(f, "\ntemp root {} removed", self.temp_root.display()),
            Some(e) => writeln!(
                f,
                "\ntemp root {} NOT removed: {e}",
                self.temp_root.display()
            ),
        }
    }
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "NO" }
}

/// How a shutdown hook ended.
///
/// ```
/// use tokio_custodian::HookOutcome;
/// assert_eq!(HookOutcome::Completed.to_string(), "completed");
/// assert_eq!(HookOutcome::Overran.to_string(), "OVERRAN, aborted");
/// assert_eq!(serde_json::to_string(&HookOutcome::Skipped).unwrap(), r#""skipped""#);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum HookOutcome {
    /// It finished within its budget.
    Completed,
    /// It was still running when its budget ran out, and was aborted.
    Overran,
    /// It panicked (the message, if it was a string).
    Panicked(String),
    /// A forced shutdown aborted it while it ran.
    Cut,
    /// A forced shutdown skipped it: it never ran.
    Skipped,
}

/// One shutdown hook's run, as listed in the
/// [`ShutdownReport`](crate::ShutdownReport).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
/// use std::time::Duration;
/// let sup = tokio_custodian::Supervisor::builder().start()?;
/// sup.on_shutdown("flush", Duration::from_secs(1), |_| async {})?;
/// let report = sup.shutdown().await;
/// let hook = &report.hooks[0];
/// assert_eq!((hook.name.as_str(), &hook.outcome), ("flush", &tokio_custodian::HookOutcome::Completed));
/// assert!(hook.took <= hook.budget);
/// assert!(hook.site.file.ends_with(".rs"));
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HookReport {
    /// The name it was registered with.
    pub name: String,
    /// Its budget (JSON: `budget_ms`).
    #[serde(with = "duration_ms", rename = "budget_ms", alias = "budget")]
    pub budget: Duration,
    /// How long it ran (JSON: `took_ms`).
    #[serde(with = "duration_ms", rename = "took_ms", alias = "took")]
    pub took: Duration,
    /// How it ended.
    pub outcome: HookOutcome,
    /// Where it was registered.
    pub site: Site,
}

impl fmt::Display for HookOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HookOutcome::Completed => f.write_str("completed"),
            HookOutcome::Overran => f.write_str("OVERRAN, aborted"),
            HookOutcome::Panicked(m) => write!(f, "PANICKED: {m}"),
            HookOutcome::Cut => f.write_str("cut by forced shutdown"),
            HookOutcome::Skipped => f.write_str("skipped (forced)"),
        }
    }
}
