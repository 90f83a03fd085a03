//! The command builder: `tokio::process::Command` plus an owner, a grace period, a
//! deadline and an optional parent-death signal.

// Limits in the child's cgroup (memory, pids, cpu) and their setters.
mod limits;
// Quota room: taken before the fork, or waited for.
mod room;

use std::ffi::OsStr;
use std::fmt;
use std::os::fd::AsFd;
use std::panic::Location;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use super::child::ManagedChild;
use super::core::ChildCore;
use super::escapees::Adopting;
use super::reclaim::ChildReclaim;
use super::spawner::spawn_on_thread;
use crate::error::{Error, Operation, Result};
use crate::inner::Spec;
use crate::kind::ResourceKind;
use crate::registry::Permits;
use crate::scope::Scope;
use crate::sys::process::{death_signal_hook, pidfd_open};

/// The grace period between SIGTERM and SIGKILL unless [`Command::grace`] sets one.
///
/// ```
/// assert_eq!(tokio_custodian::DEFAULT_CHILD_GRACE, std::time::Duration::from_secs(2));
/// ```
pub const DEFAULT_CHILD_GRACE: Duration = Duration::from_secs(2);

/// A managed child process to start: the options of [`tokio::process::Command`] plus an
/// owner scope, a label, a grace period, a deadline and an optional parent-death signal.
/// Made by [`Scope::command`] or [`Supervisor::command`](crate::Supervisor::command).
///
/// Every child starts in a process group of its own, which is what custodian stops.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
/// let sup = tokio_custodian::Supervisor::builder().start()?;
/// let out = sup.command("echo").arg("hello").label("greeter").output().await?;
/// assert_eq!(out.stdout, b"hello\n");
/// # sup.shutdown().await; Ok(()) }
/// ```
#[must_use = "a command does nothing until it is spawned"]
pub struct Command {
    scope: Scope,
    cmd: tokio::process::Command,
    program: PathBuf,
    label: Option<String>,
    grace: Duration,
    deadline: Option<Duration>,
    death_signal: bool,
    site: &'static Location<'static>,
    /// Which of stdin, stdout and stderr were set (bits 0 to 2): each may be a pipe, whose
    /// two fds a spawn holds for a moment (see `command/room.rs`).
    stdio: u8,
    /// `memory.max`, `pids.max`, `cpu.max` for the child's cgroup (`command/limits.rs`).
    limits: crate::containment::Limits,
}

impl Command {
    pub(crate) fn new(scope: Scope, program: &OsStr, site: &'static Location<'static>) -> Self {
        Command {
            scope,
            cmd: tokio::process::Command::new(program),
            program: PathBuf::from(program),
            label: None,
            grace: DEFAULT_CHILD_GRACE,
            deadline: None,
            death_signal: false,
            site,
            stdio: 0,
            limits: crate::containment::Limits::default(),
        }
    }

