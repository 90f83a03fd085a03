//! Configuring and starting a supervisor, and the supervisor task.

use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::containment::{Contained, Containment};
use crate::error::{Error, Operation, Result};
use crate::inner::{Config, Inner};
use crate::journal::Journal;
use crate::kind::ResourceKind;
use crate::sys::root::TempRoot;

use super::Supervisor;

/// Configures and starts a [`Supervisor`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
/// use std::time::Duration;
/// use tokio_custodian::{ResourceKind, Supervisor};
/// let sup = Supervisor::builder()
///     .temp_base(std::env::temp_dir())
///     .grace(Duration::from_secs(2))
///     .leak_after(ResourceKind::TempFile, Duration::from_secs(60))
///     .start()?;
/// # sup.shutdown().await; Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `start` is called"]
pub struct Builder {
    temp_base: Option<PathBuf>,
    prefix: String,
    grace: Duration,
    leak_after: [Option<Duration>; ResourceKind::COUNT],
    scan_every: Duration,
    reap_abandoned: bool,
    abandoned_min_age: Duration,
    signals: bool,
    state_dir: Option<PathBuf>,
    start_sweep_grace: Duration,
    sweep_at_start: bool,
    child_subreaper: bool,
    containment: Containment,
    systemd_notify: bool,
    inspect: bool,
    watcher: bool,
    drain: Duration,
    quotas: Vec<crate::quota::Quota>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            temp_base: None,
            prefix: "custodian-".into(),
            grace: Duration::from_secs(5),
            leak_after: [None; ResourceKind::COUNT],
            scan_every: Duration::from_secs(1),
            reap_abandoned: true,
            abandoned_min_age: Duration::from_secs(10),
            signals: false,
            state_dir: None,
            start_sweep_grace: crate::DEFAULT_CHILD_GRACE,
            sweep_at_start: true,
            child_subreaper: false,
            containment: Containment::Never,
            systemd_notify: false,
            inspect: false,
            watcher: false,
            drain: Duration::ZERO,
            quotas: Vec::new(),
        }
    }
}

impl Builder {
    /// The directory the private temp root is created in: an absolute path, resolved
    /// once by `start` (symlinks followed), so that the root and its journal record name
    /// it without a symlink. Default: [`std::env::temp_dir`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let base = std::env::temp_dir().join(format!("doc-base-{}", std::process::id()));
    /// std::fs::create_dir_all(&base).unwrap();
    /// let sup = tokio_custodian::Supervisor::builder().temp_base(&base).start()?;
    /// assert!(sup.temp_root().starts_with(&base));
    /// # sup.shutdown().await; std::fs::remove_dir(&base).unwrap(); Ok(()) }
    /// ```
    pub fn temp_base(mut self, dir: impl Into<PathBuf>) -> Self {
        self.temp_base = Some(dir.into());
        self
    }

