//! What `/proc` says about processes, in one place (the only `/proc/PID` reader of the
//! crate): a process's `stat` (state, parent, group, start time), its environment, its
//! children, this process's ancestors and pid namespace, the boot id, a scan of every
//! process, and the clock that start times count in. Read-only; every reader treats a
//! process that vanishes mid-read as gone (`None`), never as an error.
//!
//! A `stat` is one `open` and one `read` into a stack buffer (the kernel produces the
//! whole line at the first read), with no `fstat` or second read as `std::fs::read` makes:
//! a spawn reads its child's, on the thread that spawned it.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

/// What `/proc/PID/stat` says about a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ProcStat {
    /// Field 1.
    pub(crate) pid: u32,
    /// Field 22: clock ticks since boot when it started; with the boot id, its identity.
    pub(crate) start: u64,
    /// Field 4.
    pub(crate) ppid: u32,
    /// Field 5.
    pub(crate) pgid: u32,
    /// Field 3: `Z` for a zombie, `D` for uninterruptible sleep.
    pub(crate) state: u8,
    /// Exited and not reaped, or dead (state `Z`, `X` or `x`): not running. A process
    /// whose main thread exited while others run also shows `Z`, with more than one
    /// thread (field 20): it runs, so it is no zombie.
    pub(crate) zombie: bool,
}

/// Parses a `/proc/PID/stat` line (the command name may hold spaces and parentheses:
/// fields are counted after the *last* `)`).
pub(crate) fn parse_stat(line: &[u8]) -> Option<ProcStat> {
    let close = memchr::memrchr(b')', line)?;
    let open = memchr::memchr(b'(', line)?;
    let pid = decimal(line.get(..open)?.trim_ascii())?;
    let mut f = (line.get(close + 1..)?)
        .split(u8::is_ascii_whitespace)
        .filter(|f| !f.is_empty());
    // After the `)`: field 3 (state), 4 (ppid), 5 (pgrp), then 15 more to field 20
    // (num_threads), and 2 more to field 22.
    let state = *f.next()?.first()?;
    let ppid = decimal(f.next()?)?;
    let pgid = decimal(f.next()?)?;
    let threads: u32 = decimal(f.nth(14)?)?;
    let start = decimal(f.nth(1)?)?;
    Some(ProcStat {
        pid,
        start,
        ppid,
        pgid,
        state,
        zombie: matches!(state, b'Z' | b'X' | b'x') && threads <= 1,
    })
}

/// An unsigned decimal number of ASCII digits only (no sign, no space), if it fits `T`.
fn decimal<T: TryFrom<u64>>(digits: &[u8]) -> Option<T> {
    if digits.is_empty() {
        return None;
    }
    let mut n = 0u64;
    for &d in digits {
        let d = d.checked_sub(b'0').filter(|d| *d <= 9)?;
        n = n.checked_mul(10)?.checked_add(u64::from(d))?;
    }
    T::try_from(n).ok()
}

/// Room for any `stat` line: 52 fields of at most 20 digits, and a 64-byte name.
const STAT_MAX: usize = 2048;

