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
//!    Every record is checked against its journal (`examine.rs`: the name against the
//!    owner record, the pid namespace, each child's group): a mismatch means *skip*;
//! 3. the owner is dead only if its boot id differs, no process has its pid, its pid
//!    has another start time, or it is a zombie. Otherwise *skip*, whatever else;
//! 4. same boot, and no earlier sweep dealt with it: stop its children's groups
//!    (`sys/orphans.rs`: SIGTERM, each child's grace, SIGKILL to proven members only,
//!    never the sweeper or its ancestors, a final look for survivors), the processes
//!    carrying its environment marker and, in the cgroup tier, the members of its cgroup
//!    proven by `recovery/cgroup.rs` (whatever their group or environment), all in one
//!    grace. Another boot: its processes died with that boot;
//! 5. make that durable before letting go: `Gone` for every child, `Survivor` for each
//!    member still running, then `Swept`, and `fdatasync`. A journal with `Swept` never
//!    signals again: a later sweep only looks at its survivors and retries its root. A
//!    failed append (a full file system) never keeps a journal by itself: one kept
//!    without `Swept` would act again at every sweep;
//! 6. remove its temp root if the recorded path still names the recorded directory
//!    (`root.rs` in this folder: every check before the removal);
//! 7. drop the journal, unless the root could not be removed or a survivor still runs
//!    (it is kept for the next sweep and a person); a damaged journal is renamed aside
//!    (`<name>.corrupt`), never swept again, never deleted.
//!
//! [`Supervisor::sweep`]: crate::Supervisor::sweep

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, Operation, Result};
use crate::journal::{
    Record, SkipReason, Skipped, SpareReason, Spared, StoppedGroup, Survivor, SurvivorReason,
    SweepReport,
};
use crate::sys::FileId;
use crate::sys::journal as sys;
use crate::sys::orphans::{self, Fate, LeftWhy, Outcome, Recorded, Wanted};
use crate::sys::procfs;

