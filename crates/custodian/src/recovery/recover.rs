//! The one entry point of crash recovery: [`recover`] runs every kind of recovery a caller
//! asks for (a state dir's journals of dead owners; a temp base's abandoned roots, atomic
//! temps and, with `all`, aged entries) and returns one [`RecoveryReport`] with a section
//! per kind. `custodian sweep` is a thin wrapper over it.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::journal::SweepReport;
use crate::leak::duration_ms;

use super::age::{AgeReport, AgeSweep};

/// What [`recover`] should do: a by-value builder; nothing is set by default.
///
/// ```
/// use std::time::Duration;
/// let base = std::env::temp_dir().join(format!("recover-doc-{}", std::process::id()));
/// std::fs::create_dir(&base).unwrap();
/// let report = tokio_custodian::Recovery::new()
///     .temp_base(tokio_custodian::AgeSweep::new(&base, Duration::from_secs(3600)))
///     .run()?;
/// assert!(report.journals.is_none());
/// assert!(report.is_clean(), "{report}");
/// # std::fs::remove_dir(&base).unwrap();
/// # Ok::<(), tokio_custodian::Error>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[must_use = "a Recovery does nothing until it is run"]
pub struct Recovery {
    state_dir: Option<PathBuf>,
    grace: Option<Duration>,
    temp_base: Option<AgeSweep>,
    dry_run: bool,
}

impl Recovery {
    /// Nothing to recover yet: add a [state dir](Self::state_dir) and/or a
    /// [temp base](Self::temp_base).
    ///
    /// ```
    /// let report = tokio_custodian::Recovery::new().run()?;
    /// assert!(report.journals.is_none() && report.age.is_none());
    /// # Ok::<(), tokio_custodian::Error>(())
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Sweep this state dir's journals: for each owner proven dead, stop its children,
    /// remove its temp root, drop its journal (see [`sweep_with_grace`](crate::sweep_with_grace)).
    ///
    /// ```
    /// let r = tokio_custodian::Recovery::new().state_dir("/no/such/dir");
    /// assert!(r.run().is_err()); // a state dir that was asked for must exist
    /// ```
    pub fn state_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.state_dir = Some(dir.as_ref().to_path_buf());
        self
    }

    /// Sweep [`default_state_dir`](crate::default_state_dir) if there is one and it exists
    /// (an absent default is nothing to recover, not an error).
    ///
    /// ```
    /// let report = tokio_custodian::Recovery::new().default_state_dir().run();
    /// # drop(report);
    /// ```
    pub fn default_state_dir(mut self) -> Self {
        self.state_dir = super::default_state_dir().filter(|d| d.exists());
        self
    }

    /// How long a dead owner's children get between SIGTERM and SIGKILL when their record
    /// holds no grace of its own. Default: [`DEFAULT_CHILD_GRACE`](crate::DEFAULT_CHILD_GRACE).
    ///
    /// ```
    /// let r = tokio_custodian::Recovery::new().grace(std::time::Duration::from_secs(2));
    /// # drop(r);
    /// ```
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = Some(grace);
        self
    }

    /// Sweep a temp base with these options: by default custodian's own abandoned
    /// leftovers only; see [`AgeSweep`].
    ///
    /// ```
    /// use std::time::Duration;
    /// let r = tokio_custodian::Recovery::new()
    ///     .temp_base(tokio_custodian::AgeSweep::new("/tmp", Duration::from_secs(86_400)));
    /// # drop(r);
    /// ```
    pub fn temp_base(mut self, sweep: AgeSweep) -> Self {
        self.temp_base = Some(sweep);
        self
    }

    /// Only report: the temp base's sweep removes nothing and takes no lock, and the
    /// journals are not swept at all (that sweep acts only on owners proven dead, and
    /// what it would do depends on processes that a dry run must not signal).
    ///
    /// ```
    /// let r = tokio_custodian::Recovery::new().dry_run(true).run()?;
    /// assert!(r.dry_run);
    /// # Ok::<(), tokio_custodian::Error>(())
    /// ```
    pub fn dry_run(mut self, on: bool) -> Self {
        self.dry_run = on;
        self
    }

    /// Runs it: see [`recover`].
    ///
    /// # Errors
    ///
    /// As [`recover`].
    ///
    /// ```
    /// let report = tokio_custodian::Recovery::new().run()?;
    /// assert!(report.is_clean());
    /// # Ok::<(), tokio_custodian::Error>(())
    /// ```
    pub fn run(self) -> Result<RecoveryReport> {
        recover(self)
    }
}