    /// The start of the temp root's name. Default: `custodian-`.
    ///
    /// It also names what the start-up reaper may remove (see
    /// [`reap_abandoned`](Self::reap_abandoned)), so [`start`](Self::start) refuses a prefix
    /// shorter than 4 bytes, one made of hex digits only, or one with a `/` or NUL.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().temp_prefix("ingest-").start()?;
    /// let name = sup.temp_root().file_name().unwrap().to_string_lossy().into_owned();
    /// assert!(name.starts_with("ingest-"));
    /// // Too short to name what the start-up reaper may remove:
    /// assert!(tokio_custodian::Supervisor::builder().temp_prefix("x").start().is_err());
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn temp_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long a cancelled scope's body may keep running before it is dropped, and the
    /// **total** bound of a graceful shutdown: hooks, scopes and clean-ups (a child's own
    /// stop grace included) all end by this much after shutdown begins; then children
    /// get SIGKILL and what is left is reclaimed at once. Default: 5 s.
    /// `Duration::MAX` means "wait for ever".
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// use std::time::Duration;
    /// let sup = tokio_custodian::Supervisor::builder().grace(Duration::from_millis(200)).start()?;
    /// let s = sup.clone();
    /// let stuck = tokio::spawn(async move {
    ///     s.scope("stuck", async |_| std::future::pending::<()>().await).await
    /// });
    /// tokio::task::yield_now().await;
    /// let report = sup.shutdown().await; // the stuck scope is cut off after 200 ms
    /// assert!(!report.scopes_finished && report.took < Duration::from_secs(5));
    /// assert!(stuck.await.unwrap().unwrap_err().is_cancellation());
    /// # Ok(()) }
    /// ```
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Makes shutdown begin with a **drain** of at most `budget`: new top-level scopes
    /// ([`Supervisor::scope`] and [`Scope::scope`](crate::Scope::scope) on the root), and
    /// new resources and tasks of the root scope, are refused with
    /// [`Error::Draining`], while scopes already running are *not* cancelled and keep
    /// acquiring (temp files, children, nested scopes...) until they end. The drain ends
    /// when every top-level scope has ended, when `budget` runs out, or when shutdown is
    /// forced (a second signal, [`Supervisor::force`]); then shutdown goes on as without
    /// a drain: cancel every scope, run hooks, wait, force.
    ///
    /// The drain is part of the [`grace`](Self::grace), which stays the **total** bound:
    /// a drain that uses it all leaves scopes no time to wind down once cancelled. Keep
    /// `budget` below the grace (for example 2/3 of it). [`Supervisor::draining`]
    /// completes when the drain begins: hand it to a server's graceful shutdown so that
    /// it stops accepting. The [`ShutdownReport::drain`](crate::ShutdownReport::drain)
    /// says how it went.
    ///
    /// Default: no drain (`Duration::ZERO`), shutdown cancels every scope at once, as
    /// it always did: a scope that runs until cancelled (a worker loop) would otherwise
    /// hold every shutdown for the whole budget. A service whose scopes are requests
    /// should turn it on. Saturating: `Duration::MAX` drains until the grace runs out.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// use std::time::Duration;
    /// let sup = tokio_custodian::Supervisor::builder()
    ///     .grace(Duration::from_secs(10))
    ///     .drain(Duration::from_secs(6))
    ///     .start()?;
    /// let s = sup.clone();
    /// let request = tokio::spawn(async move {
    ///     s.scope("request", async |s| {
    ///         tokio::time::sleep(Duration::from_millis(50)).await;
    ///         s.temp_file().await.map(drop) // still admitted: the scope was running
    ///     })
    ///     .await
    /// });
    /// tokio::task::yield_now().await; // the request's scope starts
    /// let report = sup.shutdown().await;
    /// assert!(request.await.unwrap()?.is_ok());
    /// assert_eq!(report.drain.unwrap().scopes_finished, 1);
    /// # Ok(()) }
    /// ```
    pub fn drain(mut self, budget: Duration) -> Self {
        self.drain = budget;
        self
    }

    /// Adds a [`Quota`](crate::Quota): a limit on live resources of a kind, open files,
    /// fds or temp bytes (call it once per quota; a resource takes room in every quota
    /// that counts it, in the order they were added).
    ///
    /// An asynchronous acquisition — [`Scope::temp_file`](crate::Scope::temp_file),
    /// [`Scope::temp_dir`](crate::Scope::temp_dir), [`Scope::open`](crate::Scope::open),
    /// [`Scope::create`](crate::Scope::create),
    /// [`Command::spawn_when_room`](crate::Command::spawn_when_room),
    /// [`Command::output`](crate::Command::output) and
    /// [`Command::status`](crate::Command::status), file locks, atomic files and
    /// [`Scope::register_when_room`](crate::Scope::register_when_room)
    /// (tokio-custodian-audio's decoders) — **waits** for room, first come first
    /// served in each quota and holding no quota's room while it waits for another's,
    /// before creating anything; dropping it while it waits takes nothing (a
    /// resource that can never fit, under a limit of 0, is refused at once). It
    /// stops waiting with [`Error::ShuttingDown`] when shutdown cancels the root, and
    /// with [`Error::Cancelled`] as soon as its scope is cancelled. A wait that would
    /// close a wait-for cycle — its request (top-level scope) holds room, and every
    /// holder of the room it waits for is itself a request waiting — is refused with
    /// [`Error::QuotaExceeded`] instead, so quotas never stop a service (see
    /// docs/services.md). [`TempBuilder::no_wait`](crate::TempBuilder::no_wait) makes
    /// it fail fast instead. Synchronous acquisitions cannot wait:
    /// [`Command::spawn`](crate::Command::spawn) is refused with
    /// [`Error::QuotaExceeded`] before it forks; [`Scope::register`](crate::Scope::register)
    /// is refused at registration (what it created is released at once, counted as
    /// created and released `Cancelled`).
    /// Room returns when a resource's release has
    /// finished (a child reaped, a dir removed), on every release path.
    /// [`Supervisor::quotas`] counts use, waits and refusals. Without quotas an
    /// acquisition pays one branch.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// use tokio_custodian::{Quota, ResourceKind};
    /// let sup = tokio_custodian::Supervisor::builder()
    ///     .quota(Quota::live(ResourceKind::TempFile, 1))
    ///     .start()?;
    /// let first = sup.temp_file().await?;
    /// let refused = sup.temp().no_wait().file().await.unwrap_err();
    /// assert_eq!(refused.io_kind(), Some(std::io::ErrorKind::QuotaExceeded));
    /// let s = sup.clone();
    /// let second = tokio::spawn(async move { s.temp_file().await }); // waits
    /// tokio::task::yield_now().await;
    /// assert_eq!(sup.quotas()[0].waiting, 1);
    /// drop(first); // room: the waiting acquisition proceeds
    /// assert!(second.await.unwrap().is_ok());
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn quota(mut self, quota: crate::quota::Quota) -> Self {
        self.quotas.push(quota);
        self
    }

