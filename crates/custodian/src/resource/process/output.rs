//! Output that cannot hang: a child's stdout and stderr collected with a bound, even when
//! a descendant that escaped the child's group keeps a pipe open after the child is gone
//! (`sh -c 'setsid daemon & echo hi'`: a plain `read_to_end` waits for the daemon).
//!
//! The reads run alongside the wait; once the child has exited (or was stopped at its
//! deadline), they get at most the child's grace to reach end of file, then they are cut:
//! what was read is returned, flagged, with the processes that still held the pipe (read
//! in `/proc`, for the report only). Each read is `read_buf`, which is cancel safe, so
//! the cut loses no byte already read.
//!
//! In the cgroup containment tier the holder is killed at the reap (`cgroup.kill`) and
//! the pipe closes by itself; the bound is what holds in the process-group tier.

use std::io;
use std::process::{ExitStatus, Stdio};

use tokio::io::{AsyncRead, AsyncReadExt};

use super::child::ManagedChild;
use super::command::Command;
use super::core::ChildCore;
use crate::error::{Error, Operation, Result};
use crate::sys::pipes;

/// What [`Command::bounded_output`] and [`ManagedChild::wait_with_bounded_output`]
/// collected.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
/// let sup = tokio_custodian::Supervisor::builder().start()?;
/// let out = sup.command("echo").arg("hi").bounded_output().await?;
/// assert_eq!((out.stdout.as_slice(), out.cut, out.timed_out), (&b"hi\n"[..], false, false));
/// assert!(out.status.success() && out.holders.is_empty());
/// # sup.shutdown().await; Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BoundedOutput {
    /// The child's exit status (after its stop, if its deadline passed).
    pub status: ExitStatus,
    /// What it wrote to stdout (all of it unless `cut`).
    pub stdout: Vec<u8>,
    /// What it wrote to stderr (all of it unless `cut`).
    pub stderr: Vec<u8>,
    /// Whether the reads were cut: the child had ended, but a pipe stayed open past its
    /// grace (held by `holders`).
    pub cut: bool,
    /// The processes other than this one that still held a pipe when the reads were cut
    /// (pids from `/proc`, for the report; never signalled on this evidence).
    pub holders: Vec<u32>,
    /// Whether the command's [deadline](Command::deadline) passed: the child was
    /// stopped (SIGTERM, grace, SIGKILL).
    pub timed_out: bool,
    /// Whether the OOM killer killed the child, under a
    /// [`memory_max`](Command::memory_max) (as [`ManagedChild::oom_killed`]): its
    /// `status` is then a SIGKILL that no one else sent.
    pub oom_killed: bool,
}

impl Command {
    /// Like [`output`](Self::output), but bounded: it returns within the
    /// [deadline](Self::deadline) (if set) plus the [grace](Self::grace), even when a
    /// descendant that left the child's group still holds stdout or stderr open. Then
    /// [`BoundedOutput::cut`] is set, the output read so far is returned, and the holders
    /// are named. A deadline that passes is [`BoundedOutput::timed_out`], not an error.
    ///
    /// # Errors
    ///
    /// As [`spawn`](Self::spawn); reading a pipe or stopping the child can fail too.
    ///
    /// # Cancel safety
    ///
    /// As [`output`](Self::output): dropped while it waits for quota room, nothing is
    /// started; once the child runs, dropping the future releases the child.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// use std::time::Duration;
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// // The escapee keeps stdout open: `output()` would wait for it.
    /// let out = sup.command("sh").args(["-c", "setsid sleep 30 & sleep 0.2; echo hi"])
    ///     .grace(Duration::from_millis(200))
    ///     .bounded_output().await?;
    /// assert_eq!(out.stdout, b"hi\n");
    /// assert!(out.cut && !out.holders.is_empty(), "{out:?}");
    /// # for p in &out.holders { let _ = std::process::Command::new("kill").arg(p.to_string()).status(); }
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub async fn bounded_output(self) -> Result<BoundedOutput> {
        let this = self
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        this.spawn_when_room()
            .await?
            .wait_with_bounded_output()
            .await
    }
}

