//! What a crash sweep did: readable as text (`Display`), serialisable for machines.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::leak::duration_ms;

/// What [`tokio_custodian::sweep`](crate::sweep) or
/// [`Supervisor::sweep`](crate::Supervisor::sweep) found in a state directory and did.
///
/// ```
/// let report = tokio_custodian::SweepReport::default();
/// assert!(report.is_clean());
/// let json = serde_json::to_string(&report).unwrap();
/// assert!(json.contains("\"found\":0") && json.contains("\"took_ms\":"));
/// println!("{report}");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SweepReport {
    /// The state directory swept.
    pub state_dir: PathBuf,
    /// How many journals it held (this process's own included).
    pub found: usize,
    /// Owners proven dead, whose journals were acted on.
    pub dead_owners: Vec<DeadOwner>,
    /// Process groups of dead owners that were stopped.
    pub stopped: Vec<StoppedGroup>,
    /// Temp roots of dead owners that were removed.
    pub removed: Vec<PathBuf>,
    /// Dead owners' cgroups (the cgroup containment tier) whose every member was killed
    /// with `cgroup.kill` (whatever it did: `setsid`, a double fork, a cleared
    /// environment), then removed with the cgroups below them.
    #[serde(default)]
    pub cgroups: Vec<PathBuf>,
    /// Journals dropped after everything they recorded was dealt with.
    pub dropped: Vec<PathBuf>,
    /// What was left alone, and why.
    pub skipped: Vec<Skipped>,
    /// Members of dead owners' trees still running after the last SIGKILL round (or
    /// recorded so by an earlier sweep and still running): never called stopped. Any
    /// makes the report unclean; their journal is kept, and never signals again.
    #[serde(default)]
    pub survivors: Vec<Survivor>,
    /// Damaged journals, acted on up to their damage and renamed to `<name>.corrupt`
    /// for a person: never swept again, never deleted.
    #[serde(default)]
    pub set_aside: Vec<PathBuf>,
    /// Processes that matched a dead owner's group, marker or cgroup and were never
    /// signalled:
    /// the sweeping process and its ancestors.
    #[serde(default)]
    pub spared: Vec<Spared>,
    /// How long the sweep took (`took_ms` in JSON).
    #[serde(rename = "took_ms", alias = "took", with = "duration_ms")]
    pub took: Duration,
}

impl SweepReport {
    /// Groups that ended within the grace period after SIGTERM.
    ///
    /// ```
    /// let report = tokio_custodian::SweepReport::default();
    /// assert_eq!(report.term_honoured() + report.kill_needed(), report.stopped.len());
    /// ```
    pub fn term_honoured(&self) -> usize {
        self.stopped.iter().filter(|g| !g.kill_needed).count()
    }

    /// Groups that needed SIGKILL.
    ///
    /// ```
    /// let report = tokio_custodian::SweepReport::default();
    /// assert_eq!(report.term_honoured() + report.kill_needed(), report.stopped.len());
    /// ```
    pub fn kill_needed(&self) -> usize {
        self.stopped.iter().filter(|g| g.kill_needed).count()
    }

    /// Whether nothing was skipped for a reason worth a look: skips because an owner is
    /// alive (or its journal locked) and children assumed gone after a reboot are normal.
    /// Survivors make it unclean too.
    ///
    /// ```
    /// # fn main() -> tokio_custodian::Result<()> {
    /// # let dir = std::env::temp_dir().join(format!("clean-doc-{}", std::process::id()));
    /// # std::fs::create_dir(&dir).unwrap();
    /// # std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    /// let report = tokio_custodian::Recovery::new().state_dir(&dir).run()?;
    /// let journals = report.journals.unwrap();
    /// if !journals.is_clean() {
    ///     eprintln!("{journals}"); // what was skipped, and why; who survived
    /// }
    /// # std::fs::remove_dir(&dir).unwrap(); Ok(()) }
    /// ```
    pub fn is_clean(&self) -> bool {
        self.survivors.is_empty()
            && self.skipped.iter().all(|s| {
                matches!(
                    s.reason,
                    SkipReason::OwnerAlive | SkipReason::Locked | SkipReason::OtherBoot
                )
            })
    }
}

