//! The guard of a managed child process.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::process::{ChildStderr, ChildStdin, ChildStdout};

use super::core::ChildCore;
use crate::error::{Error, Operation, Result};
use crate::scope::Registration;
use crate::sys::process::Sig;

/// A running child process owned by a scope, in a process group of its own.
///
/// Released exactly once, by whichever comes first: [`close`](Self::close) (graceful
/// stop, returns the exit status), drop, the end of its scope, cancellation, shutdown.
/// Release sends SIGTERM to the group, waits up to the grace period for the leader to
/// exit and the group to empty, sends SIGKILL to the group, waits for the leader to
/// exit, looks at the group (up to 1 s for it to be gone; what survived SIGKILL is named
/// in the release's error), kills the group once more, and reaps the leader. A leader
/// that already exited on its own (but was not waited for) still has its group stopped
/// this way. Under the cgroup containment tier the same stop covers the child's whole
/// cgroup (SIGTERM to every member, `cgroup.kill`), whatever left the group. The grace
/// ends at once when shutdown stops waiting (forced, or at its deadline). A drop does
/// only the first signal and leaves the rest to a tracked task, so the scope does not
/// end before the child is reaped.
///
/// # Resource leaking
///
/// The registry entry holds the child itself (its pidfd and process group), so a
/// forgotten guard's child is still stopped and reaped at scope end or shutdown, and
/// reported as a leak. Descendants that leave the group (`setsid`, `setpgid`) are not
/// tracked, unless the supervisor is a child subreaper
/// ([`Builder::child_subreaper`](crate::Builder::child_subreaper)): then those orphaned
/// are adopted and stopped with the child; see `docs/processes.md`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
/// let sup = tokio_custodian::Supervisor::builder().start()?;
/// let child = sup.command("sleep").arg("1000").spawn()?;
/// let status = child.close().await?; // SIGTERM, reaped
/// assert!(!status.success());
/// # sup.shutdown().await; Ok(()) }
/// ```
#[must_use = "dropping a ManagedChild stops it"]
pub struct ManagedChild {
    pub(super) reg: Registration,
    pub(super) core: Arc<ChildCore>,
    pub(super) program: PathBuf,
    pub(super) grace: Duration,
    pub(super) deadline: Option<Instant>,
    pub(super) stdin: Option<ChildStdin>,
    pub(super) stdout: Option<ChildStdout>,
    pub(super) stderr: Option<ChildStderr>,
}

impl ManagedChild {
    /// The child's pid (also its process-group id) while it is not reaped; `None` after.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let mut child = sup.command("true").spawn()?;
    /// assert!(child.id().is_some());
    /// child.wait().await?;
    /// assert_eq!(child.id(), None);
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn id(&self) -> Option<u32> {
        self.core.status().is_none().then_some(self.core.pid)
    }

    /// The process-group id the child was started in (its pid), kept after the reap for
    /// reports. Do not signal it yourself: once reaped, it may name another group.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let child = sup.command("true").spawn()?;
    /// assert_eq!(Some(child.process_group()), child.id());
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn process_group(&self) -> u32 {
        self.core.pid
    }

    /// The cgroup the child runs in, under the cgroup containment tier
    /// ([`Builder::containment`](crate::Builder::containment)); `None` in the
    /// process-group tier. Removed when the child is released.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let c = sup.command("true").spawn()?;
    /// assert_eq!(c.cgroup(), None); // the default tier: process groups
    /// # drop(c);
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn cgroup(&self) -> Option<PathBuf> {
        self.core.cgroup.get().map(|c| c.path())
    }

    /// The program, as given to the command.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let c = sup.command("true").spawn()?;
    /// assert_eq!(c.program(), std::path::Path::new("true"));
    /// # drop(c);
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// The child's id in the registry.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let child = sup.command("true").spawn()?;
    /// assert_eq!(sup.live()[0].id(), child.resource_id());
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn resource_id(&self) -> crate::ResourceId {
        self.reg.id()
    }

