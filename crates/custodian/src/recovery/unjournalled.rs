//! The watcher's sweep when its owner's journal file was removed under the live owner
//! (an operator's `rm`, an age sweep of a state dir, a file system unmounted under the
//! service): what the owner told the watcher over its link still proves its children.
//!
//! What is stopped, and why each is a proof:
//! - each child whose death signal the watcher served, by the identity the owner sent
//!   at its spawn (pid, start time, pidfd inode), so a reused pid fails it; with no
//!   grace, as the kernel's death signal would have; one the owner reaped is not in the
//!   list (it said `GONE`), and one whose pid now has another pidfd inode is left out
//!   before its descendants are looked for (the escapee walk proves a parent by its pid
//!   and start time only: a pid reused within the child's start tick would pass);
//! - their descendants that left the group, by parent links (`tree.rs`), read right
//!   after the death while those links still hold;
//! - every running process carrying the owner's environment marker, whose stem is the
//!   journal's name, which the owner gave the watcher itself at the fork (not read from
//!   a file anyone could write), with the watcher's grace.
//!
//! What is left, and said in the report: the temp root and cgroups, which only the
//! journal recorded (the next start's abandoned-root reap proves a root by its lock and
//! name shape; an empty cgroup costs nothing but a name).

use std::path::Path;
use std::time::{Duration, Instant};

use crate::error::{Error, Operation, Result};
use crate::journal::{SkipReason, SweepReport, marker_of};
use crate::sys::orphans::{self, Marker, Recorded, Wanted};
use crate::sys::procfs;
use crate::sys::watch::Served;

use super::{examine, report_outcome, skip, survivor, tree};

/// Stops what the dead owner of `journal` (a path that no longer exists) told its
/// watcher it served, their escapees, and its marked processes. Blocking, bounded as
/// [`sweep_one`](super::sweep_one) without the journal's lock wait.
pub(crate) fn sweep_without_journal(
    journal: &Path,
    served: &[Served],
    grace: Duration,
) -> Result<SweepReport> {
    let fail = |e: std::io::Error| Error::io(Operation::Sweep, journal, e);
    let started = Instant::now();
    let mut report = SweepReport {
        state_dir: journal.parent().unwrap_or(journal).to_path_buf(),
        ..Default::default()
    };
    let name = journal.file_name().unwrap_or_default();
    let children: Vec<Recorded> = served
        .iter()
        .filter(|c| same_inode(c))
        .map(|c| Recorded {
            pid: c.pid,
            start: c.start,
            pgid: c.pid,
            grace: Some(Duration::ZERO),
            pidfd_ino: c.pidfd_ino,
        })
        .collect();
    let mut groups = children.clone();
    groups.extend(tree::escapees(&children).map_err(fail)?);
    let markers: Vec<Marker> = examine::name_owner(name)
        .map(|(_, owner_start)| Marker {
            stem: marker_of(name).to_vec(),
            owner_start,
        })
        .into_iter()
        .collect();
    let spare = procfs::self_and_ancestors().map_err(fail)?;
    let wanted = Wanted {
        groups: &groups,
        markers: &markers,
        cgroups: &[],
    };
    let outcome = orphans::stop(wanted, grace, &spare).map_err(fail)?;
    report_outcome(&mut report, &outcome, &groups);
    for s in &outcome.survivors {
        survivor(&mut report, s, journal);
    }
    let shown = journal.display().to_string();
    skip(&mut report, shown, SkipReason::JournalRemoved);
    report.took = started.elapsed();
    Ok(report)
}

/// Unless the pid now names a process with another pidfd inode than the one the owner
/// sent (checked where both are known: an inode sent, `pidfs` here, a process there).
fn same_inode(c: &Served) -> bool {
    use std::os::fd::AsFd;
    let Some(ino) = c.pidfd_ino else {
        return true;
    };
    let fd = crate::sys::process::pidfd_open(c.pid).ok().flatten();
    let now = fd.and_then(|fd| crate::sys::process::pidfd_inode(fd.as_fd()));
    now.is_none_or(|now| now == ino)
}