/// A process of a dead owner's tree that a sweep could not stop.
///
/// ```
/// let report = tokio_custodian::SweepReport::default();
/// for s in &report.survivors {
///     eprintln!("pid {} still runs: {}", s.pid, s.reason);
/// }
/// assert!(report.survivors.is_empty() && report.is_clean());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Survivor {
    /// Its pid.
    pub pid: u32,
    /// Its start time, in clock ticks since boot: with the pid, its identity.
    pub start_time: u64,
    /// The journal that recorded its owner (kept).
    pub journal: PathBuf,
    /// Why it still runs.
    pub reason: SurvivorReason,
}

/// Why a process outlived a sweep.
///
/// ```
/// use tokio_custodian::SurvivorReason;
/// assert_eq!(SurvivorReason::SignalRefused.to_string(), "signal refused (runs as another user)");
/// assert_eq!(serde_json::to_string(&SurvivorReason::Uninterruptible).unwrap(), "\"uninterruptible\"");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SurvivorReason {
    /// The kernel refused the signal (`EPERM`: it runs as another user now).
    SignalRefused,
    /// Still running after SIGKILL, in uninterruptible sleep (stuck in the kernel).
    Uninterruptible,
    /// Still running after every SIGKILL round.
    StillRunning,
    /// An earlier sweep could not stop it and it still runs; later sweeps only look.
    StillRunningSinceEarlierSweep,
}

impl fmt::Display for SurvivorReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SurvivorReason::SignalRefused => "signal refused (runs as another user)",
            SurvivorReason::Uninterruptible => "stuck in the kernel (uninterruptible sleep)",
            SurvivorReason::StillRunning => "still running after SIGKILL",
            SurvivorReason::StillRunningSinceEarlierSweep => {
                "still running since an earlier sweep could not stop it (not signalled again)"
            }
        })
    }
}

/// A process a sweep matched and never signalled.
///
/// ```
/// let report = tokio_custodian::SweepReport::default();
/// for s in &report.spared {
///     eprintln!("spared pid {}: {}", s.pid, s.reason);
/// }
/// assert!(report.spared.is_empty());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Spared {
    /// Its pid.
    pub pid: u32,
    /// Why it was spared.
    pub reason: SpareReason,
}

/// Why a sweep spared a process that matched.
///
/// ```
/// use tokio_custodian::SpareReason;
/// assert_eq!(SpareReason::Sweeper.to_string(), "the sweeping process itself");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SpareReason {
    /// It is the sweeping process.
    Sweeper,
    /// It is an ancestor of the sweeping process (its shell, its runner).
    SweeperAncestor,
    /// It is in the sweeping process's own process group: a partner of its pipeline
    /// (`custodian sweep | tee log` run from a shell inside the dead owner's tree).
    SweeperGroup,
}

impl fmt::Display for SpareReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SpareReason::Sweeper => "the sweeping process itself",
            SpareReason::SweeperAncestor => "an ancestor of the sweeping process",
            SpareReason::SweeperGroup => "in the sweeping process's own process group",
        })
    }
}

/// An owner proven dead.
///
/// ```
/// let report = tokio_custodian::SweepReport::default();
/// for o in &report.dead_owners {
///     println!("pid {} ({}), journal {}", o.pid, o.proof, o.journal.display());
/// }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DeadOwner {
    /// Its journal.
    pub journal: PathBuf,
    /// Its pid.
    pub pid: u32,
    /// Its start time, in clock ticks since boot (`/proc/PID/stat` field 22).
    pub start_time: u64,
    /// The boot it ran in.
    pub boot_id: String,
    /// How its death was proven.
    pub proof: DeathProof,
}

