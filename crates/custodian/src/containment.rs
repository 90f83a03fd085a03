//! Containment tiers: how a managed child's whole tree is held, chosen once at `start`
//! ([`Builder::containment`](crate::Builder::containment)) and reported in the stats, the
//! shutdown report and a `tracing` event.
//!
//! 1. [`ContainmentTier::Cgroup`]: each child runs in a cgroup v2 of its own, below one
//!    the supervisor creates in its own cgroup; its release ends with `cgroup.kill`, and
//!    it is stopped when `cgroup.events` says `populated 0`.
//! 2. [`ContainmentTier::ProcessGroup`]: a process group per child, plus the crash
//!    journal's environment marker and the child-subreaper opt-in when those are on.
//!
//! The cgroup tier is proven before it is chosen (`SupervisorCgroup::probe`: a forked
//! process enters a fresh cgroup, `cgroup.kill` takes a write, the cgroup is removed).

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

mod limits;

pub(crate) use limits::Limits;
pub use limits::{Controller, LimitUnavailable};

use crate::error::{Error, Operation};
use crate::sys::cgroup::discover;
use crate::sys::cgroup::{ProbeFailure, SupervisorCgroup};

/// Which containment a supervisor asks for
/// ([`Builder::containment`](crate::Builder::containment)).
///
/// ```
/// use tokio_custodian::Containment;
/// assert_eq!(Containment::default(), Containment::Never);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Containment {
    /// The cgroup tier where a writable cgroup v2 is delegated to this process, the
    /// process-group tier otherwise (the reason is reported).
    Auto,
    /// The cgroup tier or a failed `start`.
    Required,
    /// The process-group tier (the library's default: a spawn in a cgroup forks instead
    /// of `posix_spawn`, see `docs/processes.md`).
    #[default]
    Never,
}

/// The containment in force: what [`StatsSnapshot::containment`](crate::StatsSnapshot::containment)
/// (and so [`Supervisor::stats`](crate::Supervisor::stats) and the shutdown report) says.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
/// use tokio_custodian::{ContainmentTier, Unavailable};
/// let sup = tokio_custodian::Supervisor::builder().start()?;
/// assert_eq!(
///     sup.stats().containment,
///     ContainmentTier::ProcessGroup { reason: Unavailable::NotRequested }
/// );
/// # sup.shutdown().await; Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "tier", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ContainmentTier {
    /// Every managed child in a cgroup of its own below `path`, the supervisor's cgroup.
    Cgroup {
        /// The supervisor's cgroup (removed at shutdown).
        path: PathBuf,
    },
    /// Process groups (plus the journal's marker and the child subreaper where they are
    /// on), because the cgroup tier was not available or not asked for.
    ProcessGroup {
        /// Why not the cgroup tier.
        reason: Unavailable,
    },
}

impl Default for ContainmentTier {
    /// The process-group tier, not requested.
    fn default() -> Self {
        ContainmentTier::ProcessGroup {
            reason: Unavailable::NotRequested,
        }
    }
}

impl ContainmentTier {
    /// Whether this is the cgroup tier.
    ///
    /// ```
    /// let t = tokio_custodian::ContainmentTier::Cgroup { path: "/sys/fs/cgroup/x".into() };
    /// assert!(t.is_cgroup());
    /// ```
    pub fn is_cgroup(&self) -> bool {
        matches!(self, ContainmentTier::Cgroup { .. })
    }
}

impl fmt::Display for ContainmentTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ContainmentTier::Cgroup { path } => write!(f, "cgroup ({})", path.display()),
            ContainmentTier::ProcessGroup { reason } => {
                write!(f, "process group (no cgroup: {reason})")
            }
        }
    }
}

