//! Shared helpers for custodian's cross-crate tests: counting open fds, listing a
//! directory, finding zombie children.

use std::path::Path;

/// Open file descriptors of this process, from `/proc/self/fd`.
pub fn open_fds() -> usize {
    // The directory handle used to read the listing is itself one entry.
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count().saturating_sub(1))
        .unwrap_or(0)
}

/// Names inside `dir` (empty if it does not exist).
pub fn entries(dir: &Path) -> Vec<String> {
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

/// Pids of this process's children that are zombies (state `Z` in `/proc/PID/stat`).
pub fn zombie_children() -> Vec<u32> {
    let me = std::process::id();
    let mut z = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return z;
    };
    for e in dir.filter_map(|e| e.ok()) {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the command name, which is in parentheses and may contain spaces.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
            continue;
        };
        let mut f = rest.split_whitespace();
        let state = f.next();
        let ppid = f.next().and_then(|p| p.parse::<u32>().ok());
        if state == Some("Z") && ppid == Some(me) {
            z.push(pid);
        }
    }
    z
}

/// What each open file descriptor of this process points at (for diagnostics).
pub fn fd_targets() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| {
                    let target = std::fs::read_link(e.path())
                        .map(|p| p.display().to_string())
                        .unwrap_or_default();
                    format!("{} -> {target}", e.file_name().to_string_lossy())
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}
