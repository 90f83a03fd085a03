//! Step 4b of a journal sweep, for a dead owner of the cgroup containment tier: its
//! cgroup, killed by the path and inode its journal recorded. `cgroup.kill` reaches every
//! member of the supervisor's cgroup and of every child's cgroup below it, whatever it
//! did (`setsid`, a double fork, a cleared environment): no pid is read, guessed or
//! reused. The journal's groups, its marker and the cgroup's members have had their
//! SIGTERM and grace first (step 4, [`members_of`]): the cgroup tier's children carry
//! no environment marker (their cgroup proves descent, and the marker would make std
//! copy the whole environment at every spawn), so what left its group is found in the
//! proven cgroup's `cgroup.procs` (read through its fd, at every level below it: a
//! cgroup of the same name elsewhere is not it) and signalled through a pidfd. This ends
//! what is left and removes the cgroups.
//!
//! The proof, in three parts: the recorded cgroup's name is `custodian-<owner pid>-<owner
//! start time>-<pid namespace>-<64 random bits>`, with the pid and start time of the
//! journal's (dead) owner and the sweep's own pid namespace; the directory at the
//! recorded path is still the recorded inode (cgroupfs inodes are not reused within a
//! boot); and it is on a cgroup2 file system. The inode alone proves only that the path
//! still names the cgroup the record names, not that the record names a cgroup of
//! custodian's: a damaged or forged record with the right inode of any cgroup (a
//! service's slice, the sweeper's own) would have it killed whole. The name ties the
//! record to its owner: a record can only ever lead to a cgroup that the very process its
//! journal names created, and, with the inode, to the very one it created. Pid alone is
//! not enough: a journal forged with a live supervisor's pid and another start time makes
//! that "owner" dead (tests/review_cg4_forged_cgroup.rs), and a pid and start time mean
//! another process in another pid namespace, where the owner was not proven dead
//! (tests/review_final4_cgroup_other_pidns.rs). Names without them
//! (`custodian-<pid>-<random>`, made by earlier versions) are taken with the pid alone. A
//! name check costs nothing and needs no state.
//!
//! Absence needs proof as well: nothing at the recorded path counts as gone only when the
//! nearest directory on that path is on the recorded cgroup2 file system (its device),
//! and, for a sweeper that may ask (`CAP_DAC_READ_SEARCH`), the kernel finds no cgroup
//! with the recorded id there (`open_by_handle_at`: a bind-mounted subtree or a cgroup
//! namespace shows another cgroup at the path's place). A sweeper whose mount namespace
//! has cgroup2 elsewhere or nowhere sees no cgroup at the path while its members run on:
//! it keeps the journal for a sweep that can see them.
//!
//! An owner killed after it made its cgroup and before its journal recorded it leaves an
//! empty cgroup. Its journal names it all the same: the path is recorded right before
//! the `mkdir` ([`remove_intended`]). That path, with the name check above, is the proof;
//! the cgroup is removed only if empty (no child ran in it before the record that is
//! missing), and nothing is ever written to it.

use std::ffi::OsStr;
use std::path::Path;
use std::time::Duration;

use crate::journal::{SkipReason, SweepReport};
use crate::sys::FileId;
use crate::sys::cgroup::{
    Intended, Recorded, is_supervisor_name_of, kill_recorded, own_pid_ns, recorded_dir,
    remove_intended as sys_remove_intended,
};
use crate::sys::orphans::CgroupMark;

use super::examine::Dead;
use super::skip;

/// How long the members of a killed cgroup may take to be gone (`populated 0`): SIGKILL
/// is not deferrable, so only a process stuck in the kernel takes long.
const KILL_BOUND: Duration = Duration::from_secs(5);