/// How an owner's death was proven.
///
/// ```
/// assert_eq!(tokio_custodian::DeathProof::PidGone.to_string(), "pid gone");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DeathProof {
    /// No process has its pid.
    PidGone,
    /// Its pid belongs to a process with another start time.
    StartTimeDiffers,
    /// It ran in another boot.
    OtherBoot,
    /// It has exited and waits to be reaped (a zombie): its files and locks are closed.
    Exited,
}

impl fmt::Display for DeathProof {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DeathProof::PidGone => "pid gone",
            DeathProof::StartTimeDiffers => "pid reused (another start time)",
            DeathProof::OtherBoot => "ran in another boot",
            DeathProof::Exited => "exited (a zombie)",
        })
    }
}

/// A process group of a dead owner's child, stopped.
///
/// ```
/// let report = tokio_custodian::SweepReport::default();
/// for g in &report.stopped {
///     println!("group {:?}: {} process(es), SIGKILL needed: {}", g.pgid, g.processes, g.kill_needed);
/// }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StoppedGroup {
    /// The group id (the recorded child's pid); `None` for the processes found outside
    /// any recorded group (a child killed with its owner before its record was written,
    /// or one that left its group) by the dead owner's marker in their environment, or,
    /// in the cgroup tier, by its proven cgroup: one entry for the marker's, one for
    /// the cgroup's.
    pub pgid: Option<u32>,
    /// How many processes were signalled and ended, each proven a member by its start
    /// time (a process that outlived the signals is a [`Survivor`], not counted here).
    pub processes: usize,
    /// Whether SIGKILL was needed after the grace period.
    pub kill_needed: bool,
}

/// Something a sweep left alone.
///
/// ```
/// let report = tokio_custodian::SweepReport::default();
/// for s in &report.skipped {
///     println!("left {} alone: {}", s.what, s.reason);
/// }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Skipped {
    /// What: a journal or temp root path, or `pid N`.
    pub what: String,
    /// Why.
    pub reason: SkipReason,
}