    /// Warn (a `tracing` event) about resources of `kind` alive longer than `age`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// use std::time::Duration;
    /// use tokio_custodian::ResourceKind;
    /// // A child alive for more than 10 minutes is reported through `tracing` as a likely leak.
    /// let sup = tokio_custodian::Supervisor::builder()
    ///     .leak_after(ResourceKind::Child, Duration::from_secs(600))
    ///     .start()?;
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn leak_after(mut self, kind: ResourceKind, age: Duration) -> Self {
        self.leak_after[kind.index()] = Some(age);
        self
    }

    /// Warn about resources of any kind alive longer than `age`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// use std::time::Duration;
    /// let sup = tokio_custodian::Supervisor::builder()
    ///     .leak_after_all(Duration::from_millis(1))
    ///     .leak_scan_interval(Duration::from_millis(5))
    ///     .start()?;
    /// let _held = sup.temp_file().await?;
    /// tokio::time::sleep(Duration::from_millis(20)).await; // a warning is logged for it
    /// assert_eq!(sup.leaks(Duration::from_millis(1)).len(), 1);
    /// # drop(_held); sup.shutdown().await; Ok(()) }
    /// ```
    pub fn leak_after_all(mut self, age: Duration) -> Self {
        self.leak_after = [Some(age); ResourceKind::COUNT];
        self
    }

    /// How often the supervisor task looks for resources past their leak threshold.
    /// Default: 1 s; at least 1 ms.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// use std::time::Duration;
    /// // Look for resources past their threshold every 100 ms (zero would be 1 ms).
    /// let sup = tokio_custodian::Supervisor::builder()
    ///     .leak_after_all(Duration::from_secs(30))
    ///     .leak_scan_interval(Duration::from_millis(100))
    ///     .start()?;
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn leak_scan_interval(mut self, every: Duration) -> Self {
        // A zero period would make the scanner's interval panic.
        self.scan_every = every.max(Duration::from_millis(1));
        self
    }

    /// Whether to listen for SIGINT and SIGTERM: the first starts a graceful shutdown,
    /// the second forces it. Default: off. See [`Supervisor::install_signal_handlers`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// // The first SIGINT/SIGTERM starts the graceful shutdown; the program waits for it.
    /// let sup = tokio_custodian::Supervisor::builder().handle_signals(true).start()?;
    /// # let s = sup.clone(); tokio::spawn(async move { s.shutdown().await });
    /// let report = sup.wait_for_shutdown().await; // on a signal, `began_by` names it
    /// println!("{report}");
    /// # Ok(()) }
    /// ```
    pub fn handle_signals(mut self, on: bool) -> Self {
        self.signals = on;
        self
    }

    /// Whether `start` removes the temp roots of dead supervisors (same temp base and
    /// prefix, same user, mode 0700, not locked by a live owner, older than
    /// [`abandoned_min_age`](Self::abandoned_min_age)): what a SIGKILLed or aborted
    /// process left behind. Default: on. [`Supervisor::reaped_at_start`] lists them.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// // Leave other processes' abandoned roots alone (a test harness sharing a temp base).
    /// let sup = tokio_custodian::Supervisor::builder().reap_abandoned(false).start()?;
    /// assert!(sup.reaped_at_start().await.is_empty());
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn reap_abandoned(mut self, on: bool) -> Self {
        self.reap_abandoned = on;
        self
    }

