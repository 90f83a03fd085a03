//! A child's resource limits, in the cgroup containment tier: written into the child's
//! own cgroup before it runs any code, or the spawn fails with a typed error naming the
//! controller and the cgroup ([`LimitUnavailable`](crate::LimitUnavailable)); never
//! ignored.

use std::time::Duration;

use super::Command;

impl Command {
    /// Caps the memory of the child's whole tree (`memory.max` of its cgroup, in bytes;
    /// the kernel rounds down to whole pages; `u64::MAX` is no cap). Past it the kernel
    /// reclaims, then the OOM killer kills inside the cgroup, which
    /// [`ManagedChild::oom_killed`](crate::ManagedChild::oom_killed) and
    /// [`BoundedOutput::oom_killed`](crate::BoundedOutput::oom_killed) report.
    ///
    /// Needs the cgroup tier ([`Builder::containment`](crate::Builder::containment)) and
    /// the `memory` controller enabled in the `cgroup.subtree_control` of this process's
    /// own cgroup; custodian enables it in the cgroup it owns. Otherwise
    /// [`spawn`](Self::spawn) fails with [`LimitUnavailable`](crate::LimitUnavailable)
    /// and starts nothing.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// use tokio_custodian::{Controller, LimitUnavailable};
    /// let sup = tokio_custodian::Supervisor::builder().start()?; // process groups only
    /// let err = sup.command("true").memory_max(64 << 20).spawn().unwrap_err();
    /// assert_eq!(LimitUnavailable::of(&err).unwrap().controller(), Controller::Memory);
    /// assert_eq!(sup.stats().live(), 0);
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn memory_max(mut self, bytes: u64) -> Self {
        self.limits.memory_max = Some(bytes);
        self
    }

    /// Caps how many processes and threads the child's tree may have at once
    /// (`pids.max` of its cgroup): a `fork` or `clone` past it fails with `EAGAIN`.
    /// A count at or above the kernel's limit on pids (2^22) is no cap.
    ///
    /// Needs the cgroup tier and the `pids` controller, as
    /// [`memory_max`](Self::memory_max).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let err = sup.command("true").pids_max(32).spawn().unwrap_err();
    /// assert_eq!(err.io_kind(), Some(std::io::ErrorKind::Unsupported));
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn pids_max(mut self, count: u64) -> Self {
        self.limits.pids_max = Some(count);
        self
    }

    /// Caps the CPU time of the child's tree: at most `quota` of CPU time in each
    /// `period` (`cpu.max` of its cgroup; a quota twice the period is two CPUs). Saturating
    /// to what the kernel takes: the period between 1 ms and 1 s, the quota at least
    /// 1 ms; a quota past the kernel's largest (about 203 days) is no cap.
    ///
    /// Needs the cgroup tier and the `cpu` controller, as
    /// [`memory_max`](Self::memory_max).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// use std::time::Duration;
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let half_a_cpu = sup.command("true").cpu_max(Duration::from_millis(50), Duration::from_millis(100));
    /// assert!(half_a_cpu.spawn().is_err()); // no cgroup tier here
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn cpu_max(mut self, quota: Duration, period: Duration) -> Self {
        self.limits.cpu_max = Some((quota, period));
        self
    }
}
