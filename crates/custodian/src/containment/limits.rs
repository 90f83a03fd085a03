//! Resource limits of a managed child in the cgroup tier ([`Command::memory_max`],
//! [`Command::pids_max`], [`Command::cpu_max`]): their typed values, how each is written
//! (`memory.max`, `pids.max`, `cpu.max`, saturating to what the kernel takes), and the
//! typed refusal when a limit cannot be had ([`LimitUnavailable`]), never a limit
//! silently ignored.
//!
//! [`Command::memory_max`]: crate::Command::memory_max
//! [`Command::pids_max`]: crate::Command::pids_max
//! [`Command::cpu_max`]: crate::Command::cpu_max

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Unavailable;
use crate::error::Error;
use crate::sys::cgroup::{EnableError, LimitWrite};

/// A cgroup v2 controller that a child's limit needs.
///
/// ```
/// assert_eq!(tokio_custodian::Controller::Memory.to_string(), "memory");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Controller {
    /// `memory` (`memory.max`; `memory.events` tells OOM kills).
    Memory,
    /// `pids` (`pids.max`).
    Pids,
    /// `cpu` (`cpu.max`).
    Cpu,
}

impl Controller {
    /// Its name in `cgroup.controllers`.
    ///
    /// ```
    /// assert_eq!(tokio_custodian::Controller::Pids.name(), "pids");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            Controller::Memory => "memory",
            Controller::Pids => "pids",
            Controller::Cpu => "cpu",
        }
    }
}

impl fmt::Display for Controller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a child's limit cannot be set: the payload of the spawn's [`Error::Io`]
/// ([`LimitUnavailable::of`]). Nothing was started.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
/// use tokio_custodian::{Controller, LimitUnavailable};
/// let sup = tokio_custodian::Supervisor::builder().start()?; // the process-group tier
/// let err = sup.command("true").pids_max(16).spawn().unwrap_err();
/// let why = LimitUnavailable::of(&err).unwrap();
/// assert_eq!(why.controller(), Controller::Pids);
/// assert!(matches!(why, LimitUnavailable::NoCgroupTier { .. }));
/// assert_eq!(err.io_kind(), Some(std::io::ErrorKind::Unsupported));
/// # sup.shutdown().await; Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "missing", rename_all = "snake_case")]
#[non_exhaustive]
pub enum LimitUnavailable {
    /// The supervisor runs in the process-group tier: there is no cgroup to hold a limit.
    NoCgroupTier {
        /// The controller the limit needs.
        controller: Controller,
        /// Why the cgroup tier is not in force.
        tier: Unavailable,
    },
    /// The controller is not enabled in `parent`'s `cgroup.subtree_control` (the
    /// supervisor's own process's cgroup), so the supervisor's cgroup cannot offer it to
    /// its children.
    NotEnabled {
        /// The controller the limit needs.
        controller: Controller,
        /// The cgroup that would have to enable it (this process's own).
        parent: PathBuf,
        /// Whether `parent`'s own `cgroup.controllers` lists it: `true`, the parent could
        /// enable it (`pids` and `cpu` even with processes in it; `memory` only without,
        /// or at the root); `false`, it is not offered this far down (bound to cgroup v1,
        /// or not delegated).
        offered_to_parent: bool,
    },
    /// Enabling the controller in the supervisor's cgroup failed.
    EnableFailed {
        /// The controller the limit needs.
        controller: Controller,
        /// The supervisor's cgroup.
        cgroup: PathBuf,
        /// The error.
        error: String,
    },
}

impl LimitUnavailable {
    /// What is missing, if `err` is a spawn refused for one of its limits.
    ///
    /// ```
    /// let err = tokio_custodian::Error::Draining { op: tokio_custodian::Operation::Spawn };
    /// assert_eq!(tokio_custodian::LimitUnavailable::of(&err), None);
    /// ```
    pub fn of(err: &Error) -> Option<&LimitUnavailable> {
        match err {
            Error::Io { source, .. } => source.get_ref()?.downcast_ref(),
            _ => None,
        }
    }

    /// The controller that is missing.
    ///
    /// ```
    /// use tokio_custodian::{Controller, LimitUnavailable, Unavailable};
    /// let why = LimitUnavailable::NoCgroupTier {
    ///     controller: Controller::Cpu,
    ///     tier: Unavailable::NotRequested,
    /// };
    /// assert_eq!(why.controller(), Controller::Cpu);
    /// ```
    pub fn controller(&self) -> Controller {
        match self {
            LimitUnavailable::NoCgroupTier { controller, .. }
            | LimitUnavailable::NotEnabled { controller, .. }
            | LimitUnavailable::EnableFailed { controller, .. } => *controller,
        }
    }