    /// How old an unlocked root must be before it counts as abandoned (a concurrent start
    /// creates its root a moment before locking it). Default: 10 s.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// use std::time::Duration;
    /// let sup = tokio_custodian::Supervisor::builder()
    ///     .abandoned_min_age(Duration::from_secs(60))
    ///     .start()?;
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn abandoned_min_age(mut self, age: Duration) -> Self {
        self.abandoned_min_age = age;
        self
    }

    /// Keeps a crash journal in `dir` (created with mode 0700 if missing; a symlink, or a
    /// directory of another user or open to others, is refused by `start`), and sweeps
    /// it at `start`: what supervisors that died there (SIGKILL, abort, power loss) left
    /// is reaped — their children's process groups stopped, their temp roots removed —
    /// on the blocking pool; [`Supervisor::swept_at_start`] reports it. Default: none.
    ///
    /// The journal records this process's identity (pid, start time, boot id), its temp
    /// root and each live child; see `docs/crash-recovery.md` for when each record is
    /// durable and what the sweep proves before it acts. `start` writes the owner record
    /// and makes it durable (two `fsync`s) on the blocking pool; a spawn costs one
    /// `write` more, a reap another.
    /// Children get the owner marker `CUSTODIAN_OWNER` in their environment (the sweep
    /// finds their descendants by it).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let dir = std::env::temp_dir().join(format!("custodian-state-doc-{}", std::process::id()));
    /// let sup = tokio_custodian::Supervisor::builder().state_dir(&dir).start()?;
    /// let report = sup.swept_at_start().await;
    /// assert!(report.dead_owners.is_empty());
    /// # sup.shutdown().await; drop(sup); std::fs::remove_dir(&dir).unwrap(); Ok(()) }
    /// ```
    pub fn state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state_dir = Some(dir.into());
        self
    }

    /// The grace `start`'s sweep of the [state dir](Self::state_dir) gives a dead
    /// owner's child between SIGTERM and SIGKILL when its record has none (journals of
    /// older versions, and processes found by the environment marker); a child recorded
    /// with its own [`grace`](crate::Command::grace) gets that. Default:
    /// [`DEFAULT_CHILD_GRACE`](crate::DEFAULT_CHILD_GRACE) (2 s). A grace too long to
    /// add to the clock waits as long as the process takes.
    ///
    /// ```
    /// let b = tokio_custodian::Supervisor::builder()
    ///     .start_sweep_grace(std::time::Duration::from_millis(500));
    /// # drop(b);
    /// ```
    pub fn start_sweep_grace(mut self, grace: Duration) -> Self {
        self.start_sweep_grace = grace;
        self
    }

    /// Whether [`start`](Self::start) sweeps the [state dir](Self::state_dir) for dead
    /// owners' journals (on the blocking pool; see
    /// [`swept_at_start`](crate::Supervisor::swept_at_start)). Default: on. Turn it off
    /// where recovery runs on its own, before the service (a unit's
    /// `ExecStartPre=custodian sweep`, or [`recover`](crate::recover)); the journal is
    /// still written.
    ///
    /// ```
    /// let b = tokio_custodian::Supervisor::builder().sweep_at_start(false);
    /// # drop(b);
    /// ```
    pub fn sweep_at_start(mut self, on: bool) -> Self {
        self.sweep_at_start = on;
        self
    }

    /// [`state_dir`](Self::state_dir) at [`default_state_dir`](crate::default_state_dir)
    /// (`/run/custodian` for root; `$XDG_RUNTIME_DIR/custodian` when that dir is this
    /// user's own, mode 0700) if there is one; otherwise no journal.
    ///
    /// ```
    /// let b = tokio_custodian::Supervisor::builder().default_state_dir();
    /// # drop(b);
    /// ```
    pub fn default_state_dir(mut self) -> Self {
        self.state_dir = crate::recovery::default_state_dir();
        self
    }

    /// Makes this process a child subreaper (`PR_SET_CHILD_SUBREAPER`) while the
    /// supervisor lives, so that descendants of managed children that leave their
    /// process group (`setsid`, a double fork) and are orphaned become children of this
    /// process; those proven to descend from this supervisor's children are stopped
    /// with the child that spawned them (SIGTERM, its grace, SIGKILL) and reaped, and
    /// counted in [`Supervisor::adopted`] and the shutdown report. Default: off.
    ///
    /// The setting is process-wide and changes who reaps orphans, so it is opt-in.
    /// Nothing is reaped that is not proven adopted, always by pid, never with
    /// `waitpid(-1)`: children spawned outside custodian keep their exit statuses. Every
    /// managed child gets `CUSTODIAN_OWNER` in its environment (the proof). See
    /// `docs/processes.md` for the contract and what is not caught.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().child_subreaper(true).start()?;
    /// // `setsid` leaves the group; the shell exits at once, so the sleep is adopted.
    /// let child = sup.command("sh").args(["-c", "setsid sleep 1000 & exit 0"]).spawn()?;
    /// child.close().await?; // the adopted sleep is stopped and reaped too
    /// let report = sup.shutdown().await;
    /// assert_eq!(report.adopted.live, 0);
    /// # Ok(()) }
    /// ```
    pub fn child_subreaper(mut self, on: bool) -> Self {
        self.child_subreaper = on;
        self
    }

    /// The containment tier to run managed children in (see
    /// [`ContainmentTier`](crate::ContainmentTier)). Default: [`Containment::Never`],
    /// the process-group tier.
    ///
    /// With [`Containment::Auto`] or [`Containment::Required`], `start` looks for the
    /// cgroup2 mount in `/proc/self/mountinfo` and this process's cgroup in
    /// `/proc/self/cgroup`, creates `<own cgroup>/custodian-<pid>-<start>-<pidns>-<random>`, and proves
    /// the tier (a forked process enters a cgroup below it; `cgroup.kill` takes a write).
    /// Then each child is spawned into a cgroup of its own (`child-<n>`) before it runs
    /// any code, and its release ends with `cgroup.kill` and a wait for `populated 0`:
    /// descendants that left the group (`setsid`, double forks, a cleared environment)
    /// die with it. Empty cgroups are removed on every release path, the supervisor's
    /// at shutdown. The tier in force, and why not the cgroup one, is in
    /// [`StatsSnapshot::containment`](crate::StatsSnapshot::containment), the shutdown
    /// report and a `tracing` event at start.
    ///
    /// Not the default in the library because a spawn into a cgroup needs a `pre_exec`
    /// hook, which makes std fork instead of `posix_spawn`: a spawn then costs in
    /// proportion to the parent's memory (see `docs/processes.md`). `custodian run`
    /// uses `Auto`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// use tokio_custodian::Containment;
    /// let sup = tokio_custodian::Supervisor::builder().containment(Containment::Auto).start()?;
    /// println!("{}", sup.stats().containment); // cgroup (...) or process group (no cgroup: why)
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn containment(mut self, setting: Containment) -> Self {
        self.containment = setting;
        self
    }

    /// Speaks systemd's notify protocol when `NOTIFY_SOCKET` is set (a unit with
    /// `Type=notify`): `READY=1` once `start` has succeeded, `STOPPING=1` when the drain
    /// (or, without one, shutdown) begins, and `EXTEND_TIMEOUT_USEC` every second while
    /// shutdown runs, asking for the rest of the [`grace`](Self::grace) plus 3 s, so that
    /// `TimeoutStopSec` does not SIGKILL a shutdown that keeps its bound. Without
    /// `NOTIFY_SOCKET` it does nothing. Default: off. Children inherit `NOTIFY_SOCKET`
    /// unless their command removes it (`Command::env_remove`).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().systemd_notify(true).start()?;
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn systemd_notify(mut self, on: bool) -> Self {
        self.systemd_notify = on;
        self
    }

    /// Serve read-only snapshots of this supervisor on a unix socket, for `custodian
    /// inspect PID` (or `--state-dir DIR`) and [`inspect`](crate::inspect): live
    /// resources, scopes, quotas, clean-ups, the shutdown state, the containment tier.
    /// The socket, mode 0600, is `inspect-<12 hex digits>.sock` in the temp root (0700),
    /// so that a SIGKILLed owner's goes with its root; `custodian inspect --state-dir`
    /// finds a state dir's live owners by their open journals. Only the same uid or root is answered (`SO_PEERCRED`);
    /// nothing is read from clients; connections, time and size are bounded
    /// (`docs/observability.md`). Idle, it costs one parked task and no work on the hot
    /// path. Default: off.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().inspect(true).start()?;
    /// assert!(sup.inspect_socket().unwrap().starts_with(sup.temp_root()));
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn inspect(mut self, on: bool) -> Self {
        self.inspect = on;
        self
    }

    /// Starts a **watcher** with the supervisor: a small process forked from this one
    /// that, if this process dies without a shutdown (SIGKILL, the OOM killer, an
    /// abort), at once recovers its crash journal — stops its children's process groups
    /// (SIGTERM, each child's grace, SIGKILL) and the descendants that left them, kills
    /// its cgroups (the cgroup tier), removes its temp root, drops the journal — and
    /// exits. A SIGKILLed owner's tree is then gone in milliseconds (a tree that honours
    /// SIGTERM; one that ignores it at its grace) instead of at the next start or
    /// `custodian sweep`. Needs a [state dir](Self::state_dir): the watcher acts on the
    /// journal, and only with the proofs any sweep needs.
    ///
    /// [`shutdown`](crate::Supervisor::shutdown) ends by telling the watcher that all
    /// was released, and reaps it. If the watcher itself dies, a `tracing` warning says
    /// so and [`StatsSnapshot::watcher`](crate::StatsSnapshot::watcher) shows
    /// [`WatcherState::Died`](crate::WatcherState::Died); this process's own releases
    /// never depend on it. Its pid is in the stats: a program that reaps every child
    /// (an init) must leave it alone. It ignores SIGTERM, SIGINT and SIGHUP (meant for
    /// this process's group or unit) and runs in a session of its own. Default: off;
    /// `custodian run --state-dir` turns it on. See `docs/processes.md` ("The
    /// watcher") for what it costs and what it does not cover. Needs pidfds (Linux 5.3;
    /// `start` fails with [`Operation::Watcher`] without them).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let dir = std::env::temp_dir().join(format!("custodian-watch-doc-{}", std::process::id()));
    /// let sup = tokio_custodian::Supervisor::builder().state_dir(&dir).watcher(true).start()?;
    /// assert_eq!(sup.stats().watcher.state, tokio_custodian::WatcherState::Watching);
    /// sup.shutdown().await;
    /// assert_eq!(sup.stats().watcher.state, tokio_custodian::WatcherState::Finished);
    /// // Without a state dir there is no journal to watch:
    /// let err = tokio_custodian::Supervisor::builder().watcher(true).start().unwrap_err();
    /// assert_eq!(err.operation(), tokio_custodian::Operation::Watcher);
    /// # drop(sup); std::fs::remove_dir(&dir).unwrap(); Ok(()) }
    /// ```
    pub fn watcher(mut self, on: bool) -> Self {
        self.watcher = on;
        self
    }

    /// Creates the private temp root and spawns the supervisor task.
    ///
    /// # Errors
    ///
    /// [`Error::NoRuntime`] outside a Tokio runtime; [`Error::Io`] with
    /// [`Operation::CreateTempRoot`] if the temp base is relative (`InvalidInput`) or
    /// cannot be resolved, or the temp root cannot be created, or a quota's limit is
    /// above the largest kept (`InvalidInput`, checked before anything is created: a
    /// [`Quota`](crate::Quota) read through serde keeps its limit as written), or with
    /// [`Operation::InstallSignalHandlers`] (see [`Builder::handle_signals`]), or with
    /// [`Operation::OpenJournal`] naming the state dir if the journal cannot be created
    /// there (see [`Builder::state_dir`]), or with [`Operation::ChildSubreaper`] if the
    /// process cannot become a child subreaper or cannot read its own `/proc/PID/stat`
    /// (`/proc` not mounted: the reaper would see nothing; see [`Builder::child_subreaper`]),
    /// or with [`Operation::Containment`] if [`Containment::Required`] cannot be had
    /// (the path names where the missing piece was looked for;
    /// [`Unavailable::of`](crate::Unavailable::of) tells what is missing), or with
    /// [`Operation::Notify`] naming `NOTIFY_SOCKET`'s value if it is neither an absolute
    /// path nor `@name` (see [`Builder::systemd_notify`]), or with [`Operation::Inspect`]
    /// naming the dir if the inspect socket cannot be bound there (see
    /// [`Builder::inspect`]), or with [`Operation::Watcher`] if the watcher is asked
    /// for without a state dir (`InvalidInput`, an empty path, before anything is
    /// created) or cannot be forked (naming the state dir; see [`Builder::watcher`]).
    ///
    /// ```
    /// let err = tokio_custodian::Supervisor::builder().start().unwrap_err();
    /// assert!(matches!(err, tokio_custodian::Error::NoRuntime { .. }));
    /// ```
    pub fn start(self) -> Result<Supervisor> {
        let handle = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime {
            op: Operation::CreateTempRoot,
        })?;
        let base = self.temp_base.unwrap_or_else(std::env::temp_dir);
        // Resolved once, here: the journal records the root by a path with no symlink in
        // it, which the sweep (that refuses symlinked components) can remove.
        let base =
            canonical_base(&base).map_err(|e| Error::io(Operation::CreateTempRoot, &base, e))?;
        crate::recovery::check_root_prefix(&self.prefix)
            .map_err(|e| Error::io(Operation::CreateTempRoot, &base, e))?;
        // Before anything is created: a quota read through serde may hold any limit.
        for q in &self.quotas {
            q.check()
                .map_err(|e| Error::io(Operation::CreateTempRoot, &base, e))?;
        }
        if self.watcher && self.state_dir.is_none() {
            let e = std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the watcher recovers the crash journal: it needs a state dir (Builder::state_dir)",
            );
            return Err(Error::io(Operation::Watcher, PathBuf::new(), e));
        }
        let notifier = match self.systemd_notify {
            true => crate::notify::Notifier::from_env().map_err(|e| {
                let to = std::env::var_os("NOTIFY_SOCKET").unwrap_or_default();
                Error::io(Operation::Notify, PathBuf::from(to), e)
            })?,
            false => None,
        };
        // The journal comes first, so that the root is recorded before it exists.
        let journal = match &self.state_dir {
            None => None,
            Some(dir) => Some(Arc::new(
                Journal::create(dir).map_err(|e| Error::io(Operation::OpenJournal, dir, e))?,
            )),
        };
        // After the journal (a required tier that is missing drops it again): the
        // cgroup's path is recorded right before its `mkdir` and the cgroup right after
        // (below), so an owner killed in between leaves no cgroup that no record names.
        let mut intent_failed = None;
        let containment = Contained::choose_with(self.containment, |path| match &journal {
            Some(j) => j.cgroup_intent(path).inspect_err(|e| {
                intent_failed = Some(std::io::Error::new(e.kind(), e.to_string()));
            }),
            None => Ok(()),
        });
        if let (Some(e), Some(dir)) = (intent_failed, &self.state_dir) {
            return Err(Error::io(Operation::OpenJournal, dir, e));
        }
        let containment = containment?;
        let root = TempRoot::create_with(&base, &self.prefix, |path| match &journal {
            Some(j) => j.root_intent(path),
            None => Ok(()),
        })
        .map_err(|e| Error::io(Operation::CreateTempRoot, &base, e))?;
        if let (Some(j), Some(dir)) = (&journal, &self.state_dir)
            && let Err(e) = j.root_created(root.path(), root.id())
        {
            // Nothing owns the root yet: do not leave it behind.
            let _ = root.remove();
            return Err(Error::io(Operation::OpenJournal, dir, e));
        }
        // The cgroup tier: recorded before any child runs in it, so that a SIGKILLed
        // owner's whole tree is killed by this path (and inode) at the next sweep.
        if let (Some(j), Some(dir), Some(cg)) =
            (&journal, &self.state_dir, containment.cgroup.as_ref())
            && let Err(e) = j.cgroup_created(cg.path(), cg.id())
        {
            let _ = root.remove();
            let _ = cg.remove();
            return Err(Error::io(Operation::OpenJournal, dir, e));
        }
        let token = CancellationToken::new();
        let config = Config {
            grace: self.grace,
            drain: self.drain,
            quotas: self.quotas,
            leak_after: self.leak_after,
            on_last_drop: crate::emergency::on_last_drop,
        };
        let mut inner = Inner::new(config, root, handle.clone(), token.clone());
        if self.reap_abandoned {
            // On the blocking pool: a dead owner may have left millions of files, and
            // `start` runs on a runtime thread.
            let (tx, rx) = tokio::sync::watch::channel(None);
            let (prefix, min_age) = (self.prefix.clone(), self.abandoned_min_age);
            let base = base.clone();
            drop(handle.spawn_blocking(move || {
                // The age sweep's default mode, roots only: a root is taken only if
                // proven ours and abandoned, and inside it each entry is judged on its
                // own, so what a dead owner's surviving children hold (a locked file, a
                // listening socket, a file written within `min_age`) stays, and so does
                // the root around it. Best effort: a base we cannot list fails
                // `TempRoot::create` above.
                let report = crate::recovery::AgeSweep::new(&base, min_age)
                    .root_prefix(prefix)
                    .roots_only()
                    .run();
                let reaped: Vec<_> = match report {
                    Ok(r) => r
                        .removed
                        .into_iter()
                        .filter(|p| p.parent() == Some(base.as_path()))
                        .collect(),
                    Err(e) => {
                        tracing::warn!(error = %e, "reaping abandoned roots at start failed");
                        Vec::new()
                    }
                };
                for path in &reaped {
                    tracing::info!(root = %path.display(), "removed the temp root of a dead supervisor");
                }
                let _ = tx.send(Some(reaped));
            }));
            inner.reaped_at_start = rx;
        }
        if let Some(dir) = self.state_dir.as_ref().filter(|_| self.sweep_at_start) {
            // On the blocking pool: stopping a dead owner's children waits for them.
            let (tx, rx) = tokio::sync::watch::channel(None);
            let (dir, grace) = (dir.clone(), self.start_sweep_grace);
            drop(handle.spawn_blocking(move || {
                let report = crate::recovery::sweep_journals(&dir, grace).unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "crash sweep at start failed");
                    crate::journal::SweepReport {
                        state_dir: dir.clone(),
                        ..Default::default()
                    }
                });
                let _ = tx.send(Some(report));
            }));
            inner.swept_at_start = rx;
        }
        if let Some(j) = &journal {
            // The owner record's two `fsync`s, off the runtime thread `start` runs on.
            drop(handle.spawn_blocking(j.durability()));
        }
        inner.journal = journal;
        inner
            .records
            .stats
            .set_containment(containment.tier.clone());
        inner.containment = containment;
        // After the journal recorded the root and the cgroup, before any child runs: a
        // failure drops `inner`, whose emergency path removes what was created.
        if let (true, Some(j), Some(dir)) = (self.watcher, &inner.journal, &self.state_dir) {
            let w = crate::watcher::start(
                j.path(),
                self.start_sweep_grace,
                inner.records.clone(),
                &handle,
            )
            .map_err(|e| Error::io(Operation::Watcher, dir, e))?;
            inner.watcher = Some(w);
        }
        if self.child_subreaper {
            let mark = inner.journal.as_ref().map(|j| j.mark().clone());
            let r = crate::reaper::Reaper::start(mark).map_err(|e| {
                let me = PathBuf::from(format!("/proc/{}", std::process::id()));
                Error::io(Operation::ChildSubreaper, &me, e)
            })?;
            inner.reaper = Some(Arc::new(r));
        }
        let inner = Arc::new(inner);
        if let Some(r) = &inner.reaper {
            super::adoption::drive(r, &handle, inner.done.clone())?;
        }
        tracing::info!(temp_root = %inner.temp_root.path().display(), "supervisor started");
        if self.leak_after.iter().any(Option::is_some) {
            handle.spawn(watch(Arc::downgrade(&inner), token, self.scan_every));
        }
        super::census::enroll(&inner);
        let sup = Supervisor { inner };
        if self.inspect {
            // In the temp root: what a SIGKILLed owner leaves there goes with the root
            // (the crash sweep, the start-up reaper); a state dir would keep it.
            let dir = sup.temp_root().to_path_buf();
            let path = crate::inspect::serve(&sup.inner, &dir)
                .map_err(|e| Error::io(Operation::Inspect, &dir, e))?;
            let _ = sup.inner.inspect_socket.set(path);
        }
        if self.signals {
            sup.install_signal_handlers()?;
        }
        if let Some(n) = notifier {
            crate::notify::drive(&sup.inner, n);
        }
        Ok(sup)
    }
}

/// The supervisor task: periodic leak scans until shutdown. It holds only a weak
/// reference, so it never keeps the supervisor alive.
async fn watch(inner: Weak<Inner>, token: CancellationToken, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = token.cancelled() => return,
            _ = tick.tick() => match inner.upgrade() {
                Some(inner) => inner.scan_leaks(),
                None => return,
            },
        }
    }
}

/// `base`, absolute and with every symlink resolved. A relative base is refused: it
/// would name another directory from another working directory, a sweep's included.
fn canonical_base(base: &std::path::Path) -> std::io::Result<PathBuf> {
    if !base.is_absolute() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the temp base must be an absolute path",
        ));
    }
    std::fs::canonicalize(base)
}
