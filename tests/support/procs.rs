//! Looking at processes through `/proc`: by pid, by process group, by command line.

use std::path::Path;

/// Fields of `/proc/PID/stat` after the command name: state, ppid, pgrp.
fn stat_of(pid: u32) -> Option<(String, u32, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut f = rest.split_whitespace();
    let state = f.next()?.to_owned();
    let ppid = f.next()?.parse().ok()?;
    let pgrp = f.next()?.parse().ok()?;
    Some((state, ppid, pgrp))
}

/// Every pid in `/proc`.
fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_string_lossy().parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The parent of `pid`, if it exists (zombies included).
pub fn ppid(pid: u32) -> Option<u32> {
    stat_of(pid).map(|(_, ppid, _)| ppid)
}

/// Pids of processes whose command line holds `needle` (a zombie's is empty: zombies
/// are counted by [`zombie_children`](crate::zombie_children)).
pub fn mentioning(needle: &str) -> Vec<u32> {
    all_pids()
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmd| {
                String::from_utf8_lossy(&cmd)
                    .replace('\0', " ")
                    .contains(needle)
            })
        })
        .collect()
}

/// Running (not zombie) processes whose command line holds `needle`, sorted.
pub fn running_mentioning(needle: &str) -> Vec<u32> {
    let mut v: Vec<u32> = mentioning(needle)
        .into_iter()
        .filter(|&p| pid_running(p))
        .collect();
    v.sort_unstable();
    v
}

/// Live `sleep` processes run as `sleep n` (not the shells whose scripts mention them).
pub fn sleeps(n: &str) -> Vec<u32> {
    let comm = |p: u32| std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default();
    let mut v = mentioning(&format!("sleep {n}"));
    v.retain(|&p| comm(p).trim() == "sleep");
    v
}

/// Polls `f` every 5 ms (blocking the thread) until it holds or `limit` has passed;
/// returns whether it held.
pub fn poll_until(limit: std::time::Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now().checked_add(limit);
    while !f() {
        if end.is_some_and(|end| std::time::Instant::now() >= end) {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    true
}

/// Running (not zombie) processes whose process group is one of `pgids`, as
/// `(pid, pgid)`. One scan of `/proc` for all groups.
pub fn group_members(pgids: &[u32]) -> Vec<(u32, u32)> {
    all_pids()
        .into_iter()
        .filter_map(|pid| {
            let (state, _, pgrp) = stat_of(pid)?;
            (state != "Z" && pgids.contains(&pgrp)).then_some((pid, pgrp))
        })
        .collect()
}

/// Whether any process of group `pgid` is still running (zombies count as gone).
pub fn group_alive(pgid: u32) -> bool {
    !group_members(&[pgid]).is_empty()
}

/// Whether `pid` exists at all, zombie or not.
pub fn pid_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Whether `pid` is running (exists and is not a zombie).
pub fn pid_running(pid: u32) -> bool {
    stat_of(pid).is_some_and(|(state, _, _)| state != "Z")
}

/// Polls until no process of the groups runs, up to `timeout`; returns what is left.
/// (A SIGKILLed grandchild may need a few milliseconds to die after custodian returns.)
pub fn wait_groups_gone(pgids: &[u32], timeout: std::time::Duration) -> Vec<(u32, u32)> {
    let until = std::time::Instant::now() + timeout;
    loop {
        let left = group_members(pgids);
        if left.is_empty() || std::time::Instant::now() >= until {
            return left;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Polls until group `pgid` has at least `n` running processes, up to `timeout`.
pub fn wait_group_size(pgid: u32, n: usize, timeout: std::time::Duration) -> bool {
    let until = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < until {
        if group_members(&[pgid]).len() >= n {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    false
}