/// Set in the watcher's forked process only (`watcher.rs`), never in its owner: the
/// sweep's events are then not emitted at all. A `tracing` event whose callsite the
/// owner never hit registers it first, and with more than one dispatcher in the process
/// `tracing-core` registers under a read lock of its dispatcher list, which another
/// thread of the owner may have held for writing at the fork (making a `Dispatch`): the
/// watcher blocked there for ever, holding the journal's lock
/// (`tests/review_watcher_tracing.rs`). A no-op default dispatcher does not avoid that
/// registration; not reaching the macro does.
static SILENCED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Silences the sweep's events in this process (the watcher's; see [`SILENCED`]).
pub(crate) fn silence() {
    SILENCED.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Whether the sweep's events are silenced in this process.
pub(crate) fn silenced() -> bool {
    SILENCED.load(std::sync::atomic::Ordering::Relaxed)
}

/// `tracing::$level!(...)`, unless the sweep runs in the watcher (see [`SILENCED`]): the
/// only way the recovery code emits events.
macro_rules! note {
    ($level:ident, $($arg:tt)+) => {
        if !$crate::recovery::silenced() {
            tracing::$level!($($arg)+);
        }
    };
}

mod age;
mod cgroup;
mod examine;
mod recover;
mod root;
mod tree;
mod unjournalled;

use examine::Dead;

pub(crate) use age::check_root_prefix;
#[allow(deprecated)]
pub use age::clean_older_than;
pub use age::{AgeKept, AgeKeptReason, AgeReport, AgeSweep, BaseRefusal};
pub use recover::{Recovery, RecoveryReport, recover};
pub(crate) use unjournalled::sweep_without_journal;

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
#[deprecated(note = "use `tokio_custodian::recover(Recovery::new().state_dir(dir))`")]
pub fn sweep(state_dir: impl AsRef<Path>) -> Result<SweepReport> {
    sweep_journals(state_dir.as_ref(), crate::DEFAULT_CHILD_GRACE)
}

/// Reaps what dead owners left in `state_dir`: for each journal whose owner is proven
/// dead, stops its children's process groups (SIGTERM, up to each child's recorded grace
/// or else `grace`, SIGKILL), records that durably, removes its temp root and drops the
/// journal. Needs no supervisor and no runtime. Blocking, bounded by: 500 ms for each
/// journal locked while its owner is dead (a child holding it until its `exec`), plus
/// the longest grace (a child's recorded one, at most 30 s, else `grace`), plus one second after it
/// and one per SIGKILL round (at most 8), plus up to 5 s for each dead owner's cgroup
/// whose members are slow to die after its `cgroup.kill` (only a process stuck in the
/// kernel is), plus the temp roots' removals.
///
/// Never acts on a live owner, a locked or forged journal, records past a journal's
/// damage, a reused pid, the sweeping process or its ancestors, or a path that is not
/// the directory that was recorded; each is listed in [`SweepReport::skipped`] or
/// [`SweepReport::spared`]. A process it cannot stop is listed in
/// [`SweepReport::survivors`] (the report is then not clean), and its journal is kept
/// without ever signalling again.
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
#[deprecated(note = "use `tokio_custodian::recover(Recovery::new().state_dir(dir).grace(grace))`")]
pub fn sweep_with_grace(state_dir: impl AsRef<Path>, grace: Duration) -> Result<SweepReport> {
    sweep_journals(state_dir.as_ref(), grace)
}

/// The longest a dead owner's child is given between SIGTERM and SIGKILL, whatever its
/// record says: the owner that promised it a longer grace (or `Duration::MAX`, which a
/// live supervisor's shutdown deadline cuts) is dead, and nothing else would bound the
/// sweep's wait.
pub(crate) const MAX_RECORDED_GRACE: Duration = Duration::from_secs(30);

/// The journal sweep behind [`recover`], `start`, and the deprecated [`sweep`] and
/// [`sweep_with_grace`] (whose docs say what it does).
pub(crate) fn sweep_journals(path: &Path, grace: Duration) -> Result<SweepReport> {
    sweep_in(path, grace, None)
}

/// The watcher's sweep (`watcher.rs`): the one journal `name` of its owner, right
/// after the owner died, with the descendants that left their groups found by their
/// parent links while those still hold (`tree.rs`).
pub(crate) fn sweep_one(path: &Path, name: &OsStr, grace: Duration) -> Result<SweepReport> {
    sweep_in(path, grace, Some(name))
}

fn sweep_in(path: &Path, grace: Duration, only: Option<&OsStr>) -> Result<SweepReport> {
    let fail = |e: io::Error| Error::io(Operation::Sweep, path, e);
    let started = Instant::now();
    let dir = sys::open_state_dir(path, false).map_err(fail)?;
    let names = match only {
        Some(name) => vec![name.to_os_string()],
        None => sys::list(dir.as_fd()).map_err(fail)?,
    };
    let boot = procfs::boot_id().map_err(fail)?;
    let pidns = procfs::pid_ns();
    let mut report = SweepReport {
        state_dir: path.to_path_buf(),
        found: names.len(),
        ..Default::default()
    };
    let mut dead = Vec::new();
    for name in names {
        if let Some(d) = examine::examine(dir.as_fd(), path, &name, (&boot, pidns), &mut report) {
            dead.push(d);
        }
    }
    // Every dead owner's groups at once: one grace period, one `/proc` scan per round.
    // `owners[k]`: the dead owner of group (then marker) `k`.
    let mut owners = Vec::new();
    let mut groups = Vec::new();
    for (i, d) in dead.iter().enumerate() {
        // Capped before the escapees are found: each carries its child's grace.
        let children: Vec<Recorded> = (d.children.iter())
            .map(|c| Recorded {
                grace: c.grace.map(|g| g.min(MAX_RECORDED_GRACE)),
                ..*c
            })
            .collect();
        groups.extend(children.iter().copied());
        owners.extend(std::iter::repeat_n(i, children.len()));
        if only.is_some() {
            let escaped = tree::escapees(&children).map_err(fail)?;
            owners.extend(std::iter::repeat_n(i, escaped.len()));
            groups.extend(escaped);
        }
    }
    let mut markers = Vec::new();
    for (i, d) in dead.iter().enumerate() {
        if let Some(m) = &d.marker {
            markers.push(m.clone());
            owners.push(i);
        }
    }
    // The cgroup tier's kill must spare the sweeper too: it may run inside the tree.
    let spare: Vec<u32> = if dead.iter().any(|d| d.cgroup.is_some()) {
        let chain = procfs::self_and_ancestors().map_err(fail)?;
        chain.into_iter().map(|(pid, _)| pid).collect()
    } else {
        Vec::new()
    };
    // The cgroup tier's children carry no marker: what left their groups is found by
    // the owner's proven cgroup, and gets its SIGTERM and grace before `cgroup.kill`.
    let mut cgroups = Vec::new();
    for (i, d) in dead.iter().enumerate() {
        if let Some(c) = cgroup::members_of(d, &spare) {
            cgroups.push(c);
            owners.push(i);
        }
    }
    let wanted = Wanted {
        groups: &groups,
        markers: &markers,
        cgroups: &cgroups,
    };
    // Nothing to look for (no dead owner of this boot left to deal with): no `/proc` scan.
    let outcome = if wanted.is_empty() {
        Outcome::default()
    } else {
        let spare = procfs::self_and_ancestors().map_err(fail)?;
        orphans::stop(wanted, grace, &spare).map_err(fail)?
    };
    report_outcome(&mut report, &outcome, &groups);
    let mut survivors = vec![Vec::new(); dead.len()];
    for s in &outcome.survivors {
        survivors[owners[s.group]].push(*s);
    }
    for (d, new) in dead.iter().zip(&survivors) {
        finish(dir.as_fd(), path, d, (new, &spare), &mut report);
    }
    report.took = started.elapsed();
    Ok(report)
}

/// The stopped groups, the pids reused, and the processes spared, of a stop.
fn report_outcome(report: &mut SweepReport, outcome: &Outcome, groups: &[Recorded]) {
    for (k, fate) in outcome.fates.iter().enumerate() {
        let pgid = groups.get(k).map(|g| g.pgid);
        match *fate {
            Fate::Gone => {}
            Fate::Reused => skip(
                report,
                format!("pid {}", groups[k].pid),
                SkipReason::PidReused,
            ),
            Fate::Stopped {
                processes,
                kill_needed,
            } => report.stopped.push(StoppedGroup {
                pgid,
                processes,
                kill_needed,
            }),
        }
    }
    for s in &outcome.spared {
        let reason = match s.why {
            LeftWhy::Sweeper => SpareReason::Sweeper,
            LeftWhy::SweeperGroup => SpareReason::SweeperGroup,
            _ => SpareReason::SweeperAncestor,
        };
        note!(info, pid = s.pid, %reason, "crash sweep: spared");
        report.spared.push(Spared { pid: s.pid, reason });
    }
}

/// A member a stop could not end, reported with why.
fn survivor(report: &mut SweepReport, s: &orphans::Left, journal: &Path) {
    let reason = match s.why {
        LeftWhy::Refused => SurvivorReason::SignalRefused,
        LeftWhy::Uninterruptible => SurvivorReason::Uninterruptible,
        _ => SurvivorReason::StillRunning,
    };
    earlier_survivor(report, s.pid, s.start, journal, reason);
}

fn earlier_survivor(
    report: &mut SweepReport,
    pid: u32,
    start: u64,
    journal: &Path,
    reason: SurvivorReason,
) {
    note!(warn, pid, %reason, "crash sweep: a process survived");
    report.survivors.push(Survivor {
        pid,
        start_time: start,
        journal: journal.to_path_buf(),
        reason,
    });
}

/// Steps 5 to 7 for one dead owner, its processes dealt with (`new`: its survivors).
fn finish(
    dir: BorrowedFd<'_>,
    dir_path: &Path,
    d: &Dead,
    (new, spare): (&[orphans::Left], &[u32]),
    report: &mut SweepReport,
) {
    let mut keep = false;
    // Before the sweep is made durable: a crash after this kill and before that record
    // only makes the next sweep find the cgroup gone (a kill by inode is idempotent).
    if let Some((cg_path, id)) = &d.cgroup
        && !cgroup::kill(cg_path, *id, &d.name, spare, report)
    {
        keep = true;
    }
    // `cgroup.kill` ends what refused the signals (`EPERM`: another user's process in the
    // cgroup, which only the member scan signals): no longer running, it survived
    // nothing (tests/review_cg4_refused_member.rs).
    let new: Vec<(u32, u64)> = (new.iter())
        .filter(|s| d.cgroup.is_none() || orphans::alive(s.pid, s.start))
        .map(|s| {
            survivor(report, s, &d.path);
            (s.pid, s.start)
        })
        .collect();
    let new = &new[..];
    keep |= !new.is_empty();
    if let Some(cg_path) = &d.cgroup_intent
        && !cgroup::remove_intended(cg_path, &d.name, report)
    {
        keep = true;
    }
    // An earlier sweep's survivors: looked at by their exact identity, never signalled.
    for &(pid, start) in &d.survivors {
        if orphans::alive(pid, start) {
            keep = true;
            let reason = SurvivorReason::StillRunningSinceEarlierSweep;
            earlier_survivor(report, pid, start, &d.path, reason);
        }
    }
    let dealt_with = d.marker.is_some() || !d.children.is_empty();
    // The record matters only for a journal that is kept: a failure alone never keeps
    // it (kept without its `Swept`, it would act again at every later sweep).
    let mut durable = if dealt_with && !d.corrupt {
        make_durable(d, new)
    } else {
        Ok(())
    };
    if let Some((root_path, id)) = &d.root {
        match root::remove(root_path, *id) {
            Ok(true) => report.removed.push(root_path.clone()),
            Ok(false) => {}
            // Kept for the next sweep (and a person) to look at.
            Err(reason) => {
                keep = true;
                skip(report, root_path.display().to_string(), reason);
            }
        }
    }
    if keep && durable.is_err() {
        // Once more: the root's removal may have made room (`ENOSPC`).
        durable = make_durable(d, new);
    }
    if let Err(e) = durable {
        let (shown, what) = (
            d.path.display().to_string(),
            if keep { "kept" } else { "dropped" },
        );
        let detail = format!("could not record the sweep in the journal ({what}): {e}");
        if keep {
            skip(report, shown, SkipReason::Failed { detail });
        } else {
            note!(warn, journal = %shown, %detail, "crash sweep: dropped without its record");
        }
    }
    if d.corrupt {
        set_aside(dir, dir_path, d, report);
    } else if !keep {
        unlink_locked(dir, dir_path, &d.name, &d.fd, report);
        drop_leftovers(dir, &d.name);
    }
}

/// Step 5: `Gone` for every child, `Survivor` for each of `survivors`, then `Swept`,
/// appended with one `write` and made durable, before the sweep lets go of the journal.
/// A failed append is cut off again (best effort): a torn frame at the end of a kept
/// journal would make it read as damaged.
fn make_durable(d: &Dead, survivors: &[(u32, u64)]) -> io::Result<()> {
    let len = rustix::fs::fstat(&d.fd)?.st_size;
    let written = append_records(d, survivors);
    if written.is_err() {
        let _ = rustix::fs::ftruncate(&d.fd, len.unsigned_abs());
    }
    written
}

fn append_records(d: &Dead, survivors: &[(u32, u64)]) -> io::Result<()> {
    let mut bytes = Vec::new();
    for c in &d.children {
        let rec = Record::Gone {
            pid: c.pid,
            start: c.start,
        };
        bytes.extend(sys::frame(&rec.encode()));
    }
    for &(pid, start) in survivors {
        bytes.extend(sys::frame(&Record::Survivor { pid, start }.encode()));
    }
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    bytes.extend(sys::frame(&Record::Swept { at }.encode()));
    sys::append(d.fd.as_fd(), &bytes)?;
    rustix::fs::fdatasync(&d.fd)?;
    Ok(())
}

fn skip(report: &mut SweepReport, what: String, reason: SkipReason) {
    note!(info, what = %what, reason = %reason, "crash sweep: skipped");
    report.skipped.push(Skipped { what, reason });
}

/// [`skip`], for early returns.
fn skipped<T>(report: &mut SweepReport, what: String, reason: SkipReason) -> Option<T> {
    skip(report, what, reason);
    None
}

/// Whether `name` in `dir` still refers to `fd` (the file this sweep locked).
fn still_ours(dir: BorrowedFd<'_>, name: &OsStr, fd: &OwnedFd) -> bool {
    match (
        FileId::of_fd(fd),
        rustix::fs::statat(dir, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW),
    ) {
        (Ok(a), Ok(st)) => a == FileId::of_stat(&st),
        _ => false,
    }
}

/// Unlinks `name` if it still refers to `fd` (the file this sweep locked).
fn unlink_locked(
    dir: BorrowedFd<'_>,
    dir_path: &Path,
    name: &OsStr,
    fd: &OwnedFd,
    report: &mut SweepReport,
) {
    if still_ours(dir, name, fd)
        && rustix::fs::unlinkat(dir, name, rustix::fs::AtFlags::empty()).is_ok()
    {
        report.dropped.push(dir_path.join(name));
    }
}

/// A damaged journal, acted on up to its damage: renamed to `<name>.corrupt` (not a
/// journal name, so never swept again) and kept for a person.
fn set_aside(dir: BorrowedFd<'_>, dir_path: &Path, d: &Dead, report: &mut SweepReport) {
    let mut to = d.name.clone();
    to.push(".corrupt");
    let renamed = still_ours(dir, &d.name, &d.fd)
        && rustix::fs::renameat_with(dir, &d.name, dir, &to, rustix::fs::RenameFlags::NOREPLACE)
            .is_ok();
    if renamed {
        note!(warn, journal = %dir_path.join(&to).display(), "crash sweep: a damaged journal was set aside");
        report.set_aside.push(dir_path.join(to));
    }
}

/// A crashed compaction's leftover of the journal `name`, if any (today's
/// `<stem>.compacting`, and older versions' `.compact-<name>`): its owner is dead.
fn drop_leftovers(dir: BorrowedFd<'_>, name: &OsStr) {
    let stem = crate::journal::marker_of(name);
    let mut current = OsStr::from_bytes(stem).to_os_string();
    current.push(crate::journal::COMPACTING);
    let mut old = OsString::from(".compact-");
    old.push(name);
    for n in [current, old] {
        let _ = rustix::fs::unlinkat(dir, &n, rustix::fs::AtFlags::empty());
    }
}

/// Where a service can keep its journals by default: `/run/custodian` for root;
/// otherwise `$XDG_RUNTIME_DIR/custodian` (a per-user tmpfs, emptied at logout and
/// reboot) when `$XDG_RUNTIME_DIR` is an absolute path to a directory owned by this
/// effective user with mode 0700, else `None` (pass
/// [`Builder::state_dir`](crate::Builder::state_dir) a path).
///
/// An inherited `$XDG_RUNTIME_DIR` (`sudo -E`, `su` without `-`) is another user's: root
/// never plants its journals there (the user could no longer start), and a user never
/// trusts a runtime dir that is not their own.
///
/// ```
/// if let Some(dir) = tokio_custodian::default_state_dir() {
///     assert!(dir.ends_with("custodian"));
/// }
/// ```
pub fn default_state_dir() -> Option<PathBuf> {
    let euid = rustix::process::geteuid();
    if euid.is_root() {
        return Some(PathBuf::from("/run/custodian"));
    }
    let dir = PathBuf::from(std::env::var_os("XDG_RUNTIME_DIR")?);
    // `lstat`: a symlink is not a runtime dir either.
    let st = rustix::fs::lstat(&dir).ok()?;
    let own = dir.is_absolute()
        && rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory
        && st.st_uid == euid.as_raw()
        && st.st_mode & 0o7777 == 0o700;
    own.then(|| dir.join("custodian"))
}