    /// As an `io::Error` (kind `Unsupported`) carrying `self`.
    pub(crate) fn into_io(self) -> io::Error {
        io::Error::new(io::ErrorKind::Unsupported, self)
    }
}

impl fmt::Display for LimitUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LimitUnavailable::NoCgroupTier { controller, tier } => write!(
                f,
                "a {controller} limit needs the cgroup containment tier; in force: process \
                 groups (no cgroup: {tier})"
            ),
            LimitUnavailable::NotEnabled {
                controller,
                parent,
                offered_to_parent,
            } => {
                write!(
                    f,
                    "a {controller} limit needs the {controller} controller, not enabled in \
                     {}/cgroup.subtree_control",
                    parent.display()
                )?;
                if *offered_to_parent {
                    write!(
                        f,
                        " (offered to that cgroup, not enabled for its children: write \
                         `+{controller}` there; `memory` cannot be enabled in a cgroup with \
                         processes in it, other than the root)"
                    )
                } else {
                    f.write_str(
                        " (not offered to that cgroup: bound to cgroup v1, or not delegated)",
                    )
                }
            }
            LimitUnavailable::EnableFailed {
                controller,
                cgroup,
                error,
            } => write!(
                f,
                "cannot enable the {controller} controller in {}/cgroup.subtree_control: \
                 {error}",
                cgroup.display()
            ),
        }
    }
}

impl std::error::Error for LimitUnavailable {}

impl super::Contained {
    /// Makes every controller `limits` need available to the children's cgroups, and
    /// returns what to write into a child's. Checked before anything is created.
    ///
    /// # Errors
    ///
    /// An `io::Error` of kind `Unsupported` carrying a [`LimitUnavailable`] (the
    /// process-group tier, a controller not offered), or the error of enabling it.
    pub(crate) fn limit_writes(&self, limits: &Limits) -> io::Result<Vec<LimitWrite>> {
        if limits.is_empty() {
            return Ok(Vec::new());
        }
        for controller in limits.controllers() {
            let Some(cg) = &self.cgroup else {
                let tier = match &self.tier {
                    super::ContainmentTier::ProcessGroup { reason } => reason.clone(),
                    super::ContainmentTier::Cgroup { .. } => Unavailable::NotRequested,
                };
                return Err(LimitUnavailable::NoCgroupTier { controller, tier }.into_io());
            };
            match cg.enable(controller.name()) {
                Ok(()) => {}
                Err(EnableError::NotOffered { offered_to_parent }) => {
                    let parent = cg.path().parent().unwrap_or(cg.path()).to_path_buf();
                    return Err(LimitUnavailable::NotEnabled {
                        controller,
                        parent,
                        offered_to_parent,
                    }
                    .into_io());
                }
                Err(EnableError::Io(e)) => {
                    let kind = e.kind();
                    let why = LimitUnavailable::EnableFailed {
                        controller,
                        cgroup: cg.path().to_path_buf(),
                        error: e.to_string(),
                    };
                    return Err(io::Error::new(kind, why));
                }
            }
        }
        Ok(limits.writes())
    }
}

/// The limits a command asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Limits {
    pub(crate) memory_max: Option<u64>,
    pub(crate) pids_max: Option<u64>,
    /// Quota and period.
    pub(crate) cpu_max: Option<(Duration, Duration)>,
}

/// The kernel's `PID_MAX_LIMIT` on 64-bit: no more processes can exist, so a `pids.max`
/// at or above it is no limit (`max`; the kernel refuses larger numbers).
const PID_MAX_LIMIT: u64 = 1 << 22;
/// `cpu.max`'s period bounds (the kernel's `min_cfs_quota_period`, `max_cfs_quota_period`)
/// and the quota's (at least the minimum period; at most `max_cfs_runtime`, 2^44 - 1 µs),
/// in microseconds.
const CPU_PERIOD_MIN_US: u64 = 1_000;
const CPU_PERIOD_MAX_US: u64 = 1_000_000;
const CPU_QUOTA_MAX_US: u64 = (1 << 44) - 1;

impl Limits {
    /// Whether no limit is asked for.
    pub(crate) fn is_empty(&self) -> bool {
        *self == Limits::default()
    }

    /// The controllers they need, each once.
    pub(crate) fn controllers(&self) -> Vec<Controller> {
        let mut c = Vec::new();
        if self.memory_max.is_some() {
            c.push(Controller::Memory);
        }
        if self.pids_max.is_some() {
            c.push(Controller::Pids);
        }
        if self.cpu_max.is_some() {
            c.push(Controller::Cpu);
        }
        c
    }