/// Reads `path` (relative to `dir`, or absolute) with one `read`, or `None` if there is
/// no such process. `ESRCH`: it exited while its directory was being read.
fn read_stat(dir: Option<BorrowedFd<'_>>, path: &[u8]) -> io::Result<Option<ProcStat>> {
    let flags = OFlags::RDONLY | OFlags::CLOEXEC;
    let fd = match dir {
        Some(d) => rustix::fs::openat(d, path, flags, Mode::empty()),
        None => rustix::fs::open(path, flags, Mode::empty()),
    };
    let mut buf = [0u8; STAT_MAX];
    let n = match fd.and_then(|fd| rustix::io::read(&fd, &mut buf)) {
        Ok(n) => n,
        Err(Errno::NOENT | Errno::SRCH) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    parse_stat(&buf[..n]).map(Some).ok_or_else(|| {
        let path = String::from_utf8_lossy(path);
        io::Error::new(io::ErrorKind::InvalidData, format!("{path}: unparsable"))
    })
}

/// `/proc/PID/stat`, or `None` if there is no such process.
pub(crate) fn proc_stat(pid: u32) -> io::Result<Option<ProcStat>> {
    use std::io::Write;
    // `/proc/4294967295/stat` is 21 bytes: no allocation.
    let mut path = [0u8; 32];
    let len = {
        let mut w = &mut path[..];
        write!(w, "/proc/{pid}/stat")?;
        32 - w.len()
    };
    read_stat(None, &path[..len])
}

/// `/proc/PID/stat`, or why not (`NotFound`: no such process, or no `/proc`).
pub(crate) fn stat_of(pid: u32) -> io::Result<ProcStat> {
    proc_stat(pid)?.ok_or_else(|| io::ErrorKind::NotFound.into())
}

/// `/proc/PID/stat` if it can be read, else `None` (gone, or unreadable).
pub(crate) fn stat(pid: u32) -> Option<ProcStat> {
    proc_stat(pid).ok().flatten()
}

/// `/proc`, opened once for a scan whose reads are relative to it.
pub(crate) fn open_proc() -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        "/proc",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// The `stat` of the process named `pid` (decimal digits) in the open `/proc`; `None`
/// if it is gone or unreadable.
pub(crate) fn stat_in(proc: BorrowedFd<'_>, pid: &[u8]) -> Option<ProcStat> {
    let mut path = [0u8; 32];
    let len = pid.len().checked_add(5).filter(|&l| l <= path.len())?;
    path[..pid.len()].copy_from_slice(pid);
    path[pid.len()..len].copy_from_slice(b"/stat");
    read_stat(Some(proc), &path[..len]).ok().flatten()
}

/// Every pid in the open `/proc`, as its decimal name.
pub(crate) fn pids_in(proc: BorrowedFd<'_>) -> io::Result<Vec<Box<[u8]>>> {
    let mut out = Vec::new();
    for e in rustix::fs::Dir::read_from(proc)? {
        let e = e?;
        let name = e.file_name().to_bytes();
        if !name.is_empty() && name.iter().all(u8::is_ascii_digit) {
            out.push(name.into());
        }
    }
    Ok(out)
}

/// This process's start time (`/proc/self/stat` field 22).
pub(crate) fn self_start() -> io::Result<u64> {
    read_stat(None, b"/proc/self/stat")?
        .map(|s| s.start)
        .ok_or_else(|| io::ErrorKind::NotFound.into())
}

/// This process's process group, as this pid namespace sees it: `None` if it cannot be
/// read, or if the group's leader is outside the namespace (the kernel says 0 then).
pub(crate) fn self_pgid() -> Option<u32> {
    read_stat(None, b"/proc/self/stat")
        .ok()
        .flatten()
        .map(|s| s.pgid)
        .filter(|&g| g != 0)
}

/// This process's pid namespace: the device and inode of `/proc/self/ns/pid`.
/// `None` where the kernel has no pid namespaces (no `ns/pid` link).
pub(crate) fn pid_ns() -> Option<crate::sys::FileId> {
    let st = rustix::fs::stat("/proc/self/ns/pid").ok()?;
    Some(crate::sys::FileId::of_stat(&st))
}

/// This process and its ancestors (walking `ppid` up from `/proc/self`), with their
/// start times: a sweep never signals them, whatever they carry.
///
/// # Errors
/// `InvalidData` if `/proc` is another pid namespace's (`unshare -p` without
/// `--mount-proc`): its pids are not the ones `pidfd_open` and `kill` take, so a process
/// proven there would be another one here (tests/review_final4_foreign_proc.rs).
pub(crate) fn self_and_ancestors() -> io::Result<Vec<(u32, u64)>> {
    let me = read_stat(None, b"/proc/self/stat")?.ok_or(io::ErrorKind::NotFound)?;
    if me.pid != std::process::id() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "/proc is another pid namespace's (it names this process {}, not {}): \
                 its pids cannot be signalled from here",
                me.pid,
                std::process::id()
            ),
        ));
    }
    let mut out = vec![(std::process::id(), me.start)];
    let mut next = me.ppid;
    // Bounded: a pid's parent started before it, so the walk ends at pid 0; the bound
    // only guards against a `/proc` that lies.
    while next != 0 && out.len() < 4096 {
        match proc_stat(next)? {
            Some(st) => {
                out.push((next, st.start));
                next = st.ppid;
            }
            None => break,
        }
    }
    Ok(out)
}

/// The kernel's boot id (`/proc/sys/kernel/random/boot_id`), a UUID that changes at
/// every boot.
pub(crate) fn boot_id() -> io::Result<String> {
    Ok(std::fs::read_to_string("/proc/sys/kernel/random/boot_id")?
        .trim()
        .to_owned())
}

/// Every process in `/proc` with its stat (processes that vanish mid-scan are skipped).
pub(crate) fn all_processes() -> io::Result<Vec<ProcStat>> {
    let proc = open_proc()?;
    let pids = pids_in(rustix::fd::AsFd::as_fd(&proc))?;
    Ok(pids
        .iter()
        .filter_map(|pid| stat_in(rustix::fd::AsFd::as_fd(&proc), pid))
        .collect())
}

