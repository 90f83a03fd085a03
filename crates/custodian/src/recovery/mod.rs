//! Crash recovery (layer 7, beside `emergency`): the sweep of a state directory's
//! journals, run by `start()` when a state dir is set, by [`Supervisor::sweep`], and by
//! [`sweep`] without any supervisor (`custodian sweep`).
//!
//! For each journal, in this order, acting only on what is proven:
//! 1. open it without following a symlink, check it is a regular file of this user with
//!    mode 0600 at most, and take its `flock` without waiting (a live owner holds it for
//!    life; a concurrent sweep holds it while it works): locked means *skip*;
//! 2. parse its records up to the first that does not check out (reported, ignored with
//!    everything after it); no valid owner record first means *skip*;
//! 3. the owner is dead only if its boot id differs, no process has its pid, its pid
//!    has another start time, or it is a zombie. Otherwise *skip*, whatever else;
//! 4. same boot: stop its children's groups (`sys/orphans.rs`: SIGTERM, grace, SIGKILL
//!    to proven members only). Another boot: its processes died with that boot;
//! 5. remove its temp root if the recorded path still names the recorded directory
//!    (`root.rs` in this folder: every check before the removal);
//! 6. drop the journal, unless a step failed (it is kept for the next sweep).
//!
//! [`Supervisor::sweep`]: crate::Supervisor::sweep

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, Operation, Result};
use crate::journal::{
    DeadOwner, DeathProof, MARKER_VAR, Record, SkipReason, Skipped, StoppedGroup, SweepReport,
    marker_of,
};
use crate::sys::FileId;
use crate::sys::journal::{self as sys, Opened};
use crate::sys::orphans::{self, Fate, Marker, Recorded};

mod age;
mod recover;
mod root;

#[allow(deprecated)]
pub use age::clean_older_than;
pub use age::{AgeKept, AgeKeptReason, AgeReport, AgeSweep, BaseRefusal};
pub use recover::{Recovery, RecoveryReport, recover};

/// Sweeps `state_dir` with the default grace ([`DEFAULT_CHILD_GRACE`](crate::DEFAULT_CHILD_GRACE))
/// between SIGTERM and SIGKILL. See [`sweep_with_grace`].
///
/// # Errors
///
/// As [`sweep_with_grace`].
///
/// ```
/// let dir = std::env::temp_dir().join(format!("sweep-doc-{}", std::process::id()));
/// std::fs::create_dir(&dir).unwrap();
/// std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
/// let report = tokio_custodian::sweep(&dir)?;
/// assert_eq!(report.found, 0);
/// println!("{report}");
/// # std::fs::remove_dir(&dir).unwrap();
/// # Ok::<(), tokio_custodian::Error>(())
/// ```
pub fn sweep(state_dir: impl AsRef<Path>) -> Result<SweepReport> {
    sweep_with_grace(state_dir, crate::DEFAULT_CHILD_GRACE)
}

