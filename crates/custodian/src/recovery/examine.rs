//! Steps 1 to 3 of a journal sweep: open and lock a journal, parse it, check every
//! record against the journal it is in, and prove its owner dead.
//!
//! Checked before anything is acted on (each refusal is reported, and nothing of that
//! journal is done):
//! - the file name's `<pid>-<start>-` is the owner record's (a journal named like a live
//!   owner's, so that its marker would match that owner's children, is refused);
//! - the owner's pid namespace, when recorded, is the sweeper's (a pid means nothing in
//!   another one);
//! - every child record leads its own process group (`pgid == pid`: custodian spawns
//!   every child with `process_group(0)`); a record naming another group is forged.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::journal::{DeadOwner, DeathProof, Record, SkipReason, SweepReport, marker_of};
use crate::sys::FileId;
use crate::sys::journal::{self as sys, Opened};
use crate::sys::orphans::{Marker, Recorded};
use crate::sys::procfs;

use super::{skip, skipped, unlink_locked};

/// A journal whose owner is proven dead, still locked by this sweep.
pub(super) struct Dead {
    pub(super) name: OsString,
    pub(super) path: PathBuf,
    pub(super) fd: OwnedFd,
    /// The root's path, and its identity once it was created.
    pub(super) root: Option<(PathBuf, Option<FileId>)>,
    /// The supervisor's cgroup (the cgroup tier): its path and identity. Kept after a
    /// sweep (unlike `children`): a kill by path and inode cannot hit a reused pid, so a
    /// sweep that could not finish it (run from inside it) leaves it to the next.
    pub(super) cgroup: Option<(PathBuf, FileId)>,
    /// The supervisor's cgroup that was about to be created and never recorded as
    /// created (the owner died between its intent record and its cgroup record).
    pub(super) cgroup_intent: Option<PathBuf>,
    /// Children to stop (none once a sweep has dealt with them).
    pub(super) children: Vec<Recorded>,
    /// Its children's environment marker (`None` after a reboot or an earlier sweep).
    pub(super) marker: Option<Marker>,
    /// Members an earlier sweep could not stop: re-checked, never signalled.
    pub(super) survivors: Vec<(u32, u64)>,
    /// Whether the parse stopped at damage: acted on up to it, then kept aside.
    pub(super) corrupt: bool,
}