    /// Adds an argument.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let out = sup.command("echo").arg("-n").arg("x").output().await?;
    /// assert_eq!(out.stdout, b"x");
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.cmd.arg(arg);
        self
    }

    /// Adds arguments.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let out = sup.command("echo").args(["a", "b"]).output().await?;
    /// assert_eq!(out.stdout, b"a b\n");
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn args<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(mut self, args: I) -> Self {
        self.cmd.args(args);
        self
    }

    /// Sets an environment variable.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let out = sup.command("sh").args(["-c", "echo $X"]).env("X", "1").output().await?;
    /// assert_eq!(out.stdout, b"1\n");
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn env(mut self, key: impl AsRef<OsStr>, val: impl AsRef<OsStr>) -> Self {
        self.cmd.env(key, val);
        self
    }

    /// Sets environment variables.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let out = sup.command("sh").args(["-c", "echo $A$B"]).envs([("A", "1"), ("B", "2")]).output().await?;
    /// assert_eq!(out.stdout, b"12\n");
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn envs<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        self.cmd.envs(vars);
        self
    }

    /// Removes an environment variable.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let out = sup.command("sh").args(["-c", "echo ${HOME-unset}"]).env_remove("HOME").output().await?;
    /// assert_eq!(out.stdout, b"unset\n");
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Self {
        self.cmd.env_remove(key);
        self
    }

    /// Clears the environment.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let out = sup.command("/usr/bin/env").env_clear().output().await?;
    /// assert!(out.stdout.is_empty());
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn env_clear(mut self) -> Self {
        self.cmd.env_clear();
        self
    }

    /// Sets the working directory.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let out = sup.command("pwd").current_dir("/").output().await?;
    /// assert_eq!(out.stdout, b"/\n");
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.cmd.current_dir(dir);
        self
    }

    /// Sets the child's stdin (inherited by default).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let mut c = sup.command("cat").stdin(std::process::Stdio::piped()).spawn()?;
    /// assert!(c.take_stdin().is_some());
    /// # drop(c);
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn stdin(mut self, cfg: impl Into<Stdio>) -> Self {
        self.cmd.stdin(cfg);
        self.stdio |= 1 << 0;
        self
    }

    /// Sets the child's stdout (inherited by default).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let mut c = sup.command("true").stdout(std::process::Stdio::piped()).spawn()?;
    /// assert!(c.take_stdout().is_some());
    /// # drop(c);
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn stdout(mut self, cfg: impl Into<Stdio>) -> Self {
        self.cmd.stdout(cfg);
        self.stdio |= 1 << 1;
        self
    }

    /// Sets the child's stderr (inherited by default).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let mut c = sup.command("true").stderr(std::process::Stdio::piped()).spawn()?;
    /// assert!(c.take_stderr().is_some());
    /// # drop(c);
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn stderr(mut self, cfg: impl Into<Stdio>) -> Self {
        self.cmd.stderr(cfg);
        self.stdio |= 1 << 2;
        self
    }

    /// The label shown in [`live`](crate::Supervisor::live) listings and reports (the
    /// program by default).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let c = sup.command("sleep").arg("1000").label("transcoder").spawn()?;
    /// assert_eq!(sup.live()[0].label(), "transcoder");
    /// # drop(c);
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    /// How long the child's group gets between SIGTERM and SIGKILL when it is stopped
    /// ([`DEFAULT_CHILD_GRACE`] unless set). The stop ends early once the group is
    /// empty, and at once when shutdown stops waiting (a forced shutdown, or the
    /// builder's grace deadline): a child's grace never extends shutdown.
    /// `Duration::MAX` waits for the group as long as it takes, short of that.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let c = sup.command("sleep").arg("1000").grace(std::time::Duration::from_millis(100)).spawn()?;
    /// c.close().await?;
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// How long the child may run, counted from `spawn`. Waiting on it past this stops
    /// it (SIGTERM, grace, SIGKILL) and fails with [`std::io::ErrorKind::TimedOut`].
    /// A deadline too far to represent (`Duration::MAX`) is no deadline.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// use std::time::Duration;
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let err = sup.command("sleep").arg("1000").deadline(Duration::from_millis(50)).status().await;
    /// assert_eq!(err.unwrap_err().io_kind(), Some(std::io::ErrorKind::TimedOut));
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn deadline(mut self, timeout: Duration) -> Self {
        self.deadline = Some(timeout);
        self
    }

    /// Asks the kernel to SIGKILL the child when this process dies, even by SIGKILL
    /// (`PR_SET_PDEATHSIG`). The child is then forked by a dedicated thread that lives
    /// as long as the process, since the signal fires when the forking *thread* exits.
    /// It reaches the direct child only, not its descendants, and a set-user-id program
    /// clears it.
    ///
    /// With a running [watcher](crate::Builder::watcher), the watcher serves it instead:
    /// the child is journalled with no grace, so that the watcher kills its whole group
    /// (SIGTERM then SIGKILL at once) within milliseconds of this process's death, and
    /// the spawn keeps std's `posix_spawn` path, whose cost does not grow with this
    /// process's memory. A child spawned so loses the guarantee if the watcher itself is
    /// killed (a warning says so; later spawns use the kernel's signal again).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let st = sup.command("true").kill_on_parent_death(true).status().await?;
    /// assert!(st.success());
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn kill_on_parent_death(mut self, on: bool) -> Self {
        self.death_signal = on;
        self
    }

    /// Starts the child in its own process group and registers it with the scope.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] with [`Operation::Spawn`] naming the program if it is not found,
    /// not executable or fails to start; [`Error::SpawnRefused`] naming the program if
    /// the supervisor is shutting down or draining, [`Error::ScopeClosed`] if the scope
    /// has ended (a child started meanwhile is then stopped);
    /// [`Error::QuotaExceeded`](crate::Error::QuotaExceeded) if a [`Quota`](crate::Quota)
    /// that counts children has no room (checked before the fork: nothing is started;
    /// [`spawn_when_room`](Self::spawn_when_room) waits instead); [`Error::Io`] of kind
    /// `Unsupported` naming the program, with a [`LimitUnavailable`](crate::LimitUnavailable)
    /// (the controller and the cgroup), if a [limit](Self::memory_max) cannot be had
    /// (checked before the fork: nothing is started). Nothing stays registered on error.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let err = sup.command("/no/such/program").spawn().unwrap_err();
    /// assert_eq!(err.operation(), tokio_custodian::Operation::Spawn);
    /// assert_eq!(err.path(), Some(std::path::Path::new("/no/such/program")));
    /// assert_eq!(sup.stats().live(), 0);
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn spawn(self) -> Result<ManagedChild> {
        let program = self.program.clone();
        let permits = self.room_now().map_err(|e| e.naming_program(&program))?;
        self.spawn_with(permits)
    }

    /// Spawns with the quota permits already taken for the child.
    fn spawn_with(self, permits: Option<Permits>) -> Result<ManagedChild> {
        let program = self.program.clone();
        self.spawn_unnamed(permits)
            .map_err(|e| e.naming_program(&program))
    }

    fn spawn_unnamed(mut self, permits: Option<Permits>) -> Result<ManagedChild> {
        let op = Operation::Spawn;
        let peak = self.need().fds.unwrap_or(crate::quota::CHILD_FDS);
        let inner = self.scope.inner().clone();
        inner.admit(&self.scope.shared, op)?;
        // A limit that cannot be had refuses the spawn before anything is created.
        let limits = inner
            .containment
            .limit_writes(&self.limits)
            .map_err(|e| Error::io(op, &self.program, e))?;
        self.cmd.process_group(0);
        // The cgroup tier: the child enters its own cgroup, its limits written, before it
        // runs any code.
        let cgroup = match &inner.containment.cgroup {
            Some(sup) => Some(
                super::cgroup::place(&mut self.cmd, sup, &limits)
                    .map_err(|e| Error::io(op, sup.path(), e))?,
            ),
            None => None,
        };
        // The owner marker: how recovery and the subreaper find descendants.
        let adopting = super::escapees::mark(&inner, &mut self.cmd, self.grace);
        let gate = adopting.as_ref().map(Adopting::gate);
        let failed = || {
            if let Some(a) = &adopting {
                a.failed();
            }
        };
        // Issue 22: a live watcher serves the death signal. The child is journalled with
        // no grace, so the watcher SIGKILLs its whole group within milliseconds of this
        // process's death, and the spawn stays on std's `posix_spawn` path (no hook: no
        // fork of this process's memory, no dedicated thread).
        // The watcher is asked through its pidfd: the stats say `Died` only once the
        // monitor task has run, and a spawn in between had neither the kernel's signal
        // nor a watcher (tests/review_watcher_death_signal.rs).
        let watched = self.death_signal
            && inner.journal.is_some()
            && inner.watcher.as_ref().is_some_and(|w| w.watching());
        let spawned = if self.death_signal && !watched {
            let hook = death_signal_hook(rustix::process::getpid());
            // SAFETY: the hook runs between fork and exec and only makes
            // async-signal-safe raw system calls (prctl, getppid); it neither allocates
            // nor takes locks (see `death_signal_hook`). Covered by
            // tests/process_pdeathsig.rs.
            #[allow(unsafe_code)]
            unsafe {
                self.cmd.pre_exec(hook);
            }
            spawn_on_thread(self.cmd, inner.handle.clone())
        } else {
            let _rt = inner.handle.enter();
            self.cmd.spawn()
        };
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                failed();
                return Err(Error::io(op, &self.program, e));
            }
        };
        let started = Instant::now();
        // A child that was just spawned and never waited for always has a pid.
        let Some(pid) = child.id() else {
            failed();
            return Err(Error::io(
                op,
                &self.program,
                std::io::Error::other("no pid"),
            ));
        };
        if let Some(a) = &adopting {
            a.spawned(pid);
        }
        drop(gate);
        // Safe against reuse: the child is ours and unreaped.
        let pidfd = match pidfd_open(pid) {
            Ok(fd) => fd,
            Err(e) => {
                // Out of fds: do not leave the child or anything it forked running. The
                // group id is safe to signal: its leader is ours and unreaped.
                let _ = crate::sys::process::signal_group(pid, crate::sys::process::Sig::KILL);
                let _ = child.start_kill();
                failed();
                drop(inner.handle.spawn(async move {
                    let _ = child.wait().await;
                    // Killed and removed (if empty by then) when dropped.
                    drop(cgroup);
                    // Reaped: the pid is no longer a managed child's.
                    if let Some(a) = adopting {
                        a.reaped(pid);
                    }
                }));
                return Err(Error::io(op, &self.program, e));
            }
        };
        let (stdin, stdout, stderr) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take());
        // Forked: the spawn's transient fds are closed; the guard keeps its pipes.
        let kept = [stdin.is_some(), stdout.is_some(), stderr.is_some()];
        let mut permits = permits;
        let kept = kept.iter().filter(|k| **k).count();
        Command::settle_room(&inner, permits.as_mut(), peak, kept);
        // Before `spawn` returns, without `fsync` (see `journal`): one `write`.
        let ticket = inner.journal.as_ref().and_then(|j| {
            let grace = if watched { Duration::ZERO } else { self.grace };
            j.child_started(pid, pidfd.as_ref().map(AsFd::as_fd), grace)
        });
        let core = {
            let _rt = inner.handle.enter();
            // The stop's grace ends when shutdown stops waiting, whoever runs the stop.
            ChildCore::new(child, pid, pidfd, inner.cut.clone())
        };
        if let Some(mut ticket) = ticket {
            // The watcher's own record of what it serves: it stops the child even if
            // the journal file is removed under this process (`recovery/unjournalled.rs`).
            if watched && let Some(w) = &inner.watcher {
                if w.serve(ticket.identity()) {
                    ticket.served_by(w);
                } else {
                    tracing::debug!(pid, "the watcher was not told of a child it serves");
                }
            }
            let _ = core.journal.set(ticket);
        }
        if let Some(a) = &adopting {
            let _ = core.reaper.set(a.reaper());
        }
        if let Some(cg) = cgroup {
            let _ = core.cgroup.set(cg);
        }
        let spec = Spec {
            kind: ResourceKind::Child,
            label: self
                .label
                .unwrap_or_else(|| self.program.display().to_string())
                .into(),
            path: Some(self.program.clone()),
            site: self.site,
            op,
        };
        let reclaim = ChildReclaim {
            core: core.clone(),
            grace: self.grace,
            escapees: adopting.map(|a| a.escapees(self.grace, inner.cut.clone())),
        };
        let reg = self.scope.register_with(spec, Box::new(reclaim), permits)?;
        Ok(ManagedChild {
            reg,
            core,
            program: self.program,
            grace: self.grace,
            // A deadline past the clock's range (`Duration::MAX`) is no deadline.
            deadline: self.deadline.and_then(|d| started.checked_add(d)),
            stdin,
            stdout,
            stderr,
        })
    }

    /// Runs the child to completion and collects its stdout and stderr (piped unless set
    /// otherwise; stdin is null unless set). Waits for quota room first, as
    /// [`spawn_when_room`](Self::spawn_when_room).
    ///
    /// # Errors
    ///
    /// As [`spawn`](Self::spawn) and [`ManagedChild::wait_with_output`].
    ///
    /// # Cancel safety
    ///
    /// Dropped while it waits for quota room, it takes nothing and starts nothing. Once
    /// the child runs, dropping the future releases the child as a drop does (SIGTERM,
    /// then the rest in the background).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let out = sup.command("sh").args(["-c", "echo e >&2"]).output().await?;
    /// assert_eq!(out.stderr, b"e\n");
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub async fn output(self) -> Result<Output> {
        let this = self
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        this.spawn_when_room().await?.wait_with_output().await
    }

    /// Runs the child to completion (stdin null unless set) and returns its status. Waits
    /// for quota room first, as [`spawn_when_room`](Self::spawn_when_room).
    ///
    /// # Errors
    ///
    /// As [`spawn`](Self::spawn) and [`ManagedChild::wait`].
    ///
    /// # Cancel safety
    ///
    /// Dropped while it waits for quota room, it takes nothing and starts nothing. Once
    /// the child runs, dropping the future drops the child's guard: the child is stopped
    /// (SIGTERM to its group, the grace, SIGKILL) and reaped in the background, and its
    /// status is lost.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let st = sup.command("sh").args(["-c", "exit 3"]).status().await?;
    /// assert_eq!(st.code(), Some(3));
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub async fn status(self) -> Result<ExitStatus> {
        let mut child = self.spawn_when_room().await?;
        let status = child.wait().await?;
        child.close().await?;
        Ok(status)
    }
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Command")
            .field("cmd", &self.cmd)
            .field("scope", &self.scope.name())
            .field("grace", &self.grace)
            .field("deadline", &self.deadline)
            .field("kill_on_parent_death", &self.death_signal)
            .field("limits", &self.limits)
            .finish()
    }
}