    /// The child's registration (to check it is still live or move it to another scope).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let c = sup.command("true").spawn()?;
    /// assert!(c.registration().is_live());
    /// # drop(c);
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn registration(&self) -> &Registration {
        &self.reg
    }

    /// Takes the child's stdin, if it was piped.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// use tokio::io::AsyncWriteExt;
    /// let mut c = sup.command("cat").stdin(std::process::Stdio::piped()).spawn()?;
    /// c.take_stdin().unwrap().write_all(b"x").await.unwrap();
    /// assert!(c.wait().await?.success()); // the pipe was closed when dropped
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.stdin.take()
    }

    /// Takes the child's stdout, if it was piped.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// use tokio::io::AsyncReadExt;
    /// let mut c = sup.command("echo").arg("hi").stdout(std::process::Stdio::piped()).spawn()?;
    /// let mut s = String::new();
    /// c.take_stdout().unwrap().read_to_string(&mut s).await.unwrap();
    /// assert_eq!(s, "hi\n");
    /// # drop(c);
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.stdout.take()
    }

    /// Takes the child's stderr, if it was piped.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let mut c = sup.command("true").spawn()?;
    /// assert!(c.take_stderr().is_none()); // inherited, not piped
    /// # drop(c);
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn take_stderr(&mut self) -> Option<ChildStderr> {
        self.stderr.take()
    }

    fn err(&self, e: io::Error) -> Error {
        Error::io(Operation::StopChild, &self.program, e)
    }

    fn timed_out(&self) -> Error {
        self.err(io::Error::new(
            io::ErrorKind::TimedOut,
            "deadline passed; the child was stopped",
        ))
    }

    /// Waits for the child to exit and reaps it (killing whatever is left in its group
    /// first). Closes the child's stdin, if still held, so that it sees end of input.
    /// Under the cgroup containment tier, what the child left in its cgroup first gets
    /// the child's own stop: SIGTERM, up to the grace to exit, then SIGKILL.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] with [`Operation::StopChild`] naming the program: an OS error, or
    /// `TimedOut` if the command's [deadline](super::Command::deadline) passed (the
    /// child is then stopped and reaped before this returns), or if processes it left
    /// survived their SIGKILL (each named by pid and reason).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future loses nothing, the child stays owned.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let mut child = sup.command("sh").args(["-c", "exit 7"]).spawn()?;
    /// assert_eq!(child.wait().await?.code(), Some(7));
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub async fn wait(&mut self) -> Result<ExitStatus> {
        drop(self.stdin.take());
        let exited = self.core.exited();
        let r = match self.deadline {
            None => exited.await,
            Some(d) => match tokio::time::timeout_at(d.into(), exited).await {
                Ok(r) => r,
                Err(_) => {
                    self.core
                        .stop(self.grace, false)
                        .await
                        .map_err(|e| self.err(e))?;
                    return Err(self.timed_out());
                }
            },
        };
        r.map_err(|e| self.err(e))?;
        // The cgroup tier: what the child left in its cgroup gets the child's own stop
        // (SIGTERM, the grace, the kill), as a release would give it, before the reap.
        if self.core.cgroup_populated() {
            return self
                .core
                .stop(self.grace, false)
                .await
                .map_err(|e| self.err(e));
        }
        self.core.reap().map_err(|e| self.err(e))
    }

    /// The exit status if the child has exited (reaping it), `None` if it still runs.
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait), without the deadline.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let mut child = sup.command("sleep").arg("1000").spawn()?;
    /// assert_eq!(child.try_wait()?, None);
    /// # drop(child); sup.shutdown().await; Ok(()) }
    /// ```
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        match self.core.try_exited() {
            Ok(true) => self.core.reap().map(Some).map_err(|e| self.err(e)),
            Ok(false) => Ok(None),
            Err(e) => Err(self.err(e)),
        }
    }

    /// Waits for the child while collecting its stdout and stderr (those that were
    /// piped), then releases it.
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait); reading a pipe can fail too.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future drops the guard: the child is stopped.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// use std::process::Stdio;
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let child = sup.command("sh").args(["-c", "echo out; echo err >&2"])
    ///     .stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    /// let out = child.wait_with_output().await?;
    /// assert_eq!((&out.stdout[..], &out.stderr[..]), (&b"out\n"[..], &b"err\n"[..]));
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub async fn wait_with_output(mut self) -> Result<Output> {
        async fn read_all<R: tokio::io::AsyncRead + Unpin>(r: Option<R>) -> io::Result<Vec<u8>> {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                r.read_to_end(&mut buf).await?;
            }
            Ok(buf)
        }
        let (out, err) = (self.stdout.take(), self.stderr.take());
        let (status, stdout, stderr) = tokio::join!(self.wait(), read_all(out), read_all(err));
        let status = status?;
        let stdout = stdout.map_err(|e| self.err(e))?;
        let stderr = stderr.map_err(|e| self.err(e))?;
        self.close().await?;
        Ok(Output {
            status,
            stdout,
            stderr,
        })
    }

    /// Sends SIGKILL to the child's group without waiting. Does nothing once the child
    /// has been reaped (by [`wait`](Self::wait) or [`try_wait`](Self::try_wait)); a child
    /// that has exited but is not reaped yet still has its group signalled.
    ///
    /// # Errors
    ///
    /// The signal's error, naming the program.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let mut c = sup.command("sleep").arg("1000").spawn()?;
    /// c.start_kill()?;
    /// assert!(!c.wait().await?.success());
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn start_kill(&self) -> Result<()> {
        self.core.signal(Sig::KILL).map_err(|e| self.err(e))
    }

    /// Kills the child's group with SIGKILL and waits for the child.
    ///
    /// # Errors
    ///
    /// As [`start_kill`](Self::start_kill) and [`wait`](Self::wait).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the signal is sent at the first poll; a later `wait` finishes.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// use std::os::unix::process::ExitStatusExt;
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let mut child = sup.command("sleep").arg("1000").spawn()?;
    /// assert_eq!(child.kill().await?.signal(), Some(9));
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub async fn kill(&mut self) -> Result<ExitStatus> {
        self.start_kill()?;
        self.core.exited().await.map_err(|e| self.err(e))?;
        self.core.reap().map_err(|e| self.err(e))
    }

    /// Stops the child gracefully (SIGTERM to its group, up to the grace period for the
    /// group to empty, then SIGKILL), reaps it and releases it; returns its exit status.
    /// If it has already been reaped, only returns its status; if it exited on its own
    /// but was not reaped, what it left in its group is stopped the same way. When it
    /// returns, every member of the child's group has been sent SIGKILL; after a SIGKILL
    /// round, the stop waits up to 1 s for the group to be gone and names what is not.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] with [`Operation::StopChild`] naming the program; `TimedOut` when
    /// processes of the child survived SIGKILL (each named by pid and reason). The
    /// child is released either way.
    ///
    /// # Cancel safety
    ///
    /// The release happens at the first poll; if dropped after that, the stop finishes
    /// in the background.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let c = sup.command("sh").args(["-c", "exit 0"]).spawn()?;
    /// let _ = c.close().await?; // exit 0, or SIGTERM if it had not exited yet
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub async fn close(mut self) -> Result<ExitStatus> {
        drop(self.stdin.take());
        let core = self.core.clone();
        let (program, grace) = (self.program.clone(), self.grace);
        self.reg.close().await?;
        match core.status() {
            Some(s) => Ok(s),
            // Reclaimed by the scope's end or shutdown, which may still be stopping it.
            None => core
                .stop(grace, false)
                .await
                .map_err(|e| Error::io(Operation::StopChild, program, e)),
        }
    }
}

impl fmt::Debug for ManagedChild {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagedChild")
            .field("id", &self.reg.id())
            .field("pid", &self.core.pid)
            .field("program", &self.program)
            .field("status", &self.core.status())
            .finish()
    }
}
