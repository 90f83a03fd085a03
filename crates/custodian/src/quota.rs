//! Quotas (vocabulary, layer 2): what a [`Quota`] limits, what one resource of each kind
//! costs against it, and the usage counters reported in the stats.
//!
//! The accounting itself (semaphores, permits held by registry entries) is in
//! `inner::quota` and `registry::permits`.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::kind::ResourceKind;

/// A limit on what a supervisor holds at once, set with
/// [`Builder::quota`](crate::Builder::quota).
///
/// An acquisition that would go over waits for room (first come, first served) or, in
/// its fail-fast form, is refused with [`Error::QuotaExceeded`](crate::Error::QuotaExceeded).
/// A resource's share is returned when its release has finished (its clean-up done),
/// on every release path.
///
/// ```
/// use tokio_custodian::{Quota, ResourceKind};
/// let q = Quota::live(ResourceKind::Child, 4);
/// assert_eq!(q.to_string(), "live child ≤ 4");
/// assert_eq!(Quota::fds(64).limit(), 64);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Quota {
    on: QuotaOn,
    limit: u64,
}

/// What a [`Quota`] counts.
///
/// ```
/// use tokio_custodian::{Quota, QuotaOn};
/// assert_eq!(Quota::fds(64).on(), QuotaOn::Fds);
/// assert_eq!(Quota::open_files(32).on(), QuotaOn::OpenFiles);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum QuotaOn {
    /// Live resources of one kind (any kind, including those other crates register,
    /// such as tokio-custodian-audio's decoders).
    Live(ResourceKind),
    /// Open files: managed files and temp files together.
    OpenFiles,
    /// File descriptors held for guards, all kinds together (see [`Quota::fds`]).
    Fds,
    /// Bytes of temp files on disk (see [`Quota::temp_bytes`]).
    TempBytes,
}

impl Quota {
    /// At most `n` live resources of `kind`.
    ///
    /// ```
    /// let q = tokio_custodian::Quota::live(tokio_custodian::ResourceKind::AudioDecoder, 8);
    /// assert_eq!(q.on(), tokio_custodian::QuotaOn::Live(tokio_custodian::ResourceKind::AudioDecoder));
    /// ```
    pub fn live(kind: ResourceKind, n: usize) -> Quota {
        Quota::new(QuotaOn::Live(kind), n as u64)
    }

    /// At most `n` open files: [`ManagedFile`](crate::ManagedFile)s and
    /// [`TempFile`](crate::TempFile)s together.
    ///
    /// ```
    /// assert_eq!(tokio_custodian::Quota::open_files(16).limit(), 16);
    /// ```
    pub fn open_files(n: usize) -> Quota {
        Quota::new(QuotaOn::OpenFiles, n as u64)
    }

    /// At most `n` file descriptors held for guards, counted from the code path that
    /// holds them, at its peak: one per managed file, temp file, lock and audio
    /// decoder; two per atomic file (its temp file and the target's directory); five
    /// per child (custodian's pidfd, tokio's own, and the three its stop's `/proc` scan
    /// opens); a temp dir holds none. A spawn takes, until it has forked, the child's
    /// five plus two for std's exec error pipe and two per stdio stream set (a pipe),
    /// then keeps the five and one per pipe its guard holds (until the child's release;
    /// a pipe kept after it is the caller's). Keep `n` below `RLIMIT_NOFILE` minus what
    /// the rest of the process uses, so that acquisitions wait instead of failing with
    /// `EMFILE`.
    ///
    /// ```
    /// assert_eq!(tokio_custodian::Quota::fds(48).to_string(), "fds ≤ 48");
    /// ```
    pub fn fds(n: usize) -> Quota {
        Quota::new(QuotaOn::Fds, n as u64)
    }

    /// At most `bytes` in temp files, counted from the writes made through their
    /// [`TempFile`](crate::TempFile) guards: a write that would take a file past the
    /// furthest offset written so far is charged first, and refused with
    /// [`io::ErrorKind::QuotaExceeded`](std::io::ErrorKind::QuotaExceeded) if the quota
    /// has no room (a write never waits). `flush` and `sync_all` settle the charge to the
    /// file's size (`fstat`), returning what a shrink or a short write freed; the whole
    /// charge returns when the file is released. Bytes written by other means (a child
    /// writing to the path) are not counted until the next settle, and a settle never
    /// refuses them (they are on disk already). Temp dirs' contents are not counted.
    ///
    /// ```
    /// assert_eq!(tokio_custodian::Quota::temp_bytes(1 << 20).limit(), 1 << 20);
    /// ```
    pub fn temp_bytes(bytes: u64) -> Quota {
        Quota::new(QuotaOn::TempBytes, bytes)
    }