/// Recovers what crashed owners left, as `options` says: the journals of a state dir
/// first (dead owners' processes stopped, their roots removed), then a temp base. Blocking
/// (it may wait a grace for processes to exit): call it from a blocking thread
/// (`tokio::task::spawn_blocking`) in async code.
///
/// Nothing is acted on without proof that custodian made it and that its owner is gone;
/// what was left alone is in the report, with the reason.
///
/// # Errors
///
/// The first part that could not run at all: [`Error::Io`](crate::Error::Io) naming the
/// state dir ([`Operation::Sweep`](crate::Operation::Sweep)) or the temp base
/// ([`Operation::AgeSweep`](crate::Operation::AgeSweep)); the parts after it do not run.
/// A problem with one journal or one entry is reported, not an error.
///
/// ```
/// let dir = std::env::temp_dir().join(format!("recover-fn-doc-{}", std::process::id()));
/// std::fs::create_dir(&dir).unwrap();
/// std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
/// let report = tokio_custodian::recover(tokio_custodian::Recovery::new().state_dir(&dir))?;
/// assert_eq!(report.journals.as_ref().unwrap().found, 0);
/// # std::fs::remove_dir(&dir).unwrap();
/// # Ok::<(), tokio_custodian::Error>(())
/// ```
pub fn recover(options: Recovery) -> Result<RecoveryReport> {
    let started = Instant::now();
    let grace = options.grace.unwrap_or(crate::DEFAULT_CHILD_GRACE);
    let journals = match &options.state_dir {
        Some(dir) if !options.dry_run => Some(super::sweep_journals(dir, grace)?),
        _ => None,
    };
    let age = match options.temp_base {
        // A dry run of the whole makes the age sweep dry; it never makes a dry one real.
        Some(sweep) if options.dry_run => Some(sweep.dry_run(true).run()?),
        Some(sweep) => Some(sweep.run()?),
        None => None,
    };
    Ok(RecoveryReport {
        journals,
        age,
        dry_run: options.dry_run,
        took: started.elapsed(),
    })
}

/// What [`recover`] did, a section per kind of leftover. `Display` for people, serde for
/// tools.
///
/// ```
/// let report = tokio_custodian::Recovery::new().run()?;
/// assert!(report.is_clean());
/// assert!(report.to_string().contains("clean"));
/// # Ok::<(), tokio_custodian::Error>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RecoveryReport {
    /// Dead owners' journals: their processes stopped, roots removed, journals dropped
    /// (`None`: no state dir, or a dry run).
    pub journals: Option<SweepReport>,
    /// The temp base: abandoned roots and atomic temps (and, with `all`, aged entries)
    /// removed or kept (`None`: no temp base).
    pub age: Option<AgeReport>,
    /// Whether nothing was removed or signalled.
    pub dry_run: bool,
    /// How long it took.
    #[serde(rename = "took_ms", with = "duration_ms")]
    pub took: Duration,
}

impl RecoveryReport {
    /// Whether every part dealt with everything it found: nothing skipped that should have
    /// been acted on, nothing that failed, no survivor.
    ///
    /// ```
    /// assert!(tokio_custodian::RecoveryReport::default().is_clean());
    /// ```
    pub fn is_clean(&self) -> bool {
        self.journals.as_ref().is_none_or(SweepReport::is_clean)
            && self.age.as_ref().is_none_or(AgeReport::is_clean)
    }
}

impl fmt::Display for RecoveryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.journals {
            Some(j) => write!(f, "{j}")?,
            None if self.dry_run => {
                writeln!(
                    f,
                    "journals: not swept (a dry run signals and removes nothing)"
                )?;
            }
            None => writeln!(f, "journals: no state dir to sweep")?,
        }
        if let Some(age) = &self.age {
            write!(f, "{age}")?;
        }
        writeln!(
            f,
            "{}",
            if self.is_clean() {
                "clean"
            } else {
                "NOT clean: see what was skipped or failed above"
            }
        )
    }
}
