//! What an age sweep removed and kept, and why, for people (`Display`) and machines
//! (serde, durations in milliseconds with the unit in the key).

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::leak::duration_ms;

/// What an [`AgeSweep`](crate::AgeSweep) removed (or, in a dry run, would remove) and
/// kept. `Display` writes it for a person, one line per entry.
///
/// ```
/// use std::time::Duration;
/// let base = std::env::temp_dir().join(format!("age-report-doc-{}", std::process::id()));
/// std::fs::create_dir(&base).unwrap();
/// std::fs::write(base.join("notes"), b"x").unwrap();
/// let report = tokio_custodian::AgeSweep::new(&base, Duration::from_secs(3600)).run()?;
/// assert!(report.removed.is_empty() && report.is_clean());
/// println!("{report}");
/// # std::fs::remove_dir_all(&base).unwrap();
/// # Ok::<(), tokio_custodian::Error>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AgeReport {
    /// The base directory.
    #[serde(serialize_with = "lossy")]
    pub base: PathBuf,
    /// Whether nothing was removed (the report says what would have been).
    pub dry_run: bool,
    /// Whether other programs' entries were swept too ([`AgeSweep::all`](crate::AgeSweep::all)).
    pub all: bool,
    /// Entries removed (or to remove, in a dry run), children before their directory.
    #[serde(serialize_with = "lossy_all")]
    pub removed: Vec<PathBuf>,
    /// Entries kept, and why.
    pub kept: Vec<AgeKept>,
    /// How many entries were looked at.
    pub scanned: u64,
    /// How long it took.
    #[serde(rename = "took_ms", with = "duration_ms")]
    pub took: Duration,
}

impl AgeReport {
    /// Whether nothing failed: every entry kept was kept on purpose.
    ///
    /// ```
    /// assert!(tokio_custodian::AgeReport::default().is_clean());
    /// ```
    pub fn is_clean(&self) -> bool {
        !self
            .kept
            .iter()
            .any(|k| matches!(k.reason, AgeKeptReason::Failed { .. }))
    }
}

/// An entry an [`AgeSweep`](crate::AgeSweep) kept.
///
/// ```
/// # use tokio_custodian::{AgeKept, AgeKeptReason};
/// # fn show(k: &AgeKept) {
/// println!("kept {}: {}", k.path.display(), k.reason);
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AgeKept {
    /// The entry.
    #[serde(serialize_with = "lossy")]
    pub path: PathBuf,
    /// Why it was kept.
    pub reason: AgeKeptReason,
}

/// Why an [`AgeSweep`](crate::AgeSweep) kept an entry. `Display` says it in words.
///
/// ```
/// use tokio_custodian::AgeKeptReason;
/// assert_eq!(AgeKeptReason::Young.to_string(), "young");
/// assert_eq!(AgeKeptReason::ListeningSocket.to_string(), "listening socket");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum AgeKeptReason {
    /// One of its times (access, modification, change) is newer than the age.
    Young,
    /// Someone holds a lock on it (`flock`, POSIX or OFD), or waits for one.
    Locked,
    /// On another mount than the directory it is in.
    MountPoint,
    /// Not a file, directory, symlink, socket, fifo or device.
    Special,
    /// A unix socket a process is listening on.
    ListeningSocket,
    /// A file another process holds open (`/proc/PID/fd`), locked or not; a directory
    /// also when it is a process's working or root directory.
    Open,
    /// A unix socket (never unlinked: it may belong to a live program).
    Socket,
    /// A named pipe (never unlinked).
    Fifo,
    /// A device node (never unlinked).
    Device,
    /// A symlink ([`AgeSweep::symlinks`](crate::AgeSweep::symlinks) removes old ones).
    Symlink,
    /// Another user's ([`AgeSweep::other_users`](crate::AgeSweep::other_users) opts in).
    OtherUser {
        /// Its owner.
        uid: u32,
    },
    /// Its name matches an exclusion (a default one, or [`AgeSweep::exclude`](crate::AgeSweep::exclude)).
    Excluded {
        /// The pattern.
        pattern: String,
    },
    /// A directory holding entries that were kept.
    NotEmpty,
    /// Not proven custodian's own: the default mode removes nothing else
    /// ([`AgeSweep::all`](crate::AgeSweep::all) opts in).
    NotOurs,
    /// Named like a custodian temp root but not one: not a directory, or its mode is
    /// not 0700.
    NotARoot,
    /// Deeper than the walk goes (it holds one directory fd per level).
    TooDeep,
    /// Its removal failed (or was refused: replaced meanwhile, a mount inside).
    Failed {
        /// The error.
        detail: String,
    },
}

impl fmt::Display for AgeKeptReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AgeKeptReason::Young => f.write_str("young"),
            AgeKeptReason::Locked => f.write_str("locked"),
            AgeKeptReason::MountPoint => f.write_str("on another mount"),
            AgeKeptReason::Special => f.write_str("special file"),
            AgeKeptReason::ListeningSocket => f.write_str("listening socket"),
            AgeKeptReason::Open => f.write_str("in use by a process"),
            AgeKeptReason::Socket => f.write_str("socket"),
            AgeKeptReason::Fifo => f.write_str("fifo"),
            AgeKeptReason::Device => f.write_str("device"),
            AgeKeptReason::Symlink => f.write_str("symlink; --symlinks includes it"),
            AgeKeptReason::OtherUser { uid } => write!(f, "another user's (uid {uid})"),
            AgeKeptReason::Excluded { pattern } => write!(f, "excluded by {pattern}"),
            AgeKeptReason::NotEmpty => f.write_str("holds kept entries"),
            AgeKeptReason::NotOurs => f.write_str("not custodian's; --all includes it"),
            AgeKeptReason::NotARoot => f.write_str("named like a temp root but not one"),
            AgeKeptReason::TooDeep => f.write_str("too deep"),
            AgeKeptReason::Failed { detail } => write!(f, "failed: {detail}"),
        }
    }
}

impl fmt::Display for AgeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = if self.dry_run {
            "would remove"
        } else {
            "removed"
        };
        let mode = if self.all {
            "all entries"
        } else {
            "custodian's own"
        };
        writeln!(
            f,
            "age sweep of {} ({mode}): {verb} {}, kept {}, looked at {} ({} ms)",
            Shown(&self.base),
            self.removed.len(),
            self.kept.len(),
            self.scanned,
            self.took.as_millis()
        )?;
        for p in &self.removed {
            writeln!(f, "  {verb}: {}", Shown(p))?;
        }
        for k in &self.kept {
            writeln!(f, "  kept: {} ({})", Shown(&k.path), k.reason)?;
        }
        Ok(())
    }
}

/// A path for a person: control characters escaped, so that a name cannot write lines
/// (or terminal codes) of its own into the report.
struct Shown<'a>(&'a Path);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.to_string_lossy().chars() {
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                fmt::Write::write_char(f, c)?;
            }
        }
        Ok(())
    }
}

/// A path as a string, bytes that are not UTF-8 replaced: any user can make such a name
/// in a shared base, and `PathBuf`'s own `Serialize` fails on it (the whole report lost).
fn lossy<S: serde::Serializer>(path: &Path, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&path.to_string_lossy())
}

/// [`lossy`] for each path.
fn lossy_all<S: serde::Serializer>(paths: &[PathBuf], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(paths.iter().map(|p| p.to_string_lossy()))
}