/// Why the cgroup tier is not in force: what is missing.
///
/// ```
/// let why = tokio_custodian::Unavailable::NotMounted;
/// assert_eq!(why.to_string(), "no cgroup2 mount in /proc/self/mountinfo");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "missing", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Unavailable {
    /// [`Containment::Never`].
    NotRequested,
    /// `/proc/self/mountinfo` or `/proc/self/cgroup` could not be read.
    NoProc {
        /// The error.
        error: String,
    },
    /// No cgroup2 file system is mounted (or it is covered by another mount).
    NotMounted,
    /// The process has no cgroup v2 (`/proc/self/cgroup` has no `0::` line).
    NoOwnCgroup,
    /// The process's cgroup is not visible under any cgroup2 mount (another cgroup
    /// namespace's mount, a bind mount of another subtree); `mount` is the last listed.
    OutsideMount {
        /// The process's cgroup.
        cgroup: PathBuf,
        /// The mount point.
        mount: PathBuf,
    },
    /// The cgroup2 mount is read-only.
    ReadOnly {
        /// The mount point.
        mount: PathBuf,
    },
    /// A cgroup cannot be created in the process's cgroup (no delegation to this user).
    NotWritable {
        /// The process's cgroup directory.
        path: PathBuf,
        /// The error.
        error: String,
    },
    /// A new process cannot be moved from the process's cgroup into one it created (the
    /// process's own `cgroup.procs` is not delegated, or `nsdelegate` draws the line).
    NoDelegation {
        /// The process's cgroup directory.
        path: PathBuf,
        /// The error.
        error: String,
        /// Whether the mount has `nsdelegate`.
        nsdelegate: bool,
    },
    /// `cgroup.kill` is missing (Linux before 5.14) or refuses writes.
    NoKill {
        /// The cgroup tried.
        path: PathBuf,
        /// The error.
        error: String,
    },
}

impl Unavailable {
    /// What is missing, if `err` is the error of a [`Containment::Required`] that could
    /// not be had.
    ///
    /// ```
    /// let err = tokio_custodian::Error::Draining { op: tokio_custodian::Operation::Spawn };
    /// assert_eq!(tokio_custodian::Unavailable::of(&err), None);
    /// ```
    pub fn of(err: &Error) -> Option<&Unavailable> {
        match err {
            Error::Io { source, .. } => source.get_ref()?.downcast_ref(),
            _ => None,
        }
    }

    fn io_kind(&self) -> io::ErrorKind {
        match self {
            Unavailable::NotMounted
            | Unavailable::NoOwnCgroup
            | Unavailable::OutsideMount { .. } => io::ErrorKind::NotFound,
            Unavailable::ReadOnly { .. } => io::ErrorKind::ReadOnlyFilesystem,
            Unavailable::NotWritable { .. } | Unavailable::NoDelegation { .. } => {
                io::ErrorKind::PermissionDenied
            }
            Unavailable::NoKill { .. } => io::ErrorKind::Unsupported,
            Unavailable::NotRequested | Unavailable::NoProc { .. } => io::ErrorKind::Other,
        }
    }

    /// The path an error names: where the missing piece was looked for.
    fn path(&self) -> PathBuf {
        match self {
            Unavailable::NotRequested => PathBuf::new(),
            Unavailable::NoProc { .. } | Unavailable::NotMounted => {
                PathBuf::from("/proc/self/mountinfo")
            }
            Unavailable::NoOwnCgroup => PathBuf::from("/proc/self/cgroup"),
            Unavailable::OutsideMount { cgroup, .. } => cgroup.clone(),
            Unavailable::ReadOnly { mount } => mount.clone(),
            Unavailable::NotWritable { path, .. }
            | Unavailable::NoDelegation { path, .. }
            | Unavailable::NoKill { path, .. } => path.clone(),
        }
    }
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unavailable::NotRequested => f.write_str("not requested"),
            Unavailable::NoProc { error } => write!(f, "cannot read /proc/self: {error}"),
            Unavailable::NotMounted => f.write_str("no cgroup2 mount in /proc/self/mountinfo"),
            Unavailable::NoOwnCgroup => f.write_str("no cgroup v2 line in /proc/self/cgroup"),
            Unavailable::OutsideMount { cgroup, mount } => write!(
                f,
                "this process's cgroup {} is not under the cgroup2 mount {}",
                cgroup.display(),
                mount.display()
            ),
            Unavailable::ReadOnly { mount } => {
                write!(f, "the cgroup2 mount {} is read-only", mount.display())
            }
            Unavailable::NotWritable { path, error } => {
                write!(f, "cannot create a cgroup in {}: {error}", path.display())
            }
            Unavailable::NoDelegation {
                path,
                error,
                nsdelegate,
            } => write!(
                f,
                "cannot move a process from {} into a cgroup below it: {error}{}",
                path.display(),
                if *nsdelegate {
                    " (mounted with nsdelegate)"
                } else {
                    ""
                }
            ),
            Unavailable::NoKill { path, error } => {
                write!(f, "no usable cgroup.kill in {}: {error}", path.display())
            }
        }
    }
}

impl std::error::Error for Unavailable {}