/// Step 4's target for the members of the dead owner's cgroup: only for an owner of this
/// boot that no sweep has dealt with yet (it still has its marker), with the same proof
/// as the kill (the owner's pid in the name, the recorded inode, a cgroup2 file system),
/// checked before any member is looked for. `None` otherwise: its groups and marker are
/// stopped as they are, and the kill below decides about the cgroup.
///
/// `None` as well when the cgroup holds one of `spare` (the sweeper and its ancestors):
/// the sweeper's own children are in it too (a live supervisor started by the dead owner,
/// sweeping its journal), and they are not the dead owner's to stop; the cgroup is left
/// whole to a sweep from outside, as the kill is
/// (tests/review_cg4_sweeper_descendants.rs).
pub(super) fn members_of(d: &Dead, spare: &[u32]) -> Option<CgroupMark> {
    let (path, id) = d.cgroup.as_ref()?;
    let owner_start = d.marker.as_ref()?.owner_start;
    if !named_for_owner(path, &d.name) {
        return None;
    }
    let dir = recorded_dir(path, *id, spare)?;
    Some(CgroupMark {
        dir: std::sync::Arc::new(dir),
        owner_start,
    })
}

/// Kills and removes the cgroup at `path` if its name is a supervisor cgroup's of the
/// owner that `journal` (`<pid>-<start>-<random>.journal`) names, it is still the one
/// recorded (`id`), and it holds none of `spare` (the sweeper and its ancestors).
/// `false`: the journal must be kept for a later sweep (the sweeper runs inside it, or
/// members did not die).
pub(super) fn kill(
    path: &Path,
    id: FileId,
    journal: &OsStr,
    spare: &[u32],
    report: &mut SweepReport,
) -> bool {
    let shown = path.display().to_string();
    if !named_for_owner(path, journal) {
        let detail = "the recorded cgroup's name is not custodian-<the journal owner's \
                      pid>-<its start time>-<this pid namespace>-<random>: left alone"
            .to_owned();
        skip(report, shown, SkipReason::UnsafePath { detail });
        return true;
    }
    match kill_recorded(path, id, KILL_BOUND, spare) {
        Ok(Recorded::Removed) => {
            note!(info, cgroup = %shown, "crash sweep: killed and removed a dead owner's cgroup");
            report.cgroups.push(path.to_path_buf());
            true
        }
        Ok(Recorded::Gone) => true,
        Ok(Recorded::Unreachable) => {
            let detail = "nothing at the recorded cgroup's path, which does not lead to \
                          it here (this mount namespace has not the cgroup2 file system it \
                          was made on there, or another cgroup at its place): no proof it \
                          is gone, the journal is kept for a sweep that can see it"
                .to_owned();
            skip(report, shown, SkipReason::Failed { detail });
            false
        }
        Ok(Recorded::NotOurs) => {
            let detail = "another cgroup (or not a cgroup) is at the recorded path".to_owned();
            skip(report, shown, SkipReason::UnsafePath { detail });
            true
        }
        Ok(Recorded::HoldsSpared(pid)) => {
            note!(warn, cgroup = %shown, pid, "crash sweep: the sweeper runs inside a dead owner's cgroup");
            skip(report, shown, SkipReason::SweeperInsideCgroup);
            false
        }
        Err(e) => {
            let detail = format!("killing the cgroup: {e}");
            skip(report, shown, SkipReason::Failed { detail });
            false
        }
    }
}

/// Removes the cgroup at `path` that the dead owner of `journal` was about to create
/// and never recorded as created, if its name is that owner's and it is an empty cgroup.
/// `false`: the journal must be kept for a later sweep (the removal failed).
pub(super) fn remove_intended(path: &Path, journal: &OsStr, report: &mut SweepReport) -> bool {
    let shown = path.display().to_string();
    if !named_for_owner(path, journal) {
        let detail = "the intended cgroup's name is not custodian-<the journal owner's \
                      pid>-<its start time>-<this pid namespace>-<random>: left alone"
            .to_owned();
        skip(report, shown, SkipReason::UnsafePath { detail });
        return true;
    }
    match sys_remove_intended(path) {
        Ok(Intended::Removed) => {
            tracing::info!(cgroup = %shown, "crash sweep: removed a dead owner's empty, unrecorded cgroup");
            report.cgroups.push(path.to_path_buf());
            true
        }
        Ok(Intended::Gone) => true,
        Ok(Intended::Unreachable) => {
            let detail = "nothing at the intended cgroup's path, which does not lead to a \
                          cgroup2 file system here (another mount namespace): the journal is \
                          kept for a sweep that can see it"
                .to_owned();
            skip(report, shown, SkipReason::Failed { detail });
            false
        }
        Ok(Intended::NotOurs) => {
            let detail = "not a cgroup at the intended path".to_owned();
            skip(report, shown, SkipReason::UnsafePath { detail });
            true
        }
        Ok(Intended::Populated) => {
            let detail = "the intended cgroup has members, and no child of the owner ran \
                          there before its record: left alone"
                .to_owned();
            skip(report, shown, SkipReason::UnsafePath { detail });
            true
        }
        Err(e) => {
            let detail = format!("removing the intended cgroup: {e}");
            skip(report, shown, SkipReason::Failed { detail });
            false
        }
    }
}

