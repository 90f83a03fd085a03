//! Step 4b of a journal sweep, for a dead owner of the cgroup containment tier: its
//! cgroup, killed by the path and inode its journal recorded. `cgroup.kill` reaches every
//! member of the supervisor's cgroup and of every child's cgroup below it, whatever it
//! did (`setsid`, a double fork, a cleared environment): no pid is read, guessed or
//! reused. The journal's groups and marker have had their SIGTERM and grace first (step
//! 4); this ends what is left and removes the cgroups.

use std::path::Path;
use std::time::Duration;

use crate::journal::{SkipReason, SweepReport};
use crate::sys::FileId;
use crate::sys::cgroup::{Recorded, kill_recorded};

use super::skip;

/// How long the members of a killed cgroup may take to be gone (`populated 0`): SIGKILL
/// is not deferrable, so only a process stuck in the kernel takes long.
const KILL_BOUND: Duration = Duration::from_secs(5);

/// Kills and removes the cgroup at `path` if it is still the one recorded (`id`) and
/// holds none of `spare` (the sweeper and its ancestors). `false`: the journal must be
/// kept for a later sweep (the sweeper runs inside it, or members did not die).
pub(super) fn kill(path: &Path, id: FileId, spare: &[u32], report: &mut SweepReport) -> bool {
    let shown = path.display().to_string();
    match kill_recorded(path, id, KILL_BOUND, spare) {
        Ok(Recorded::Removed) => {
            note!(info, cgroup = %shown, "crash sweep: killed and removed a dead owner's cgroup");
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
