//! Step 4b of a journal sweep, for a dead owner of the cgroup containment tier: its
//! cgroup, killed by the path and inode its journal recorded. `cgroup.kill` reaches every
//! member of the supervisor's cgroup and of every child's cgroup below it, whatever it
//! did (`setsid`, a double fork, a cleared environment): no pid is read, guessed or
//! reused. The journal's groups and marker have had their SIGTERM and grace first (step
//! 4); this ends what is left and removes the cgroups.
//!
//! The proof, in three parts: the recorded cgroup's name is `custodian-<owner pid>-<64
//! random bits>`, with the pid of the journal's (dead) owner; the directory at the
//! recorded path is still the recorded inode (cgroupfs inodes are not reused within a
//! boot); and it is on a cgroup2 file system. The inode alone proves only that the path
//! still names the cgroup the record names, not that the record names a cgroup of
//! custodian's: a damaged or forged record with the right inode of any cgroup (a
//! service's slice, the sweeper's own) would have it killed whole. The name ties the
//! record to its owner: a record can only ever lead to a cgroup that a supervisor with
//! the owner's pid created, and, with the inode, to the very one it created (another
//! owner reusing the pid later makes another inode). A name check costs nothing and needs
//! no state.
//!
//! An owner killed after it made its cgroup and before its journal recorded it leaves an
//! empty cgroup that no record names (no child runs in it before the record). The name is
//! the proof there too: [`remove_unrecorded`] removes an *empty* `custodian-<pid>-...` of
//! a dead owner of this sweep, in the sweeper's own cgroup and beside the recorded ones,
//! if no process has that pid now in any pid namespace (a live one could be a new
//! supervisor that just made it, or one in another pid namespace sharing the directory,
//! whose name gives its pid in its own namespace; outside the initial pid namespace not
//! every process is visible, and nothing unrecorded is removed). A populated one is never written to. An earlier process with the same pid may have
//! made it (a supervisor that died without a journal): it is abandoned all the same (its
//! creator no longer runs) and empty, so its removal touches no process.

use std::ffi::OsStr;
use std::path::Path;
use std::time::Duration;

use crate::journal::{SkipReason, SweepReport};
use crate::sys::FileId;
use crate::sys::cgroup::{
    Recorded, discover, is_supervisor_name_of, kill_recorded, remove_unrecorded,
};

use super::examine::Dead;

use super::skip;

/// How long the members of a killed cgroup may take to be gone (`populated 0`): SIGKILL
/// is not deferrable, so only a process stuck in the kernel takes long.
const KILL_BOUND: Duration = Duration::from_secs(5);

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
                      pid>-<random>: left alone"
            .to_owned();
        skip(report, shown, SkipReason::UnsafePath { detail });
        return true;
    }
    match kill_recorded(path, id, KILL_BOUND, spare) {
        Ok(Recorded::Removed) => {
            tracing::info!(cgroup = %shown, "crash sweep: killed and removed a dead owner's cgroup");
            report.cgroups.push(path.to_path_buf());
            true
        }
        Ok(Recorded::Gone) => true,
        Ok(Recorded::NotOurs) => {
            let detail = "another cgroup (or not a cgroup) is at the recorded path".to_owned();
            skip(report, shown, SkipReason::UnsafePath { detail });
            true
        }
        Ok(Recorded::HoldsSpared(pid)) => {
            tracing::warn!(cgroup = %shown, pid, "crash sweep: the sweeper runs inside a dead owner's cgroup");
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

/// Removes the empty cgroups that `dead` owners of this boot made and never recorded
/// (killed between the creation and the record), in the sweeper's own cgroup directory
/// and in the directories of the recorded ones; see the module's docs for the proof.
pub(super) fn remove_unrecorded_of(dead: &[Dead], report: &mut SweepReport) {
    // Of this boot and not swept before: the marker (or a cgroup record) is kept then.
    let live_proof = |d: &&Dead| d.marker.is_some() || d.cgroup.is_some();
    let pids: Vec<u32> = dead
        .iter()
        .filter(live_proof)
        .filter_map(|d| owner_pid(&d.name))
        .collect();
    if pids.is_empty() {
        return;
    }
    let mut dirs: Vec<std::path::PathBuf> = discover::own_dir().into_iter().collect();
    for d in dead {
        if let Some(parent) = d.cgroup.as_ref().and_then(|(p, _)| p.parent())
            && !dirs.iter().any(|x| x == parent)
        {
            dirs.push(parent.to_path_buf());
        }
    }
    let recorded: Vec<&Path> = dead
        .iter()
        .filter_map(|d| Some(d.cgroup.as_ref()?.0.as_path()))
        .collect();
    for dir in dirs {
        let names: Vec<&str> = recorded
            .iter()
            .filter(|p| p.parent() == Some(dir.as_path()))
            .filter_map(|p| p.file_name()?.to_str())
            .collect();
        match remove_unrecorded(&dir, &pids, &names) {
            Ok(removed) => {
                for path in removed {
                    tracing::info!(cgroup = %path.display(), "crash sweep: removed a dead owner's unrecorded empty cgroup");
                    report.cgroups.push(path);
                }
            }
            Err(e) => {
                let detail = format!("removing unrecorded cgroups: {e}");
                skip(
                    report,
                    dir.display().to_string(),
                    SkipReason::Failed { detail },
                );
            }
        }
    }
}

/// The owner pid a journal's file name (`<pid>-<start>-<random>.journal`) gives.
fn owner_pid(journal: &OsStr) -> Option<u32> {
    journal.to_str()?.split('-').next()?.parse().ok()
}

/// Whether `path`'s last component is a supervisor cgroup's name made by the pid that
/// the journal's file name gives its owner.
fn named_for_owner(path: &Path, journal: &OsStr) -> bool {
    let owner = owner_pid(journal);
    let name = path.file_name().and_then(OsStr::to_str);
    match (owner, name) {
        (Some(pid), Some(name)) => is_supervisor_name_of(name, pid),
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
        let Some(c) = crate::containment::Contained::choose(crate::containment::Containment::Auto)
            .ok()
            .and_then(|c| c.cgroup)
        else {
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
    fn the_owner_is_the_journal_name_s_pid() {
        let j = OsStr::new("4242-99-abc.journal");
        let p = |s: &str| Path::new("/sys/fs/cgroup").join(s);
        assert!(named_for_owner(&p("custodian-4242-0123456789abcdef"), j));
        assert!(!named_for_owner(&p("custodian-4243-0123456789abcdef"), j));
        assert!(!named_for_owner(&p("system.slice"), j));
        assert!(!named_for_owner(Path::new("/"), j));
        let odd = OsStr::new("x-99-abc.journal");
        assert!(!named_for_owner(&p("custodian-4242-0123456789abcdef"), odd));
    }
}
