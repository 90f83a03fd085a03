//! The age sweep: removes what is old in a base directory, for what no journal recorded.
//!
//! Two modes:
//! - **custodian's own** (the default): only the base's direct entries that
//!   `sys/ownership.rs` proves custodian made and abandoned: temp roots
//!   (`<prefix><32 hex>`, a 0700 directory of this user on the base's mount, unlocked)
//!   and atomic writers' temp files (`.custodian-atomic-<16 hex>`, a regular file of this
//!   user, unlocked), older than the age. A root's insides are then judged entry by
//!   entry as below (a dead owner's descendants may still be writing there), its
//!   symlinks included (they are ours: the link goes, never its target).
//!   Everything else is kept, reported as not custodian's.
//! - **all** (`systemd-tmpfiles --clean` style, opted into): every entry at every depth
//!   on its own (`walk.rs`): a file when its atime, mtime and ctime are all older than
//!   the age; a directory when it is empty after its walk and was itself old before it.
//!   Never a socket, fifo or device; never anything locked (`/proc/locks`, and an
//!   `flock` tried before removal), nor what contains it; only this user's entries
//!   unless [`AgeSweep::other_users`]; symlinks only with [`AgeSweep::symlinks`];
//!   never an excluded name ([`AgeSweep::DEFAULT_EXCLUDES`] and [`AgeSweep::exclude`]).
//!
//! In both: the base is opened without following a symlink in its last component, and
//! refused if others may write it (unless it is root-owned and sticky, like `/tmp`);
//! everything below is reached relative to directory fds, never following a symlink,
//! never crossing a mount (by mount id), inode-checked before removal, with an
//! iterative walk; a dry run takes no lock (liveness comes from `/proc/locks` alone);
//! `/proc/locks` and `/proc/net/unix` are read once per sweep.

use std::fmt;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use rustix::fs::{AtFlags, CWD, FileType, Mode, OFlags};
use rustix::io::Errno;

use crate::error::{Error, Operation, Result};
use crate::sys::live::Live;

mod exclude;
mod report;
mod walk;

pub use report::{AgeKept, AgeKeptReason, AgeReport};

/// The options of an age sweep, a plain value: build it, then [`run`](Self::run) it
/// (as often as wanted). See the module docs of `recovery/age` in
/// `docs/crash-recovery.md` for what each mode removes.
///
/// ```
/// use std::time::Duration;
/// let base = std::env::temp_dir().join(format!("age-sweep-doc-{}", std::process::id()));
/// std::fs::create_dir(&base).unwrap();
/// std::fs::write(base.join("report.csv"), b"x").unwrap();
/// let report = tokio_custodian::AgeSweep::new(&base, Duration::from_secs(7 * 86400))
///     .all(true)
///     .exclude("*.csv")
///     .dry_run(true)
///     .run()?;
/// assert!(report.removed.is_empty());
/// assert_eq!(report.kept[0].reason.to_string(), "excluded by *.csv");
/// # std::fs::remove_dir_all(&base).unwrap();
/// # Ok::<(), tokio_custodian::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use = "an AgeSweep does nothing until it is run"]
pub struct AgeSweep {
    base: PathBuf,
    age: Duration,
    all: bool,
    exclude: Vec<String>,
    other_users: bool,
    symlinks: bool,
    dry_run: bool,
    root_prefix: String,
}