impl ManagedChild {
    /// Like [`wait_with_output`](Self::wait_with_output), but bounded as
    /// [`Command::bounded_output`]: once the child has exited (or was stopped at its
    /// deadline), the pipes get at most the child's grace to close.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] with [`Operation::StopChild`] naming the program: reading a pipe,
    /// waiting for or stopping the child failed.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future drops the guard: the child is stopped.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// use std::process::Stdio;
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let child = sup.command("echo").arg("hi").stdout(Stdio::piped()).spawn()?;
    /// let out = child.wait_with_bounded_output().await?;
    /// assert_eq!((&out.stdout[..], out.cut), (&b"hi\n"[..], false));
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub async fn wait_with_bounded_output(mut self) -> Result<BoundedOutput> {
        let (mut out, mut err) = (self.stdout.take(), self.stderr.take());
        // Read before the pipes may be dropped: what names them in `/proc`.
        let inodes: Vec<u64> = [
            out.as_ref().and_then(pipes::pipe_inode),
            err.as_ref().and_then(pipes::pipe_inode),
        ]
        .into_iter()
        .flatten()
        .collect();
        let (mut ob, mut eb) = (Vec::new(), Vec::new());
        let grace = self.grace;
        let (waited, read) = {
            let mut reads = std::pin::pin!(async {
                tokio::try_join!(pump(&mut out, &mut ob), pump(&mut err, &mut eb))
            });
            let mut read = None;
            let waited = {
                let mut wait = std::pin::pin!(self.wait());
                loop {
                    tokio::select! {
                        w = &mut wait => break w,
                        r = &mut reads, if read.is_none() => read = Some(r),
                    }
                }
            };
            if read.is_none() {
                read = tokio::time::timeout(grace, &mut reads).await.ok();
            }
            (waited, read)
        };
        let (cut, holders) = match read {
            Some(r) => {
                r.map_err(|e| self.err_of(e))?;
                (false, Vec::new())
            }
            None => {
                let mut h: Vec<u32> = inodes.iter().flat_map(|&i| pipes::holders(i)).collect();
                h.sort_unstable();
                h.dedup();
                tracing::warn!(program = %self.program.display(), holders = ?h, "output cut: a pipe stayed open after the child ended");
                (true, h)
            }
        };
        let (status, timed_out) = match waited {
            Ok(s) => (s, false),
            Err(e) if e.io_kind() == Some(io::ErrorKind::TimedOut) => match self.core.status() {
                Some(s) => (s, true),
                None => return Err(e),
            },
            Err(e) => return Err(e),
        };
        drop((out, err));
        let core = self.core.clone();
        self.close().await?;
        // After the release: the count was read once more right before the cgroup's
        // removal, so a kill counted late (by another task of the cgroup) is seen.
        let oom_killed = oom_killed(&core);
        Ok(BoundedOutput {
            status,
            stdout: ob,
            stderr: eb,
            cut,
            holders,
            timed_out,
            oom_killed,
        })
    }

    /// Whether the OOM killer killed the child: it ended by SIGKILL, and its cgroup's
    /// `memory.events` counts an OOM kill (`oom_kill`). Only under a
    /// [`memory_max`](Command::memory_max) (the cgroup tier with the memory controller);
    /// `false` otherwise and until the child is reaped ([`wait`](Self::wait)). The count
    /// is kept once the child's cgroup is removed.
    ///
    /// A SIGKILL is what the OOM killer sends, so without this the exit status cannot
    /// tell it from a `kill -9` or custodian's own stop.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let mut c = sup.command("sleep").arg("1000").spawn()?;
    /// c.start_kill()?;
    /// assert!(!c.wait().await?.success());
    /// assert!(!c.oom_killed()); // a SIGKILL, but not the OOM killer's
    /// # drop(c);
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn oom_killed(&self) -> bool {
        oom_killed(&self.core)
    }

    fn err_of(&self, e: io::Error) -> Error {
        Error::io(Operation::StopChild, &self.program, e)
    }
}

/// Reaped by SIGKILL, with an OOM kill counted in its cgroup.
fn oom_killed(core: &ChildCore) -> bool {
    use std::os::unix::process::ExitStatusExt;
    let killed = core
        .status()
        .is_some_and(|s| s.signal() == Some(rustix::process::Signal::KILL.as_raw()));
    killed
        && core
            .cgroup
            .get()
            .and_then(|c| c.oom_kills())
            .is_some_and(|n| n > 0)
}

/// Reads `r` to its end into `buf`, one cancel-safe `read_buf` at a time.
async fn pump<R: AsyncRead + Unpin>(r: &mut Option<R>, buf: &mut Vec<u8>) -> io::Result<()> {
    let Some(r) = r else {
        return Ok(());
    };
    loop {
        buf.reserve(8192);
        if r.read_buf(buf).await? == 0 {
            return Ok(());
        }
    }
}
