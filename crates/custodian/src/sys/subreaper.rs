//! Child-subreaper primitives: `PR_SET_CHILD_SUBREAPER` held by a count (the setting is
//! process-wide, and several supervisors may ask for it), this process's children as
//! `/proc` shows them (parent, group, start time, zombie or not), one process's
//! environment variable, and reaping *one* pid.
//!
//! Nothing here decides what may be reaped: `reaper` (one layer up) proves that a child
//! was adopted before it calls [`reap`], by pid. Nothing here calls `waitpid(-1)`.
//!
//! Clock: a process's start time (`/proc/PID/stat` field 22) counts clock ticks of the
//! boot-time clock; [`now_ticks`] reads that clock in the same unit, so "born before
//! this moment" can be compared with it.

use std::io;
use std::sync::{Mutex, PoisonError};

use rustix::io::Errno;
use rustix::process::{Pid, WaitOptions};

/// How many holders want the setting on, and whether it was on before the first.
static HOLDERS: Mutex<(usize, bool)> = Mutex::new((0, false));

/// This process is a child subreaper while at least one hold lives; the last one dropped
/// turns the setting off again, unless it was on before the first hold.
#[derive(Debug)]
pub(crate) struct SubreaperHold(());

/// Makes this process a child subreaper (`PR_SET_CHILD_SUBREAPER`) for as long as the
/// hold lives.
pub(crate) fn hold() -> io::Result<SubreaperHold> {
    let mut h = HOLDERS.lock().unwrap_or_else(PoisonError::into_inner);
    if h.0 == 0 {
        let was_on = rustix::process::child_subreaper()?.is_some();
        if !was_on {
            rustix::process::set_child_subreaper(Some(rustix::process::getpid()))?;
        }
        h.1 = was_on;
    }
    h.0 += 1;
    Ok(SubreaperHold(()))
}

impl Drop for SubreaperHold {
    fn drop(&mut self) {
        let mut h = HOLDERS.lock().unwrap_or_else(PoisonError::into_inner);
        h.0 = h.0.saturating_sub(1);
        if h.0 == 0 && !h.1 {
            // Orphans whose parent dies from now on go to init again. Those already
            // adopted stay this process's children.
            let _ = rustix::process::set_child_subreaper(None);
        }
    }
}

/// One process as `/proc/PID/stat` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Proc {
    pub(crate) pid: u32,
    pub(crate) ppid: u32,
    pub(crate) pgid: u32,
    /// Clock ticks since boot when it started (field 22).
    pub(crate) start: u64,
    /// A zombie (exited, not reaped) or dead.
    pub(crate) zombie: bool,
}

/// Parses a `/proc/PID/stat` line; the command name may hold anything, so fields are
/// counted after the *last* `)`.
pub(crate) fn parse(pid: u32, line: &[u8]) -> Option<Proc> {
    let close = line.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(line.get(close + 1..)?).ok()?;
    let f: Vec<&str> = rest.split_ascii_whitespace().collect();
    // f[0] is field 3 (state), f[1] field 4 (ppid), f[2] field 5 (pgrp), f[19] field 22.
    let state = *f.first()?.as_bytes().first()?;
    Some(Proc {
        pid,
        ppid: f.get(1)?.parse().ok()?,
        pgid: f.get(2)?.parse().ok()?,
        start: f.get(19)?.parse().ok()?,
        zombie: matches!(state, b'Z' | b'X' | b'x'),
    })
}

/// `pid` as `/proc` shows it now, or `None` if it is gone (or unreadable).
pub(crate) fn stat(pid: u32) -> Option<Proc> {
    stat_of(pid).ok()
}

/// `pid` as `/proc` shows it now, or why not (`NotFound` when `/proc` is not mounted).
pub(crate) fn stat_of(pid: u32) -> io::Result<Proc> {
    let line = std::fs::read(format!("/proc/{pid}/stat"))?;
    parse(pid, &line).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("/proc/{pid}/stat unparsable"),
        )
    })
}

/// Every process whose parent is `parent`, zombies included, except those `skip` names
/// (not read at all). Processes that vanish meanwhile are skipped. Blocking: it reads
/// the kernel's lists of the threads' children (`/proc/PARENT/task/*/children`), so the
/// cost grows with the children, not with every process on the machine; without them
/// (a kernel built without), one walk of all of `/proc` (about 1 ms per 100 processes).
pub(crate) fn children_of(parent: u32, skip: impl Fn(u32) -> bool) -> io::Result<Vec<Proc>> {
    let pids = match listed_children(parent) {
        Ok(Some(pids)) => pids,
        Ok(None) | Err(_) => all_pids()?,
    };
    Ok(pids
        .into_iter()
        .filter(|&pid| !skip(pid))
        .filter_map(stat)
        .filter(|p| p.ppid == parent)
        .collect())
}