    /// What is written into the child's cgroup, saturated to what the kernel takes.
    pub(crate) fn writes(&self) -> Vec<LimitWrite> {
        let mut w = Vec::new();
        if let Some(bytes) = self.memory_max {
            w.push(LimitWrite {
                controller: "memory",
                file: "memory.max",
                value: memory_value(bytes),
            });
        }
        if let Some(n) = self.pids_max {
            w.push(LimitWrite {
                controller: "pids",
                file: "pids.max",
                value: pids_value(n),
            });
        }
        if let Some((quota, period)) = self.cpu_max {
            w.push(LimitWrite {
                controller: "cpu",
                file: "cpu.max",
                value: cpu_value(quota, period),
            });
        }
        w
    }
}

/// `memory.max`: bytes (the kernel rounds down to pages); `u64::MAX` is no limit.
fn memory_value(bytes: u64) -> String {
    if bytes == u64::MAX {
        "max".to_owned()
    } else {
        bytes.to_string()
    }
}

/// `pids.max`: a count; at or above `PID_MAX_LIMIT` it is no limit.
fn pids_value(n: u64) -> String {
    if n >= PID_MAX_LIMIT {
        "max".to_owned()
    } else {
        n.to_string()
    }
}

/// `cpu.max`: `QUOTA PERIOD` in microseconds, the period clamped to 1 ms..=1 s, the quota
/// to at least 1 ms; a quota past the kernel's largest is no limit (`max PERIOD`).
fn cpu_value(quota: Duration, period: Duration) -> String {
    let us = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    let period = us(period).clamp(CPU_PERIOD_MIN_US, CPU_PERIOD_MAX_US);
    let quota = us(quota).max(CPU_PERIOD_MIN_US);
    if quota > CPU_QUOTA_MAX_US {
        format!("max {period}")
    } else {
        format!("{quota} {period}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_saturate_to_what_the_kernel_takes() {
        assert_eq!(memory_value(64 << 20), "67108864");
        assert_eq!(memory_value(0), "0");
        assert_eq!(memory_value(u64::MAX), "max");
        assert_eq!(pids_value(32), "32");
        assert_eq!(pids_value(PID_MAX_LIMIT - 1), "4194303");
        assert_eq!(pids_value(PID_MAX_LIMIT), "max");
        assert_eq!(pids_value(u64::MAX), "max");
        let ms = Duration::from_millis;
        assert_eq!(cpu_value(ms(50), ms(100)), "50000 100000", "half a CPU");
        assert_eq!(cpu_value(ms(200), ms(100)), "200000 100000", "two CPUs");
        assert_eq!(cpu_value(Duration::ZERO, Duration::ZERO), "1000 1000");
        assert_eq!(cpu_value(Duration::from_nanos(1), ms(10)), "1000 10000");
        assert_eq!(cpu_value(ms(1), Duration::MAX), "1000 1000000");
        assert_eq!(cpu_value(Duration::MAX, ms(100)), "max 100000");
        let largest = Duration::from_micros(CPU_QUOTA_MAX_US);
        assert_eq!(
            cpu_value(largest, ms(100)),
            format!("{CPU_QUOTA_MAX_US} 100000")
        );
    }

    #[test]
    fn writes_and_controllers_follow_what_was_asked() {
        assert!(Limits::default().is_empty());
        assert!(Limits::default().writes().is_empty());
        let l = Limits {
            memory_max: Some(1 << 20),
            pids_max: None,
            cpu_max: Some((Duration::from_millis(10), Duration::from_millis(100))),
        };
        assert!(!l.is_empty());
        assert_eq!(l.controllers(), [Controller::Memory, Controller::Cpu]);
        let w = l.writes();
        let files: Vec<(&str, &str, &str)> = w
            .iter()
            .map(|w| (w.controller, w.file, w.value.as_str()))
            .collect();
        assert_eq!(
            files,
            [
                ("memory", "memory.max", "1048576"),
                ("cpu", "cpu.max", "10000 100000")
            ]
        );
        for c in l.controllers() {
            assert!(w.iter().any(|w| w.controller == c.name()));
        }
    }

    #[test]
    fn a_refusal_names_the_controller_and_the_cgroup() {
        let why = LimitUnavailable::NotEnabled {
            controller: Controller::Memory,
            parent: "/sys/fs/cgroup/unified".into(),
            offered_to_parent: false,
        };
        let text = why.to_string();
        assert!(text.contains("memory controller"), "{text}");
        assert!(
            text.contains("/sys/fs/cgroup/unified/cgroup.subtree_control"),
            "{text}"
        );
        let err = Error::io(
            crate::error::Operation::Spawn,
            "prog",
            why.clone().into_io(),
        );
        assert_eq!(LimitUnavailable::of(&err), Some(&why));
        assert_eq!(err.io_kind(), Some(io::ErrorKind::Unsupported));
        assert!(err.to_string().contains("memory controller"), "{err}");
    }
}