/// The containment a supervisor runs with: its tier and, in the cgroup tier, the
/// supervisor's cgroup (held by every child's cgroup too).
#[derive(Debug, Default)]
pub(crate) struct Contained {
    pub(crate) tier: ContainmentTier,
    pub(crate) cgroup: Option<Arc<SupervisorCgroup>>,
}

impl Contained {
    /// Chooses the tier for `setting` (creating and probing the supervisor's cgroup),
    /// and says so in a `tracing` event. `intent` is given the supervisor cgroup's path
    /// right before its `mkdir` (the crash journal records it there); an `intent` that
    /// fails makes the cgroup tier unavailable (nothing is created).
    ///
    /// # Errors
    ///
    /// [`Containment::Required`] without the cgroup tier: [`Error::Io`] with
    /// [`Operation::Containment`], the path where the missing piece was looked for, and
    /// the [`Unavailable`] reason as the source's payload ([`Unavailable::of`]).
    pub(crate) fn choose_with(
        setting: Containment,
        intent: impl FnOnce(&std::path::Path) -> io::Result<()>,
    ) -> Result<Self, Error> {
        if setting == Containment::Never {
            return Ok(Contained::default());
        }
        match cgroup_tier(intent) {
            Ok(cg) => {
                let tier = ContainmentTier::Cgroup {
                    path: cg.path().to_path_buf(),
                };
                tracing::info!(%tier, "containment");
                Ok(Contained {
                    tier,
                    cgroup: Some(Arc::new(cg)),
                })
            }
            Err(reason) if setting == Containment::Required => {
                tracing::error!(%reason, "containment: the cgroup tier is required and not available");
                let path = reason.path();
                Err(Error::io(
                    Operation::Containment,
                    path,
                    io::Error::new(reason.io_kind(), reason),
                ))
            }
            Err(reason) => {
                let tier = ContainmentTier::ProcessGroup { reason };
                tracing::warn!(%tier, "containment: the cgroup tier is not available");
                Ok(Contained { tier, cgroup: None })
            }
        }
    }

    /// Removes the supervisor's cgroup (shutdown, emergency), killing first what escaped
    /// into it from a child's cgroup; if something is still left, it stays, and the
    /// error says so.
    pub(crate) fn remove(&self) -> io::Result<()> {
        self.cgroup.as_ref().map_or(Ok(()), |c| c.remove())
    }
}

/// Finds, creates and probes the supervisor's cgroup; what is missing otherwise.
fn cgroup_tier(
    intent: impl FnOnce(&std::path::Path) -> io::Result<()>,
) -> Result<SupervisorCgroup, Unavailable> {
    let read = |p: &str| {
        std::fs::read_to_string(p).map_err(|e| Unavailable::NoProc {
            error: format!("{p}: {e}"),
        })
    };
    let mounts = discover::visible_mounts(&read("/proc/self/mountinfo")?);
    let last = mounts.first().ok_or(Unavailable::NotMounted)?;
    let own = discover::own_cgroup(&read("/proc/self/cgroup")?).ok_or(Unavailable::NoOwnCgroup)?;
    let (mount, dir) =
        discover::choose(&mounts, &own).ok_or_else(|| Unavailable::OutsideMount {
            cgroup: own.clone(),
            mount: last.point.clone(),
        })?;
    let mount = mount.clone();
    if mount.read_only {
        return Err(Unavailable::ReadOnly { mount: mount.point });
    }
    let cg = SupervisorCgroup::create(&dir, intent).map_err(|e| match e.kind() {
        io::ErrorKind::ReadOnlyFilesystem => Unavailable::ReadOnly {
            mount: mount.point.clone(),
        },
        _ => Unavailable::NotWritable {
            path: dir.clone(),
            error: e.to_string(),
        },
    })?;
    let cg = Arc::new(cg);
    let probed = cg.probe().map_err(|f| match f {
        ProbeFailure::Create(e) => Unavailable::NotWritable {
            path: dir.clone(),
            error: e.to_string(),
        },
        ProbeFailure::Enter(e) => Unavailable::NoDelegation {
            path: dir.clone(),
            error: e.to_string(),
            nsdelegate: mount.nsdelegate,
        },
        ProbeFailure::Kill(e) => Unavailable::NoKill {
            path: cg.path().to_path_buf(),
            error: e.to_string(),
        },
    });
    // The probe's clones are gone: this is the only handle (dropped: removed).
    let cg = Arc::into_inner(cg).ok_or_else(|| Unavailable::NotWritable {
        path: dir.clone(),
        error: "the probe kept the cgroup".into(),
    })?;
    probed.map(|()| cg)
}