/// The pids in `parent`'s threads' `children` files, or `None` if a thread came or went
/// while they were read (its children move to another thread, maybe one read already).
fn listed_children(parent: u32) -> io::Result<Option<Vec<u32>>> {
    let tasks = |dir: &str| -> io::Result<Vec<std::ffi::OsString>> {
        let mut t: Vec<_> = std::fs::read_dir(dir)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()?;
        t.sort_unstable();
        Ok(t)
    };
    let dir = format!("/proc/{parent}/task");
    let before = tasks(&dir)?;
    let mut pids = Vec::new();
    for t in &before {
        let list = match std::fs::read(format!("{dir}/{}/children", t.to_string_lossy())) {
            Ok(list) => list,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let list = String::from_utf8_lossy(&list);
        pids.extend(
            list.split_ascii_whitespace()
                .filter_map(|p| p.parse::<u32>().ok()),
        );
    }
    Ok((tasks(&dir)? == before).then_some(pids))
}

/// Every pid in `/proc`.
fn all_pids() -> io::Result<Vec<u32>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc")? {
        let Ok(e) = e else { continue };
        if let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) {
            out.push(pid);
        }
    }
    Ok(out)
}

/// The value of the environment variable `name` of process `pid`, as it was at its last
/// `execve`: `Ok(None)` if its environment was read and has no such variable; `Err` if it
/// could not be read (gone, a zombie, another user's, larger than 1 MiB) or read empty
/// (a process in the middle of an `execve` may show none): unknown, not "unmarked".
pub(crate) fn env_var(pid: u32, name: &[u8]) -> io::Result<Option<Vec<u8>>> {
    use std::io::Read;
    let f = std::fs::File::open(format!("/proc/{pid}/environ"))?;
    let mut env = Vec::new();
    f.take((1 << 20) + 1).read_to_end(&mut env)?;
    if env.is_empty() || env.len() > 1 << 20 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "environment empty or too large",
        ));
    }
    Ok(env.split(|&b| b == 0).find_map(|var| {
        let v = var.strip_prefix(name)?.strip_prefix(b"=")?;
        Some(v.to_vec())
    }))
}

/// Reaps `pid` if it has exited: `Ok(true)` reaped, `Ok(false)` still running. Only for
/// a pid proven to be an unreaped child nobody else waits for; `ECHILD` (not our child,
/// or already reaped) is an error.
pub(crate) fn reap(pid: u32) -> io::Result<bool> {
    let p = i32::try_from(pid)
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| io::Error::from(Errno::INVAL))?;
    Ok(rustix::process::waitpid(Some(p), WaitOptions::NOHANG)?.is_some())
}

/// Now, in the unit of a process's start time: clock ticks of the boot-time clock.
pub(crate) fn now_ticks() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    let hz = u128::from(rustix::param::clock_ticks_per_second().max(1));
    let ns = u128::try_from(t.tv_sec).unwrap_or(0) * 1_000_000_000
        + u128::try_from(t.tv_nsec).unwrap_or(0);
    u64::try_from(ns * hz / 1_000_000_000).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_parse_past_odd_names_and_the_clock_matches_start_times() {
        let line = b"42 (a) b (c)) Z 7 40 40 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 12345 0 0";
        let p = parse(42, line).unwrap();
        assert_eq!((p.ppid, p.pgid, p.start, p.zombie), (7, 40, 12345, true));
        assert!(parse(1, b"garbage").is_none());
        let me = stat(std::process::id()).unwrap();
        let now = now_ticks();
        assert!(me.start <= now, "{} <= {now}", me.start);
        let mut child = std::process::Command::new("sleep")
            .arg("1000")
            .env("CUSTODIAN_UNIT", "x=y")
            .spawn()
            .unwrap();
        let kid = stat(child.id()).unwrap();
        // Started after `now` was read, in the same clock.
        assert!(kid.start + 1 >= now, "{} vs {now}", kid.start);
        assert!(
            children_of(std::process::id(), |_| false)
                .unwrap()
                .iter()
                .any(|p| p.pid == child.id())
        );
        // `sleep` may not have exec'd yet: poll for its own environment.
        let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while env_var(child.id(), b"CUSTODIAN_UNIT")
            .ok()
            .flatten()
            .as_deref()
            != Some(&b"x=y"[..])
        {
            assert!(std::time::Instant::now() < until);
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        assert_eq!(env_var(child.id(), b"CUSTODIAN_NONE").unwrap(), None);
        assert!(!reap(child.id()).unwrap(), "still running");
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(reap(child.id()).is_err(), "ECHILD once reaped");
    }
}