/// The journal `name`, if its owner is proven dead and its records check out.
pub(super) fn examine(
    dir: BorrowedFd<'_>,
    dir_path: &Path,
    name: &OsStr,
    (boot, pidns): (&str, Option<FileId>),
    report: &mut SweepReport,
) -> Option<Dead> {
    let path = dir_path.join(name);
    let shown = path.display().to_string();
    let (fd, bytes) = match open_waiting_for_exec(dir, name) {
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
            let detail = e.to_string();
            return skipped(report, shown, SkipReason::NotOurs { detail });
        }
        Err(e) => {
            let detail = e.to_string();
            return skipped(report, shown, SkipReason::Failed { detail });
        }
    };
    let (frames, bad) = sys::frames(&bytes);
    let mut records = Vec::new();
    let mut corrupt = bad.map(|b| (b.offset, b.why.to_owned()));
    for (offset, payload) in frames {
        match Record::decode(payload) {
            Some(r) => records.push((offset, r)),
            // A whole frame (its checksum holds) of a tag this version never wrote: a
            // newer version's journal, left whole to that version (never set aside).
            None if payload.first().is_some_and(|&t| !Record::is_known_tag(t)) => {
                let tag = payload[0];
                return skipped(report, shown, SkipReason::NewerVersion { offset, tag });
            }
            None => {
                corrupt = Some((offset, "unknown record".to_owned()));
                break;
            }
        }
    }
    let damaged = corrupt.is_some();
    if let Some((offset, detail)) = corrupt {
        skip(
            report,
            shown.clone(),
            SkipReason::Corrupt { offset, detail },
        );
    }
    let mut records = records.into_iter();
    let Some((
        _,
        Record::Owner {
            pid,
            start,
            boot_id,
            pidns: owner_ns,
        },
    )) = records.next()
    else {
        if torn_at_birth(name, bytes.len()) {
            unlink_locked(dir, dir_path, name, &fd, report);
            return None;
        }
        return skipped(report, shown, SkipReason::NoOwner);
    };
    let mismatch = |detail: String| SkipReason::Mismatch { detail };
    // The marker is the name: it must be the owner's (another boot's marker is unused).
    if boot_id == boot && name_owner(name) != Some((pid, start)) {
        let detail = format!(
            "the file name does not name its owner record's pid {pid} and start time {start}"
        );
        return skipped(report, shown, mismatch(detail));
    }
    // Unknown on either side (a kernel without pid namespaces): nothing to compare.
    if owner_ns.zip(pidns).is_some_and(|(a, b)| a != b) && boot_id == boot {
        return skipped(report, shown, SkipReason::OtherPidNamespace);
    }
    let proof = if boot_id != boot {
        DeathProof::OtherBoot
    } else {
        match procfs::proc_stat(pid) {
            Ok(None) => DeathProof::PidGone,
            Ok(Some(st)) if st.start != start => DeathProof::StartTimeDiffers,
            // Not the state letter alone: an owner whose main thread exited while others
            // run shows `Z` (tests/review_final4_main_thread_exited.rs).
            Ok(Some(st)) if st.zombie => DeathProof::Exited,
            Ok(Some(_)) => return skipped(report, shown, SkipReason::OwnerAlive),
            Err(e) => {
                let detail = e.to_string();
                return skipped(report, shown, SkipReason::Failed { detail });
            }
        }
    };
    let (mut root, mut cgroup, mut cgroup_intent) = (None, None, None);
    let mut live = BTreeMap::new();
    let (mut swept, mut survivors) = (false, Vec::new());
    for (offset, r) in records {
        match r {
            Record::Root { path, id } => root = Some((path, Some(id))),
            Record::RootIntent { path } => root = Some((path, None)),
            Record::Cgroup { path, id } => cgroup = Some((path, id)),
            Record::CgroupIntent { path } => cgroup_intent = Some(path),
            Record::Child { pid, pgid, .. } if pgid != pid => {
                let detail = format!(
                    "the child record at byte {offset} names group {pgid}, not its own ({pid})"
                );
                return skipped(report, shown, mismatch(detail));
            }
            Record::Child {
                pid,
                start,
                grace_ms,
                pidfd_ino,
                ..
            } => drop(live.insert((pid, start), (grace_ms, pidfd_ino))),
            Record::Gone { pid, start } => drop(live.remove(&(pid, start))),
            Record::Swept { .. } => swept = true,
            Record::Survivor { pid, start } => survivors.push((pid, start)),
            // A second owner record: not a journal this version writes.
            Record::Owner { .. } => {
                let detail = format!("a second owner record at byte {offset}");
                return skipped(report, shown, mismatch(detail));
            }
        }
    }
    let mut children: Vec<Recorded> = live
        .into_iter()
        .map(|((pid, start), (grace_ms, pidfd_ino))| Recorded {
            pid,
            start,
            pgid: pid,
            grace: grace_ms.map(Duration::from_millis),
            pidfd_ino,
        })
        .collect();
    // The name was checked against the owner record above: its stem is that owner's.
    let mut marker = Some(Marker {
        stem: marker_of(name).to_vec(),
        owner_start: start,
    });
    // Made, and recorded: the record's proof (its inode) applies instead.
    if cgroup.as_ref().map(|(p, _)| p) == cgroup_intent.as_ref() {
        cgroup_intent = None;
    }
    if proof == DeathProof::OtherBoot {
        // Cgroups do not outlive a boot.
        cgroup = None;
        cgroup_intent = None;
        marker = None;
        survivors.clear();
        for c in children.drain(..) {
            skip(report, format!("pid {}", c.pid), SkipReason::OtherBoot);
        }
    }
    if swept {
        // Dealt with once, made durable: never signal anything of it again.
        marker = None;
        children.clear();
    }
    note!(info, journal = %shown, pid, %proof, swept, "crash sweep: owner is dead");
    report.dead_owners.push(DeadOwner {
        journal: path.clone(),
        pid,
        start_time: start,
        boot_id,
        proof,
    });
    Some(Dead {
        name: name.to_os_string(),
        path,
        fd,
        root,
        cgroup,
        cgroup_intent,
        children,
        marker,
        survivors,
        corrupt: damaged,
    })
}

/// How long a sweep waits for the lock of a journal whose owner is dead: a child the
/// owner forked holds a copy of the journal's fd (and so its `flock`) until its `exec`,
/// which a crash in the middle of a spawn can leave pending for a few milliseconds.
const INHERITED_LOCK_WAIT: Duration = Duration::from_millis(500);

/// [`sys::open_for_sweep`], waiting up to [`INHERITED_LOCK_WAIT`] when the journal is
/// locked but the owner its name names is not running (a live owner holds its lock for
/// life: that case returns at once).
fn open_waiting_for_exec(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<Opened> {
    let until = std::time::Instant::now() + INHERITED_LOCK_WAIT;
    loop {
        let opened = sys::open_for_sweep(dir, name)?;
        if !matches!(opened, Opened::Locked)
            || std::time::Instant::now() >= until
            || !named_owner_dead(name)
        {
            return Ok(opened);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The owner named by a journal's file name (`<pid>-<start>-<random>.journal`).
pub(super) fn name_owner(name: &OsStr) -> Option<(u32, u64)> {
    let stem = std::str::from_utf8(marker_of(name)).ok()?;
    let mut parts = stem.split('-');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// Whether a journal without an owner record was torn at birth: shorter than one owner
/// record, and its name's owner (`<pid>-<start>-...`) is not running. It recorded
/// nothing (the owner record is the first write), so dropping it loses nothing.
fn torn_at_birth(name: &OsStr, len: usize) -> bool {
    // The longest owner frame: 8 bytes of header, 29 + a 36-byte boot id, 8 of checksum.
    len < 8 + 29 + 36 + 8 && named_owner_dead(name)
}

/// Whether the owner a journal's name names (`<pid>-<start>-...`) is proven not running.
fn named_owner_dead(name: &OsStr) -> bool {
    name_owner(name).is_some_and(|(pid, start)| match procfs::proc_stat(pid) {
        Ok(None) => true,
        Ok(Some(st)) => st.start != start || st.zombie,
        Err(_) => false,
    })
}
