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
//!   `flock` tried before removal) or held open by another process (`/proc/*/fd`, and
//!   its working and root directories, read once the first entry is about to go), nor
//!   what contains it; only this user's entries
//!   unless [`AgeSweep::other_users`]; symlinks only with [`AgeSweep::symlinks`];
//!   never an excluded name ([`AgeSweep::DEFAULT_EXCLUDES`] and [`AgeSweep::exclude`]).
//!
//! In both: the base is opened without following a symlink in its last component, nor
//! through a directory or symlink of another user on its path, and
//! refused if others may write it (unless it is root-owned and sticky, like `/tmp`);
//! everything below is reached relative to directory fds, never following a symlink,
//! never crossing a mount (by mount id), inode-checked before removal, with an
//! iterative walk; a dry run takes no lock (liveness comes from `/proc/locks` alone);
//! `/proc/locks` and `/proc/net/unix` are read once per sweep.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use crate::error::{Error, Operation, Result};
use crate::sys::live::Live;

mod base;
mod dirs;
mod exclude;
mod report;
mod walk;

pub use base::BaseRefusal;
pub use report::{AgeKept, AgeKeptReason, AgeReport};

/// An age sweep of a base directory, for what no crash journal recorded: a plain value of
/// options (embeddable, `Clone`), built by value, then [`run`](Self::run) (as often as
/// wanted). "Old" means access, modification and change times all older than the age.
///
/// - **By default it removes only custodian's own** abandoned leftovers among the base's
///   entries, each proven: temp roots (named `<prefix><32 hex>`, a 0700 directory of this
///   user on the base's mount, nobody holding its lock; their insides are then judged
///   entry by entry as below) and atomic writers' temp files
///   ([`ATOMIC_TEMP_PREFIX`](crate::ATOMIC_TEMP_PREFIX)`<16 hex>`, unlocked). Everything
///   else is kept ([`AgeKeptReason::NotOurs`]).
/// - **[`all`](Self::all)** opts into a `systemd-tmpfiles --clean` style sweep: every entry
///   at every depth on its own; a directory only when empty after its walk and old before
///   it; never a socket, fifo or device; never a locked entry (`/proc/locks`, and an
///   `flock` tried before removal) or a file another process holds open (a directory
///   also as its working directory), nor what
///   contains it; only this user's entries unless
///   [`other_users`](Self::other_users); symlinks only with [`symlinks`](Self::symlinks);
///   never an excluded name ([`DEFAULT_EXCLUDES`](Self::DEFAULT_EXCLUDES),
///   [`exclude`](Self::exclude)).
///
/// # Security
///
/// The base is opened without following a symlink in its last component, nor through a
/// directory or symlink of another user on its path (who could point it elsewhere), and
/// refused if others may write it, unless it is root-owned and sticky like `/tmp`
/// ([`BaseRefusal`]);
/// with [`all`](Self::all) the root of the file system is refused.
/// Below it everything is reached relative to directory fds: no symlink is followed, no
/// mount crossed (by mount id), each name's inode is checked before its `unlink` or
/// `rmdir`. A [`dry_run`](Self::dry_run) takes no lock.
///
/// What it cannot see: a POSIX lock held by a process in another pid namespace
/// (`/proc/locks` hides it and it does not conflict with an `flock`), or one taken on a
/// still-old file after the sweep read `/proc/locks`.
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
    /// Only temp roots, not atomic temps: the start-up reap of abandoned roots.
    roots_only: bool,
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
            roots_only: false,
        }
    }

    /// Only temp roots named `<root_prefix><32 hex>` are candidates (what `start` reaps).
    pub(crate) fn roots_only(mut self) -> Self {
        self.roots_only = true;
        self
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
    /// against its path relative to the base (a trailing `/` and a leading `./` are
    /// dropped); one with a leading `/` also against its absolute path (the base as
    /// given, made absolute). Adds to [`DEFAULT_EXCLUDES`](Self::DEFAULT_EXCLUDES).
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
    /// effective uid's are removed, others are kept and not entered). Without `all` it
    /// changes nothing: the default mode removes only this user's.
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
    ///   ([`BaseRefusal::WritableByOthers`], kind `PermissionDenied`), or, with
    ///   [`all`](Self::all), it is the root of the file system
    ///   ([`BaseRefusal::FileSystemRoot`], kind `PermissionDenied`), with the remedy in
    ///   the message ([`BaseRefusal::of`] gets the reason);
    /// - an exclusion pattern is not a valid glob, or the [root
    ///   prefix](Self::root_prefix) is shorter than 4 bytes, holds a `/` or NUL, or is only
    ///   hex digits (kind `InvalidInput`);
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
        let absolute = std::path::absolute(&self.base).unwrap_or_else(|_| self.base.clone());
        let excludes = exclude::Excludes::new(
            AgeSweep::DEFAULT_EXCLUDES
                .iter()
                .copied()
                .chain(self.exclude.iter().map(String::as_str)),
            &absolute,
        )
        .map_err(fail)?;
        // Before anything is opened: an empty, short or all-hex prefix would make other
        // programs' directories named with 32 hex digits look like temp roots.
        check_root_prefix(&self.root_prefix).map_err(fail)?;
        let dir = base::open(&self.base).map_err(fail)?;
        base::refuse_root(&dir, self.all).map_err(fail)?;
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
            absolute,
            open: std::cell::OnceCell::new(),
        };
        walk::run(&rules, dir, &mut report).map_err(fail)?;
        report.took = started.elapsed();
        Ok(report)
    }
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

/// Shortest temp root prefix `start` and [`AgeSweep::run`] accept.
const MIN_PREFIX: usize = 4;

/// The prefix names the roots the start-up reaper may remove (`<prefix><32 hex digits>`):
/// a short or all-hex prefix would let it match directories that are not custodian's.
/// Checked by `start` and by every [`AgeSweep::run`] (the prefix is public there too).
pub(crate) fn check_root_prefix(prefix: &str) -> std::io::Result<()> {
    let bad = |why: &str| {
        Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("temp root prefix {prefix:?}: {why}"),
        ))
    };
    if prefix.len() < MIN_PREFIX {
        return bad("shorter than 4 bytes");
    }
    if prefix.contains(['/', '\0']) {
        return bad("contains a path separator or NUL");
    }
    if prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
        return bad("only hex digits, indistinguishable from the random part");
    }
    Ok(())
}