/// Reaps what dead owners left in `state_dir`: for each journal whose owner is proven
/// dead, stops its children's process groups (SIGTERM, up to `grace`, SIGKILL), removes
/// its temp root and drops the journal. Needs no supervisor and no runtime. Blocking:
/// it may wait up to `grace` (plus a second per SIGKILL round) for processes to exit.
///
/// Never acts on a live owner, a locked or corrupt journal, a reused pid, or a path that
/// is not the directory that was recorded; each is listed in [`SweepReport::skipped`].
///
/// # Errors
///
/// [`Error::Io`] with [`Operation::Sweep`] naming `state_dir` if it cannot be opened
/// (missing, a symlink, not a directory, another user's or accessible to others) or
/// listed, or `/proc` cannot be read. Problems with one journal are reported, not errors.
///
/// ```
/// let err = tokio_custodian::sweep_with_grace("/no/such/state-dir", std::time::Duration::ZERO).unwrap_err();
/// assert_eq!(err.operation(), tokio_custodian::Operation::Sweep);
/// assert_eq!(err.io_kind(), Some(std::io::ErrorKind::NotFound));
/// ```
pub fn sweep_with_grace(state_dir: impl AsRef<Path>, grace: Duration) -> Result<SweepReport> {
    let path = state_dir.as_ref();
    let fail = |e: io::Error| Error::io(Operation::Sweep, path, e);
    let started = Instant::now();
    let dir = sys::open_state_dir(path, false).map_err(fail)?;
    let names = sys::list(dir.as_fd()).map_err(fail)?;
    let boot = sys::boot_id().map_err(fail)?;
    let mut report = SweepReport {
        state_dir: path.to_path_buf(),
        found: names.len(),
        ..Default::default()
    };
    let mut dead = Vec::new();
    for name in names {
        if let Some(d) = examine(dir.as_fd(), path, &name, &boot, &mut report) {
            dead.push(d);
        }
    }
    // Every dead owner's groups at once: one grace period, one `/proc` scan per round.
    let groups: Vec<Recorded> = dead
        .iter()
        .flat_map(|d| d.children.iter().copied())
        .collect();
    let markers: Vec<Marker> = dead.iter().filter_map(|d| d.marker.clone()).collect();
    // Nothing to look for (no dead owner of this boot): no `/proc` scan.
    let fates = if groups.is_empty() && markers.is_empty() {
        Vec::new()
    } else {
        orphans::stop(&groups, &markers, grace).map_err(fail)?
    };
    let (group_fates, marker_fates) = fates.split_at(groups.len());
    let mut fates = group_fates.iter().copied();
    for fate in marker_fates {
        if let Fate::Stopped {
            processes,
            kill_needed,
        } = *fate
        {
            report.stopped.push(StoppedGroup {
                pgid: None,
                processes,
                kill_needed,
            });
        }
    }
    for d in dead {
        let mut ok = true;
        for (c, fate) in d.children.iter().zip(fates.by_ref()) {
            match fate {
                Fate::Gone => {}
                Fate::Reused => skip(&mut report, format!("pid {}", c.pid), SkipReason::PidReused),
                Fate::Stopped {
                    processes,
                    kill_needed,
                } => {
                    report.stopped.push(StoppedGroup {
                        pgid: Some(c.pgid),
                        processes,
                        kill_needed,
                    });
                }
            }
        }
        if let Some((root_path, id)) = &d.root {
            match root::remove(root_path, *id) {
                Ok(true) => report.removed.push(root_path.clone()),
                Ok(false) => {}
                // Kept for the next sweep (and a person) to look at.
                Err(reason) => {
                    ok = false;
                    skip(&mut report, root_path.display().to_string(), reason);
                }
            }
        }
        if ok {
            drop_journal(dir.as_fd(), path, &d, &mut report);
        }
    }
    report.took = started.elapsed();
    Ok(report)
}

/// A journal whose owner is proven dead, still locked by this sweep.
struct Dead {
    name: std::ffi::OsString,
    fd: std::os::fd::OwnedFd,
    /// The root's path, and its identity once it was created.
    root: Option<(PathBuf, Option<FileId>)>,
    children: Vec<Recorded>,
    /// Its children's environment marker (`None` after a reboot).
    marker: Option<Marker>,
}

fn skip(report: &mut SweepReport, what: String, reason: SkipReason) {
    tracing::info!(what = %what, reason = %reason, "crash sweep: skipped");
    report.skipped.push(Skipped { what, reason });
}

/// [`skip`], for the early returns of [`examine`].
fn skipped<T>(report: &mut SweepReport, what: String, reason: SkipReason) -> Option<T> {
    skip(report, what, reason);
    None
}

