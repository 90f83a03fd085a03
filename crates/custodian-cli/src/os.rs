//! What the reports count from the outside: open fds, child processes, directory
//! entries and bytes, read from `/proc` and the file system (never through custodian,
//! so that the counts can catch custodian's own mistakes).

use std::path::Path;

/// Open file descriptors of this process (the listing's own handle excluded).
pub(crate) fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count().saturating_sub(1))
        .unwrap_or(0)
}

/// This process's children, as (pid, state letter), zombies included.
pub(crate) fn children() -> Vec<(u32, char)> {
    let me = std::process::id();
    let mut v = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return v;
    };
    for e in dir.filter_map(|e| e.ok()) {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        if let Some((state, ppid)) = state_and_ppid(&stat)
            && ppid == me
        {
            v.push((pid, state));
        }
    }
    v
}

/// This process's children, as (pid, state letter), zombies included, from the kernel's
/// per-thread lists (`/proc/self/task/*/children`): the cost grows with the children,
/// not with every process. Falls back to [`children`] when a thread came or went while
/// the lists were read (its children move to another thread) or they are missing.
pub(crate) fn own_children() -> Vec<(u32, char)> {
    let tasks = || -> Option<Vec<String>> {
        let mut t: Vec<String> = std::fs::read_dir("/proc/self/task")
            .ok()?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        t.sort_unstable();
        Some(t)
    };
    let listed = (|| {
        let before = tasks()?;
        let mut pids = Vec::new();
        for t in &before {
            let list = std::fs::read_to_string(format!("/proc/self/task/{t}/children")).ok()?;
            pids.extend(
                list.split_ascii_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
        (tasks()? == before).then_some(pids)
    })();
    let Some(pids) = listed else {
        return children();
    };
    let me = std::process::id();
    pids.into_iter()
        .filter_map(|pid: u32| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let (state, ppid) = state_and_ppid(&stat)?;
            (ppid == me).then_some((pid, state))
        })
        .collect()
}

/// Fields 3 (state) and 4 (parent) of a `/proc/PID/stat` line; the command name is in
/// parentheses and may hold spaces, so fields are counted after the last `)`.
fn state_and_ppid(stat: &str) -> Option<(char, u32)> {
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let mut f = rest.split_whitespace();
    let state = f.next()?.chars().next()?;
    Some((state, f.next()?.parse().ok()?))
}

/// Names inside `dir`, sorted (empty if it does not exist).
pub(crate) fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Bytes of the regular files under `dir`, walked iteratively without following
/// symlinks or crossing into another file system.
pub(crate) fn tree_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(top) = std::fs::symlink_metadata(dir) else {
        return 0;
    };
    let dev = top.dev();
    let (mut total, mut stack) = (0u64, vec![dir.to_path_buf()]);
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.filter_map(|e| e.ok()) {
            let Ok(m) = std::fs::symlink_metadata(e.path()) else {
                continue;
            };
            if m.is_dir() && m.dev() == dev {
                stack.push(e.path());
            } else if m.is_file() {
                total = total.saturating_add(m.len());
            }
        }
    }
    total
}

/// Whether `program` is an executable file on `PATH`.
pub(crate) fn on_path(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::env::var_os("PATH").is_some_and(|p| {
        std::env::split_paths(&p).any(|d| {
            std::fs::metadata(d.join(program))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

/// What each open fd of this process points to (`/proc/self/fd` links), by fd number.
pub(crate) fn fd_targets() -> Vec<(String, String)> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| {
            let target = std::fs::read_link(e.path()).ok()?;
            Some((
                e.file_name().to_string_lossy().into_owned(),
                target.display().to_string(),
            ))
        })
        .collect()
}