impl AgeSweep {
    /// Names never swept, at any depth: other programs' live state that looks idle
    /// (systemd's private temp dirs, X11 and ICE sockets and locks, tmux and ssh-agent
    /// sockets, snap's private tmp, custodian's state dirs).
    pub const DEFAULT_EXCLUDES: &'static [&'static str] = &[
        "systemd-private-*",
        ".X11-unix",
        ".ICE-unix",
        ".font-unix",
        ".XIM-unix",
        ".Test-unix",
        ".X*-lock",
        "tmux-*",
        "ssh-*",
        "snap-private-tmp",
        ".custodian",
        "custodian",
    ];

    /// A sweep of `base` for entries older than `age`, in the default mode (custodian's
    /// own only), for real.
    ///
    /// ```
    /// let sweep = tokio_custodian::AgeSweep::new("/tmp", std::time::Duration::from_secs(86400));
    /// # let _ = sweep;
    /// ```
    pub fn new(base: impl Into<PathBuf>, age: Duration) -> Self {
        AgeSweep {
            base: base.into(),
            age,
            all: false,
            exclude: Vec::new(),
            other_users: false,
            symlinks: false,
            dry_run: false,
            root_prefix: "custodian-".into(),
        }
    }

    /// Also sweep other programs' entries, each on its own at every depth (see the type's
    /// docs). Off by default.
    ///
    /// ```
    /// let sweep = tokio_custodian::AgeSweep::new("/tmp", std::time::Duration::from_secs(86400)).all(true);
    /// # let _ = sweep;
    /// ```
    pub fn all(mut self, on: bool) -> Self {
        self.all = on;
        self
    }

    /// Never sweep what matches `pattern` (a glob: `*`, `?`, `[...]`, `{a,b}`): a pattern
    /// without `/` is matched against each entry's name at any depth, one with a `/`
    /// (leading or inside) against its path relative to the base. Adds to [`DEFAULT_EXCLUDES`](Self::DEFAULT_EXCLUDES).
    ///
    /// ```
    /// let sweep = tokio_custodian::AgeSweep::new("/tmp", std::time::Duration::from_secs(86400))
    ///     .exclude("*.pid")
    ///     .exclude("builds/keep-*");
    /// # let _ = sweep;
    /// ```
    pub fn exclude(mut self, pattern: impl Into<String>) -> Self {
        self.exclude.push(pattern.into());
        self
    }

    /// With [`all`](Self::all): also sweep entries of other users (off: only the
    /// effective uid's are removed, others are kept and not entered).
    ///
    /// ```
    /// let sweep = tokio_custodian::AgeSweep::new("/tmp", std::time::Duration::from_secs(86400))
    ///     .all(true)
    ///     .other_users(true);
    /// # let _ = sweep;
    /// ```
    pub fn other_users(mut self, on: bool) -> Self {
        self.other_users = on;
        self
    }

    /// With [`all`](Self::all): also remove old symlinks (the link, never its target).
    /// Off: every symlink is kept.
    ///
    /// ```
    /// let sweep = tokio_custodian::AgeSweep::new("/tmp", std::time::Duration::from_secs(86400))
    ///     .all(true)
    ///     .symlinks(true);
    /// # let _ = sweep;
    /// ```
    pub fn symlinks(mut self, on: bool) -> Self {
        self.symlinks = on;
        self
    }

    /// Report what would be removed, removing nothing and taking no lock.
    ///
    /// ```
    /// let sweep = tokio_custodian::AgeSweep::new("/tmp", std::time::Duration::from_secs(86400)).dry_run(true);
    /// # let _ = sweep;
    /// ```
    pub fn dry_run(mut self, on: bool) -> Self {
        self.dry_run = on;
        self
    }

    /// The prefix of the temp roots the default mode looks for: the supervisors'
    /// [`Builder::temp_prefix`](crate::Builder::temp_prefix) (default `custodian-`).
    ///
    /// ```
    /// let sweep = tokio_custodian::AgeSweep::new("/tmp", std::time::Duration::from_secs(86400))
    ///     .root_prefix("my-service-");
    /// # let _ = sweep;
    /// ```
    pub fn root_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.root_prefix = prefix.into();
        self
    }

    /// Runs the sweep. Blocking: it walks a directory tree (call it from
    /// [`spawn_blocking`](tokio::task::spawn_blocking) in async code). Problems with one
    /// entry are reported in [`AgeReport::kept`] (as [`AgeKeptReason::Failed`]), not
    /// errors.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] with [`Operation::AgeSweep`] naming the base when:
    /// - it is a symlink ([`BaseRefusal::Symlink`], the kind of `ELOOP`) or others may
    ///   write it without it being root-owned and sticky
    ///   ([`BaseRefusal::WritableByOthers`], kind `PermissionDenied`), with the remedy
    ///   in the message ([`BaseRefusal::of`] gets the reason);
    /// - an exclusion pattern is not a valid glob (kind `InvalidInput`);
    /// - it cannot be opened or listed, or `/proc/locks` cannot be read.
    ///
    /// ```
    /// let err = tokio_custodian::AgeSweep::new("/no/such/dir", std::time::Duration::ZERO)
    ///     .run()
    ///     .unwrap_err();
    /// assert_eq!(err.operation(), tokio_custodian::Operation::AgeSweep);
    /// assert_eq!(err.io_kind(), Some(std::io::ErrorKind::NotFound));
    /// ```
    pub fn run(&self) -> Result<AgeReport> {
        let started = Instant::now();
        let fail = |e: io::Error| Error::io(Operation::AgeSweep, &self.base, e);
        let excludes = exclude::Excludes::new(
            AgeSweep::DEFAULT_EXCLUDES
                .iter()
                .copied()
                .chain(self.exclude.iter().map(String::as_str)),
        )
        .map_err(fail)?;
        let dir = open_base(&self.base).map_err(fail)?;
        let live = Live::read().map_err(fail)?;
        // Saturating: an age longer than the clock's past makes nothing old.
        let before = SystemTime::now()
            .checked_sub(self.age)
            .unwrap_or(SystemTime::UNIX_EPOCH)
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let mut report = AgeReport {
            base: self.base.clone(),
            dry_run: self.dry_run,
            all: self.all,
            ..AgeReport::default()
        };
        let rules = walk::Rules {
            opts: self,
            before,
            euid: rustix::process::geteuid().as_raw(),
            excludes: &excludes,
            live: &live,
            absolute: std::path::absolute(&self.base).unwrap_or_else(|_| self.base.clone()),
        };
        walk::run(&rules, dir, &mut report).map_err(fail)?;
        report.took = started.elapsed();
        Ok(report)
    }
}