/// Steps 1 to 3: the journal, if its owner is proven dead.
fn examine(
    dir: BorrowedFd<'_>,
    dir_path: &Path,
    name: &OsStr,
    boot: &str,
    report: &mut SweepReport,
) -> Option<Dead> {
    let path = dir_path.join(name);
    let shown = path.display().to_string();
    let (fd, bytes) = match sys::open_for_sweep(dir, name) {
        Ok(Opened::Ready { fd, bytes }) => (fd, bytes),
        Ok(Opened::Locked) => return skipped(report, shown, SkipReason::Locked),
        // Dropped by its owner or another sweep since the listing.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::PermissionDenied | io::ErrorKind::InvalidInput
            ) || e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) =>
        {
            return skipped(
                report,
                shown,
                SkipReason::NotOurs {
                    detail: e.to_string(),
                },
            );
        }
        Err(e) => {
            return skipped(
                report,
                shown,
                SkipReason::Failed {
                    detail: e.to_string(),
                },
            );
        }
    };
    let (frames, bad) = sys::frames(&bytes);
    let mut records = Vec::new();
    let mut corrupt = bad.map(|b| (b.offset, b.why.to_owned()));
    for (offset, payload) in frames {
        match Record::decode(payload) {
            Some(r) => records.push(r),
            None => {
                corrupt = Some((offset, "unknown record".to_owned()));
                break;
            }
        }
    }
    if let Some((offset, detail)) = corrupt {
        skip(
            report,
            shown.clone(),
            SkipReason::Corrupt { offset, detail },
        );
    }
    let mut records = records.into_iter();
    let Some(Record::Owner {
        pid,
        start,
        boot_id,
    }) = records.next()
    else {
        if torn_at_birth(name, bytes.len()) {
            unlink_locked(dir, dir_path, name, &fd, report);
            return None;
        }
        return skipped(report, shown, SkipReason::NoOwner);
    };
    let proof = if boot_id != boot {
        DeathProof::OtherBoot
    } else {
        match sys::proc_stat(pid) {
            Ok(None) => DeathProof::PidGone,
            Ok(Some(st)) if st.start != start => DeathProof::StartTimeDiffers,
            Ok(Some(st)) if st.state == b'Z' => DeathProof::Exited,
            Ok(Some(_)) => return skipped(report, shown, SkipReason::OwnerAlive),
            Err(e) => {
                return skipped(
                    report,
                    shown,
                    SkipReason::Failed {
                        detail: e.to_string(),
                    },
                );
            }
        }
    };
    let mut root = None;
    let mut live = BTreeMap::new();
    for r in records {
        match r {
            Record::Root { path, id } => root = Some((path, Some(id))),
            Record::RootIntent { path } => root = Some((path, None)),
            Record::Child { pid, start, pgid } => drop(live.insert((pid, start), pgid)),
            Record::Gone { pid, start } => drop(live.remove(&(pid, start))),
            // A second owner record: not a journal this version writes.
            Record::Owner { .. } => {
                return skipped(
                    report,
                    shown,
                    SkipReason::Corrupt {
                        offset: 0,
                        detail: "two owner records".into(),
                    },
                );
            }
        }
    }
    let mut children: Vec<Recorded> = live
        .into_iter()
        .map(|((pid, start), pgid)| Recorded { pid, start, pgid })
        .collect();
    let mut needle = format!("\0{MARKER_VAR}=").into_bytes();
    needle.extend(marker_of(name));
    needle.push(0);
    let mut marker = Some(Marker {
        needle,
        owner_start: start,
    });
    if proof == DeathProof::OtherBoot {
        marker = None;
        for c in children.drain(..) {
            skip(report, format!("pid {}", c.pid), SkipReason::OtherBoot);
        }
    }
    tracing::info!(journal = %shown, pid, ?proof, "crash sweep: owner is dead");
    report.dead_owners.push(DeadOwner {
        journal: path,
        pid,
        start_time: start,
        boot_id,
        proof,
    });
    Some(Dead {
        name: name.to_os_string(),
        fd,
        root,
        children,
        marker,
    })
}

/// Step 6: unlinks the journal if its name still refers to the file this sweep locked.
fn drop_journal(dir: BorrowedFd<'_>, dir_path: &Path, d: &Dead, report: &mut SweepReport) {
    unlink_locked(dir, dir_path, &d.name, &d.fd, report);
}

/// Unlinks `name` if it still refers to `fd` (the file this sweep locked).
fn unlink_locked(
    dir: BorrowedFd<'_>,
    dir_path: &Path,
    name: &OsStr,
    fd: &std::os::fd::OwnedFd,
    report: &mut SweepReport,
) {
    let same = match (
        FileId::of_fd(fd),
        rustix::fs::statat(dir, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW),
    ) {
        (Ok(a), Ok(st)) => a == FileId::of_stat(&st),
        _ => false,
    };
    if same && rustix::fs::unlinkat(dir, name, rustix::fs::AtFlags::empty()).is_ok() {
        report.dropped.push(dir_path.join(name));
    }
}

/// Whether a journal without an owner record was torn at birth: shorter than one owner
/// record, and its name's owner (`<pid>-<start>-...`) is not running. It recorded
/// nothing (the owner record is the first write), so dropping it loses nothing.
fn torn_at_birth(name: &OsStr, len: usize) -> bool {
    // An owner frame: 8 bytes of header, 13 + a 36-byte boot id, 8 of checksum.
    if len >= 8 + 13 + 36 + 8 {
        return false;
    }
    let stem = String::from_utf8_lossy(marker_of(name)).into_owned();
    let mut parts = stem.split('-');
    let (Some(Ok(pid)), Some(Ok(start))) = (
        parts.next().map(str::parse::<u32>),
        parts.next().map(str::parse::<u64>),
    ) else {
        return false;
    };
    match sys::proc_stat(pid) {
        Ok(None) => true,
        Ok(Some(st)) => st.start != start || st.state == b'Z',
        Err(_) => false,
    }
}

/// Where a service can keep its journals by default: `$XDG_RUNTIME_DIR/custodian` (a
/// per-user tmpfs, emptied at logout and reboot) when set, else `/run/custodian` for
/// root, else `None` (pass [`Builder::state_dir`](crate::Builder::state_dir) a path).
///
/// ```
/// if let Some(dir) = tokio_custodian::default_state_dir() {
///     assert!(dir.ends_with("custodian"));
/// }
/// ```
pub fn default_state_dir() -> Option<PathBuf> {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if Path::new(&d).is_absolute() => Some(Path::new(&d).join("custodian")),
        _ if rustix::process::geteuid().is_root() => Some(PathBuf::from("/run/custodian")),
        _ => None,
    }
}
