//! The watcher's extra step of a journal sweep: descendants of a dead owner's children
//! that left their group, found by their parent links while those still hold.
//!
//! A sweep run long after the owner died finds only what kept the group or the
//! environment marker: a `setsid env -i` escapee's parent has died and it was adopted
//! by init, so nothing ties it to the owner any more. The watcher sweeps within
//! milliseconds of the death, while the managed children still run: an escapee is then
//! still the child (or grandchild...) of one, and `/proc` says so.
//!
//! What counts, and why it is a proof: a running process whose parent is a recorded
//! child proven by pid *and* start time (or, recursively, such a descendant), and that
//! started no earlier than that parent (a child cannot be older than its parent: a pid
//! reused by an older process fails it). The `ppid` field names the live parent, so a
//! parent link read in one scan is a fact about that moment; each escapee is then
//! signalled through a pidfd opened and checked against its start time again
//! (`sys/orphans.rs`), never by a bare pid.

use std::collections::{HashMap, HashSet};
use std::io;

use crate::sys::orphans::Recorded;
use crate::sys::procfs::{self, ProcStat};

/// The escapees of `children`: running descendants whose process group is not their
/// recorded child's, each as a record of its own (its pid as group: a group of that id
/// can only have been made by it), with its child's grace. Sorted by pid, no repeats.
pub(super) fn escapees(children: &[Recorded]) -> io::Result<Vec<Recorded>> {
    if children.is_empty() {
        return Ok(Vec::new());
    }
    let procs = procfs::all_processes()?;
    Ok(escapees_in(children, &procs))
}

fn escapees_in(children: &[Recorded], procs: &[ProcStat]) -> Vec<Recorded> {
    let mut kids: HashMap<u32, Vec<ProcStat>> = HashMap::new();
    for &st in procs {
        if !st.zombie {
            kids.entry(st.ppid).or_default().push(st);
        }
    }
    let by_pid: HashMap<u32, ProcStat> = procs.iter().map(|st| (st.pid, *st)).collect();
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for c in children {
        // The recorded child itself, proven by its start time (a reused pid is not it).
        let Some(st) = by_pid.get(&c.pid).filter(|st| st.start == c.start) else {
            continue;
        };
        let mut stack = vec![(c.pid, st.start)];
        while let Some((parent, parent_start)) = stack.pop() {
            for &st in kids.get(&parent).map_or(&[][..], Vec::as_slice) {
                let pid = st.pid;
                if st.start < parent_start || !seen.insert(pid) {
                    continue;
                }
                stack.push((pid, st.start));
                if st.pgid != c.pgid {
                    out.push(Recorded {
                        pid,
                        start: st.start,
                        pgid: pid,
                        grace: c.grace,
                        pidfd_ino: None,
                    });
                }
            }
        }
    }
    out.sort_by_key(|r| r.pid);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(pid: u32, ppid: u32, pgid: u32, start: u64) -> ProcStat {
        ProcStat {
            pid,
            start,
            ppid,
            pgid,
            state: b'S',
            zombie: false,
        }
    }

    #[test]
    fn descendants_outside_the_group_are_found_and_nothing_else() {
        let child = Recorded {
            pid: 10,
            start: 100,
            pgid: 10,
            grace: None,
            pidfd_ino: None,
        };
        let procs = [
            st(1, 0, 1, 1),
            st(10, 1, 10, 100),
            // In the group: the group's own sweep finds it.
            st(11, 10, 10, 101),
            // `setsid`: its own group, a child of the recorded child.
            st(12, 10, 12, 102),
            // A grandchild through the escapee, in the escapee's group.
            st(13, 12, 12, 103),
            // A grandchild that left again.
            st(14, 12, 14, 104),
            // Older than its "parent": a reused pid, not a descendant.
            st(15, 10, 15, 50),
            // Unrelated.
            st(20, 1, 20, 105),
        ];
        let found: Vec<u32> = escapees_in(&[child], &procs)
            .iter()
            .map(|r| r.pid)
            .collect();
        assert_eq!(found, [12, 13, 14]);
        // The recorded child's pid now names another process: nothing is its.
        let reused = Recorded { start: 99, ..child };
        assert!(escapees_in(&[reused], &procs).is_empty());
    }
}