/// Why an age sweep refused its base directory; the source of its [`Error::Io`], whose
/// `Display` gives the remedy.
///
/// ```
/// use std::os::unix::fs::PermissionsExt;
/// let base = std::env::temp_dir().join(format!("age-refusal-doc-{}", std::process::id()));
/// std::fs::create_dir(&base).unwrap();
/// std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o777)).unwrap();
/// let err = tokio_custodian::AgeSweep::new(&base, std::time::Duration::ZERO).run().unwrap_err();
/// assert!(matches!(
///     tokio_custodian::BaseRefusal::of(&err),
///     Some(tokio_custodian::BaseRefusal::WritableByOthers { mode: 0o777, .. })
/// ));
/// assert!(err.to_string().contains("chmod 700"));
/// # std::fs::remove_dir(&base).unwrap();
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BaseRefusal {
    /// The base's last component is a symlink: it is not followed.
    Symlink,
    /// Others may write the base and it is not a root-owned sticky directory: another
    /// user could swap what the sweep looks at.
    WritableByOthers {
        /// Its permission bits.
        mode: u32,
        /// Its owner.
        uid: u32,
        /// The base, for the remedy.
        path: PathBuf,
    },
}

impl BaseRefusal {
    /// The refusal inside an error of [`AgeSweep::run`], if it is one.
    ///
    /// ```
    /// let err = tokio_custodian::AgeSweep::new("/no/such/dir", std::time::Duration::ZERO)
    ///     .run()
    ///     .unwrap_err();
    /// assert!(tokio_custodian::BaseRefusal::of(&err).is_none());
    /// ```
    pub fn of(err: &Error) -> Option<&BaseRefusal> {
        match err {
            Error::Io { source, .. } => source.get_ref()?.downcast_ref::<BaseRefusal>(),
            _ => None,
        }
    }
}

impl fmt::Display for BaseRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BaseRefusal::Symlink => f.write_str(
                "the base is a symlink and is not followed; name the directory it points to",
            ),
            BaseRefusal::WritableByOthers { mode, uid, path } => write!(
                f,
                "others may write the base (mode {mode:o}, owner uid {uid}) and it is not a \
                 root-owned sticky directory like /tmp: make it private (chmod 700 {p}) or, \
                 if it must be shared, root-owned and sticky (chown root {p}; chmod +t {p})",
                p = path.display()
            ),
        }
    }
}

impl std::error::Error for BaseRefusal {}

/// Opens the base without following a symlink in its last component, and refuses it if
/// others may write it (unless root-owned and sticky).
fn open_base(base: &Path) -> io::Result<OwnedFd> {
    let refuse = |kind, why| io::Error::new(kind, why);
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = match rustix::fs::openat(CWD, base, flags | OFlags::NOATIME, Mode::empty()) {
        Err(Errno::PERM) => rustix::fs::openat(CWD, base, flags, Mode::empty()),
        r => r,
    };
    let fd = match fd {
        Ok(fd) => fd,
        Err(e @ (Errno::LOOP | Errno::NOTDIR)) => {
            let link = rustix::fs::statat(CWD, base, AtFlags::SYMLINK_NOFOLLOW)
                .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Symlink);
            return Err(if link {
                // The kind `ELOOP` has ("filesystem loop"), which is not nameable on stable.
                refuse(io::Error::from(Errno::LOOP).kind(), BaseRefusal::Symlink)
            } else {
                e.into()
            });
        }
        Err(e) => return Err(e.into()),
    };
    let st = rustix::fs::fstat(&fd)?;
    let mode = st.st_mode & 0o7777;
    let sticky_root = mode & 0o1000 != 0 && st.st_uid == 0;
    if mode & 0o022 != 0 && !sticky_root {
        return Err(refuse(
            io::ErrorKind::PermissionDenied,
            BaseRefusal::WritableByOthers {
                mode,
                uid: st.st_uid,
                path: base.to_path_buf(),
            },
        ));
    }
    Ok(fd)
}

/// Removes custodian's own abandoned leftovers in `base` older than `age`: the default
/// mode of [`AgeSweep`] (`AgeSweep::new(base, age).dry_run(dry_run).run()`).
///
/// Until this release it removed every old entry of `base` with everything below it,
/// judged by the top entry alone; that removed live data inside old directories.
/// [`AgeSweep::all`] is the safe form of that sweep.
///
/// # Errors
///
/// As [`AgeSweep::run`].
///
/// ```
/// # #![allow(deprecated)]
/// use std::time::Duration;
/// let base = std::env::temp_dir().join(format!("age-doc-{}", std::process::id()));
/// std::fs::create_dir(&base).unwrap();
/// std::fs::write(base.join("fresh"), b"x").unwrap();
/// let report = tokio_custodian::clean_older_than(&base, Duration::from_secs(3600), false)?;
/// assert!(report.removed.is_empty());
/// assert_eq!(report.kept[0].reason, tokio_custodian::AgeKeptReason::NotOurs);
/// # std::fs::remove_dir_all(&base).unwrap();
/// # Ok::<(), tokio_custodian::Error>(())
/// ```
#[deprecated(note = "use `AgeSweep::new(base, age).dry_run(dry_run).run()`")]
pub fn clean_older_than(base: impl AsRef<Path>, age: Duration, dry_run: bool) -> Result<AgeReport> {
    AgeSweep::new(base.as_ref(), age).dry_run(dry_run).run()
}