    fn new(on: QuotaOn, limit: u64) -> Quota {
        // A semaphore holds at most `usize::MAX >> 3` permits: beyond that is unlimited
        // in practice; saturate rather than panic.
        Quota {
            on,
            limit: limit.min(MAX_LIMIT),
        }
    }

    /// What it counts.
    ///
    /// ```
    /// assert_eq!(tokio_custodian::Quota::fds(1).on(), tokio_custodian::QuotaOn::Fds);
    /// ```
    pub fn on(&self) -> QuotaOn {
        self.on
    }

    /// Its limit (resources, fds or bytes).
    ///
    /// ```
    /// assert_eq!(tokio_custodian::Quota::open_files(3).limit(), 3);
    /// ```
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Refuses a limit no quota can keep (above [`MAX_LIMIT`]): the constructors
    /// saturate, but serde reads the limit as it is written.
    pub(crate) fn check(&self) -> std::io::Result<()> {
        if self.limit > MAX_LIMIT {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("quota {self}: the limit is above the largest one kept ({MAX_LIMIT})"),
            ));
        }
        Ok(())
    }

    /// What one resource of `kind` takes from this quota when it is acquired (0: it
    /// does not apply). Temp bytes are charged by writes, not at acquisition.
    pub(crate) fn cost(&self, kind: ResourceKind) -> u32 {
        match self.on {
            QuotaOn::Live(k) => u32::from(k == kind),
            QuotaOn::OpenFiles => {
                u32::from(matches!(kind, ResourceKind::File | ResourceKind::TempFile))
            }
            QuotaOn::Fds => fds_of(kind),
            QuotaOn::TempBytes => 0,
        }
    }
}

/// What one resource of `kind` holds in fds at most, as [`Quota::fds`] counts it (a
/// spawn and an atomic file take more; see there).
pub(crate) fn fds_of(kind: ResourceKind) -> u32 {
    match kind {
        ResourceKind::TempDir => 0,
        ResourceKind::Child => CHILD_FDS,
        _ => 1,
    }
}

/// A live child's fds: custodian's pidfd, tokio's pidfd (its reaper's), and the three
/// its stop's `/proc` scan opens (`/proc`, the listing's own fd, one `stat`), which run
/// before the reap closes the two pidfds.
pub(crate) const CHILD_FDS: u32 = 5;
/// What a spawn holds for a moment beyond the child's fds and its stdio pipes: the
/// exec error pipe std opens when it forks (not with `posix_spawn`; counted anyway).
pub(crate) const SPAWN_FDS: u32 = 2;
/// An atomic writer's fds: its temp file and the target's directory.
pub(crate) const ATOMIC_FDS: u32 = 2;

/// The largest limit a quota keeps (tokio's semaphore maximum, on 64-bit targets).
pub(crate) const MAX_LIMIT: u64 = (usize::MAX >> 3) as u64;

impl fmt::Display for Quota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.on {
            QuotaOn::Live(k) => write!(f, "live {} ≤ {}", k.as_str(), self.limit),
            QuotaOn::OpenFiles => write!(f, "open files ≤ {}", self.limit),
            QuotaOn::Fds => write!(f, "fds ≤ {}", self.limit),
            QuotaOn::TempBytes => write!(f, "temp bytes ≤ {}", self.limit),
        }
    }
}

/// One quota's use, in [`Supervisor::quotas`](crate::Supervisor::quotas) (serde).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
/// let sup = tokio_custodian::Supervisor::builder()
///     .quota(tokio_custodian::Quota::fds(64))
///     .start()?;
/// let _file = sup.temp_file().await?;
/// let usage = &sup.quotas()[0];
/// assert_eq!((usage.in_use, usage.waiting, usage.refused), (1, 0, 0));
/// println!("{usage}");
/// # drop(_file); sup.shutdown().await; Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct QuotaUsage {
    /// The quota.
    pub quota: Quota,
    /// Taken now (resources, fds or bytes).
    pub in_use: u64,
    /// Acquisitions waiting for room now.
    pub waiting: u64,
    /// Acquisitions that had to wait, since start.
    pub waited: u64,
    /// Acquisitions (or temp-file writes) refused for lack of room, since start.
    pub refused: u64,
    /// Of those refused, the waits refused because they would have closed a wait-for
    /// cycle: every holder of the room waited for was itself waiting (see
    /// [`Builder::quota`](crate::Builder::quota)).
    #[serde(default)]
    pub cycles: u64,
}

impl fmt::Display for QuotaUsage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} in use, {} waiting, {} waited, {} refused ({} to break a cycle)",
            self.quota, self.in_use, self.waiting, self.waited, self.refused, self.cycles
        )
    }
}