/// Why a sweep left something alone.
///
/// ```
/// use tokio_custodian::SkipReason;
/// assert_eq!(SkipReason::OwnerAlive.to_string(), "owner alive");
/// let why = SkipReason::Failed { detail: "EIO".into() };
/// assert!(why.to_string().contains("EIO"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum SkipReason {
    /// The journal's owner is alive (same pid, start time and boot).
    OwnerAlive,
    /// The journal is locked: its owner is alive, or another sweep has it.
    Locked,
    /// The recorded pid now belongs to another process (another start time).
    PidReused,
    /// The record is from another boot: its processes are gone with that boot.
    OtherBoot,
    /// A record does not check out (torn, truncated, flipped, unknown); it and every
    /// record after it are ignored. The journal is kept.
    Corrupt {
        /// Byte offset of the bad record.
        offset: usize,
        /// What is wrong with it.
        detail: String,
    },
    /// The journal has no valid owner record: nothing can be proven, nothing is done.
    NoOwner,
    /// A recorded path is not one custodian would have made (relative, `..`, a
    /// symlinked component, another object at the name, another user's, on another
    /// mount).
    UnsafePath {
        /// Why.
        detail: String,
    },
    /// The journal itself is not ours (another user's, readable by others, not a
    /// regular file).
    NotOurs {
        /// Why.
        detail: String,
    },
    /// The journal was written in another pid namespace: its pids mean nothing here,
    /// so nothing of it is proven and nothing is done.
    OtherPidNamespace,
    /// The sweeping process (or one of its ancestors) runs inside the dead owner's
    /// cgroup: `cgroup.kill` would kill the sweeper, so the cgroup is left to a sweep
    /// run from outside it (its other members in the recorded groups or carrying the
    /// marker were stopped; the cgroup's own members are not looked for from inside it,
    /// where the sweeper's own children are too; the journal is kept).
    SweeperInsideCgroup,
    /// A record does not match what custodian writes in its journal (a child whose
    /// process group is not its own, a file name that is not its owner record's): the
    /// journal is forged or damaged; nothing of it is acted on, and it is kept.
    Mismatch {
        /// What does not match.
        detail: String,
    },
    /// A whole, checksummed record of a kind this version does not know: the journal
    /// was written by a newer version. Nothing of it is acted on, and it is kept as is
    /// for that version's sweep.
    NewerVersion {
        /// Byte offset of the record.
        offset: usize,
        /// Its tag.
        tag: u8,
    },
    /// The journal file was removed while its owner lived (an operator's `rm`, an age
    /// sweep of the state dir). Only the owner's watcher knows this, from what the owner
    /// told it: it stopped the children it served, their escapees and the processes
    /// carrying the owner's marker; the temp root and cgroups, recorded only in the
    /// journal, were left.
    JournalRemoved,
    /// An operation failed; the journal is kept for the next sweep.
    Failed {
        /// The error.
        detail: String,
    },
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::OwnerAlive => f.write_str("owner alive"),
            SkipReason::Locked => f.write_str("locked by a live owner or another sweep"),
            SkipReason::PidReused => f.write_str("pid reused by another process"),
            SkipReason::OtherBoot => f.write_str("from another boot: assumed gone"),
            SkipReason::Corrupt { offset, detail } => {
                write!(f, "corrupt record at byte {offset}: {detail}")
            }
            SkipReason::NoOwner => f.write_str("no valid owner record"),
            SkipReason::UnsafePath { detail } => write!(f, "unsafe path: {detail}"),
            SkipReason::NotOurs { detail } => write!(f, "not ours: {detail}"),
            SkipReason::SweeperInsideCgroup => f.write_str(
                "the sweeper runs inside this cgroup: left to a sweep run from outside it",
            ),
            SkipReason::OtherPidNamespace => {
                f.write_str("written in another pid namespace: nothing proven, nothing done")
            }
            SkipReason::Mismatch { detail } => {
                write!(f, "does not match its journal, nothing done: {detail}")
            }
            SkipReason::NewerVersion { offset, tag } => write!(
                f,
                "written by a newer version (record tag {tag} at byte {offset}): left for it"
            ),
            SkipReason::JournalRemoved => f.write_str(
                "removed under its live owner: the children it served and its marked \
                 processes were stopped, its temp root and cgroups were left",
            ),
            SkipReason::Failed { detail } => write!(f, "failed: {detail}"),
        }
    }
}

impl fmt::Display for SweepReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "sweep of {}: {} journal(s), {} dead owner(s), {} group(s) stopped \
             ({} on SIGTERM, {} needed SIGKILL), {} temp root(s) removed, in {:?}",
            self.state_dir.display(),
            self.found,
            self.dead_owners.len(),
            self.stopped.len(),
            self.term_honoured(),
            self.kill_needed(),
            self.removed.len(),
            self.took,
        )?;
        for o in &self.dead_owners {
            writeln!(
                f,
                "  dead owner pid {} ({}): {}",
                o.pid,
                o.proof,
                o.journal.display()
            )?;
        }
        for g in &self.stopped {
            let how = if g.kill_needed { "SIGKILL" } else { "SIGTERM" };
            match g.pgid {
                Some(pgid) => write!(f, "  stopped group {pgid}")?,
                None => f.write_str("  stopped unrecorded descendants")?,
            }
            writeln!(f, " ({} process(es), {how})", g.processes)?;
        }
        for p in &self.removed {
            writeln!(f, "  removed {}", p.display())?;
        }
        for p in &self.cgroups {
            writeln!(f, "  killed and removed cgroup {}", p.display())?;
        }
        for s in &self.survivors {
            writeln!(f, "  survivor pid {}: {}", s.pid, s.reason)?;
        }
        for s in &self.spared {
            writeln!(f, "  spared pid {}: {}", s.pid, s.reason)?;
        }
        for s in &self.skipped {
            writeln!(f, "  skipped {}: {}", s.what, s.reason)?;
        }
        Ok(())
    }
}