/// Whether `path`'s last component is a supervisor cgroup's name made by the process
/// (pid and start time) that the journal's file name (`<pid>-<start>-<random>.journal`)
/// gives its owner.
fn named_for_owner(path: &Path, journal: &OsStr) -> bool {
    let owner = super::examine::name_owner(journal);
    let name = path.file_name().and_then(OsStr::to_str);
    match (owner, name) {
        // This sweep's namespace: the owner was proven dead by its pid and start time here.
        (Some((pid, start)), Some(name)) => is_supervisor_name_of(name, pid, start, own_pid_ns()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::SkipReason;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn a_record_naming_another_cgroup_is_never_written_to_even_with_its_inode() {
        // A real cgroup with a process in it, named as a service's would be.
        let Some(c) = crate::containment::Contained::choose_with(
            crate::containment::Containment::Auto,
            |_| Ok(()),
        )
        .ok()
        .and_then(|c| c.cgroup) else {
            eprintln!("skipped: no writable cgroup2");
            return;
        };
        let own = c.path().parent().unwrap().to_path_buf();
        drop(c);
        let victim = own.join(format!("victim-{}", std::process::id()));
        std::fs::create_dir(&victim).unwrap();
        let mut sleep = std::process::Command::new("sleep")
            .arg("1000")
            .spawn()
            .unwrap();
        std::fs::write(victim.join("cgroup.procs"), sleep.id().to_string()).unwrap();
        let meta = std::fs::metadata(&victim).unwrap();
        let id = FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        };
        let mut report = SweepReport::default();
        let journal = OsStr::new("4242-1234-0123456789abcdef.journal");
        let done = kill(&victim, id, journal, &[], &mut report);
        let alive = sleep.try_wait().unwrap().is_none();
        let still = victim.exists();
        // Clean up before asserting.
        let _ = sleep.kill();
        let _ = sleep.wait();
        let _ = std::fs::remove_dir(&victim);
        assert!(done, "nothing to keep the journal for");
        assert!(alive, "the process in another cgroup was killed");
        assert!(still, "another cgroup was removed");
        assert!(report.cgroups.is_empty());
        assert!(
            matches!(report.skipped[0].reason, SkipReason::UnsafePath { .. }),
            "{report}"
        );
    }

    #[test]
    fn the_owner_is_the_journal_name_s_pid_and_start() {
        let j = OsStr::new("4242-99-abc.journal");
        let p = |s: &str| Path::new("/sys/fs/cgroup").join(s);
        let ns = own_pid_ns();
        let named =
            |start: u64, ns: u64| p(&format!("custodian-4242-{start}-{ns}-0123456789abcdef"));
        assert!(named_for_owner(&p("custodian-4242-0123456789abcdef"), j));
        assert!(named_for_owner(&named(99, ns), j));
        assert!(!named_for_owner(&named(98, ns), j));
        // Another pid namespace's pid 4242 (tests/review_final4_cgroup_other_pidns.rs).
        assert!(!named_for_owner(&named(99, ns + 1), j));
        // The shape of 9264c5e, without the namespace: not taken.
        assert!(!named_for_owner(
            &p("custodian-4242-99-0123456789abcdef"),
            j
        ));
        assert!(!named_for_owner(&p("custodian-4243-0123456789abcdef"), j));
        assert!(!named_for_owner(&p("system.slice"), j));
        assert!(!named_for_owner(Path::new("/"), j));
        let odd = OsStr::new("x-99-abc.journal");
        assert!(!named_for_owner(&p("custodian-4242-0123456789abcdef"), odd));
    }
}