/// Every process whose parent is `parent`, zombies included, except those `skip` names
/// (not read at all). Processes that vanish meanwhile are skipped. Blocking: it reads
/// the kernel's lists of the threads' children (`/proc/PARENT/task/*/children`), so the
/// cost grows with the children, not with every process on the machine; without them
/// (a kernel built without), one walk of all of `/proc` (about 1 ms per 100 processes).
pub(crate) fn children_of(parent: u32, skip: impl Fn(u32) -> bool) -> io::Result<Vec<ProcStat>> {
    let pids = match listed_children(parent) {
        Ok(Some(pids)) => pids,
        Ok(None) | Err(_) => {
            let proc = open_proc()?;
            let names = pids_in(rustix::fd::AsFd::as_fd(&proc))?;
            let name = |n: &[u8]| std::str::from_utf8(n).ok()?.parse().ok();
            names.iter().filter_map(|n| name(n)).collect()
        }
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

/// The cgroup v2 path of `pid` (the `0::` line of `/proc/PID/cgroup`, relative to this
/// process's cgroup namespace); `None` if it has none (no cgroup2) or is gone.
pub(crate) fn cgroup_v2(pid: u32) -> io::Result<Option<Vec<u8>>> {
    let text = match std::fs::read(format!("/proc/{pid}/cgroup")) {
        Ok(t) => t,
        Err(e)
            if e.kind() == io::ErrorKind::NotFound
                || e.raw_os_error() == Some(Errno::SRCH.raw_os_error()) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    Ok(text
        .split(|&b| b == b'\n')
        .find_map(|l| l.strip_prefix(b"0::"))
        .map(<[u8]>::to_vec))
}

/// The largest environment read: past it, a process's environment is "unknown".
const ENVIRON_MAX: u64 = 1 << 20;

/// `/proc/PID/environ` as it was at the process's last `execve` (`NAME=VALUE\0`...).
/// `Err` if it could not be read (gone, a zombie, another user's, larger than 1 MiB) or
/// read empty (a process in the middle of an `execve` may show none): unknown, never
/// "unmarked".
pub(crate) fn environ(pid: u32) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let f = std::fs::File::open(format!("/proc/{pid}/environ"))?;
    let mut env = Vec::new();
    f.take(ENVIRON_MAX + 1).read_to_end(&mut env)?;
    if env.is_empty() || env.len() as u64 > ENVIRON_MAX {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "environment empty or too large",
        ));
    }
    Ok(env)
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
    fn stat_lines_with_odd_command_names_parse() {
        let line = b"42 (a) b (c)) S 1 42 42 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 12345 0 0";
        let st = parse_stat(line).unwrap();
        assert_eq!(
            (st.pid, st.state, st.ppid, st.pgid, st.start, st.zombie),
            (42, b'S', 1, 42, 12345, false)
        );
        let z = b"42 (a) Z 7 40 40 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 12345 0 0";
        assert!(parse_stat(z).unwrap().zombie);
        // Its main thread exited, another still runs: `Z`, yet two threads.
        let z = b"42 (a) Z 7 40 40 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 2 0 12345 0 0";
        assert!(!parse_stat(z).unwrap().zombie);
        assert!(parse_stat(b"garbage").is_none());
        assert!(parse_stat(b"12 (sh) S 1 12").is_none(), "too short");
        // What `str::parse` refused is refused: signs, other characters, overflow.
        let bad = |field: &str| format!("42 (a) S {field} 42 42 0 -1 0 0 0 0 0 0 0 0 20 0 1 0 9 0");
        assert!(parse_stat(bad("1").as_bytes()).is_some());
        for f in ["-1", "1x", "4294967296", "+-1", "１"] {
            assert!(parse_stat(bad(f).as_bytes()).is_none(), "{f}");
        }
        assert_eq!(decimal::<u64>(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(decimal::<u64>(b"18446744073709551616"), None);
        assert_eq!(decimal::<u32>(b""), None);
        let me = proc_stat(std::process::id()).unwrap().unwrap();
        assert_eq!(me.pid, std::process::id());
        assert_eq!(me.start, self_start().unwrap());
        assert!(me.start <= now_ticks());
        assert_eq!(boot_id().unwrap().len(), 36);
        assert_eq!(proc_stat(u32::MAX).unwrap(), None, "no such process");
        let proc = open_proc().unwrap();
        let mine = std::process::id().to_string();
        let pids = pids_in(rustix::fd::AsFd::as_fd(&proc)).unwrap();
        assert!(pids.iter().any(|p| **p == *mine.as_bytes()));
        // The state may change between two reads (running, sleeping): the identity not.
        let again = stat_in(rustix::fd::AsFd::as_fd(&proc), mine.as_bytes()).unwrap();
        assert_eq!(
            (again.pid, again.start, again.pgid),
            (me.pid, me.start, me.pgid)
        );
    }

    #[test]
    fn a_childs_stat_environment_and_parent_are_read() {
        let now = now_ticks();
        let mut child = std::process::Command::new("sleep")
            .arg("1000")
            .env("CUSTODIAN_UNIT", "x=y")
            .spawn()
            .unwrap();
        let kid = stat(child.id()).unwrap();
        // Started after `now` was read, in the same clock.
        assert!(kid.start + 1 >= now, "{} vs {now}", kid.start);
        let kids = children_of(std::process::id(), |_| false).unwrap();
        assert!(kids.iter().any(|p| p.pid == child.id()));
        // `sleep` may not have exec'd yet: poll for its own environment.
        let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !environ(child.id())
            .unwrap_or_default()
            .split(|&b| b == 0)
            .any(|v| v == b"CUSTODIAN_UNIT=x=y")
        {
            assert!(std::time::Instant::now() < until);
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(environ(child.id()).is_err(), "gone: unknown, not empty");
    }
}
