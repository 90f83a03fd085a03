//! One look at what the process holds: its fds, its descendants, the entries of the
//! watched directories, and every live supervisor's resources and work in flight.
//!
//! Everything is read from `/proc` and the supervisors' registries at the moment of the
//! call; nothing is kept open between two snapshots.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::leak::{LiveResource, PendingCleanup};
use crate::sys::procfs::{ProcStat as Proc, children_of};

/// A process as the check names it.
#[derive(Clone, Debug)]
pub(super) struct SeenProc {
    pub(super) proc: Proc,
    pub(super) depth: u32,
}

/// One supervisor's part of a snapshot, keyed by its temp root (unique and random: a
/// supervisor freed and another allocated at the same address cannot be confused).
#[derive(Debug, Default)]
pub(super) struct SupSeen {
    pub(super) live: Vec<LiveResource>,
    pub(super) pending: Vec<PendingCleanup>,
    pub(super) cleanups_in_flight: usize,
    pub(super) scopes_and_tasks: usize,
}

#[derive(Debug, Default)]
pub(super) struct Snapshot {
    /// fd number -> what `/proc/self/fd/N` points to.
    pub(super) fds: BTreeMap<i32, String>,
    /// (pid, start time) -> the process.
    pub(super) procs: BTreeMap<(u32, u64), SeenProc>,
    /// (path, device, inode) of every entry directly under a watched dir or a temp root.
    pub(super) paths: BTreeSet<(PathBuf, u64, u64)>,
    /// temp root -> that supervisor's state.
    pub(super) sups: BTreeMap<PathBuf, SupSeen>,
}

impl Snapshot {
    pub(super) fn take(watched: &[PathBuf]) -> Snapshot {
        let mut s = Snapshot {
            fds: fds(),
            procs: descendants(),
            ..Snapshot::default()
        };
        let euid = rustix::process::geteuid().as_raw();
        for dir in watched {
            entries(dir, Some(euid), &mut s.paths);
        }
        for sup in crate::supervisor::census::all() {
            let inner = &sup.inner;
            let root = inner.temp_root.path().to_path_buf();
            entries(&root, None, &mut s.paths);
            s.sups.insert(
                root,
                SupSeen {
                    live: inner.live(),
                    pending: inner.pending_cleanups(),
                    cleanups_in_flight: inner.cleanups.len(),
                    scopes_and_tasks: inner.scopes.len(),
                },
            );
        }
        s
    }
}

/// Every open fd and its target. The fd that lists them is closed before the targets
/// are read, so its readlink fails and it is left out.
fn fds() -> BTreeMap<i32, String> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return BTreeMap::new();
    };
    let nums: Vec<i32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    nums.into_iter()
        .filter_map(|n| {
            let target = std::fs::read_link(format!("/proc/self/fd/{n}")).ok()?;
            Some((n, target.to_string_lossy().into_owned()))
        })
        .collect()
}

/// This process's children and all their descendants, zombies included, by the
/// kernel's children lists (a `setsid` does not hide a process from its parent's list).
fn descendants() -> BTreeMap<(u32, u64), SeenProc> {
    let me = std::process::id();
    let mut out = BTreeMap::new();
    let mut next = vec![(me, 0u32)];
    while let Some((parent, depth)) = next.pop() {
        // A bounded walk: a fork bomb must not keep the check busy for ever.
        if out.len() >= 4096 {
            break;
        }
        for p in children_of(parent, |_| false).unwrap_or_default() {
            next.push((p.pid, depth + 1));
            out.insert(
                (p.pid, p.start),
                SeenProc {
                    proc: p,
                    depth: depth + 1,
                },
            );
        }
    }
    out
}

/// The entries directly under `dir` (owned by `uid`, if given). A missing dir has none.
fn entries(dir: &Path, uid: Option<u32>, out: &mut BTreeSet<(PathBuf, u64, u64)>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let Ok(md) = e.metadata() else { continue };
        if uid.is_some_and(|u| md.uid() != u) {
            continue;
        }
        out.insert((e.path(), md.dev(), md.ino()));
    }
}

/// A process's command line, spaces between its arguments (empty for a zombie).
pub(super) fn cmdline(pid: u32) -> String {
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(b) if !b.is_empty() => {
            String::from_utf8_lossy(b.strip_suffix(b"\0").unwrap_or(&b)).replace('\0', " ")
        }
        _ => std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .map(|c| format!("[{}]", c.trim_end()))
            .unwrap_or_default(),
    }
}
