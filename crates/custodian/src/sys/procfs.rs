//! What `/proc` says about processes, in one place: a process's `stat` (state, parent,
//! group, start time), its environment, this process's ancestors and pid namespace, the
//! boot id, and a scan of every process. Read-only; every reader treats a process that
//! vanishes mid-read as gone (`None`), never as an error.

use std::io;

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

/// What `/proc/PID/stat` says about a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ProcStat {
    /// Field 22: clock ticks since boot when it started; with the boot id, its identity.
    pub(crate) start: u64,
    /// Field 4.
    pub(crate) ppid: u32,
    /// Field 5.
    pub(crate) pgid: u32,
    /// Field 3: `Z` for a zombie.
    pub(crate) state: u8,
}

/// Parses a `/proc/PID/stat` line (the command name may hold spaces and parentheses:
/// fields are counted after the *last* `)`).
pub(crate) fn parse_stat(line: &[u8]) -> Option<ProcStat> {
    let close = line.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(line.get(close + 1..)?).ok()?;
    let f: Vec<&str> = rest.split_ascii_whitespace().collect();
    // After the `)`: f[0] is field 3 (state), f[2] field 5 (pgrp), f[19] field 22.
    Some(ProcStat {
        state: *f.first()?.as_bytes().first()?,
        ppid: f.get(1)?.parse().ok()?,
        pgid: f.get(2)?.parse().ok()?,
        start: f.get(19)?.parse().ok()?,
    })
}

/// `/proc/PID/stat`, or `None` if there is no such process.
pub(crate) fn proc_stat(pid: u32) -> io::Result<Option<ProcStat>> {
    stat_at(&format!("/proc/{pid}/stat"))
}

fn stat_at(path: &str) -> io::Result<Option<ProcStat>> {
    match std::fs::read(path) {
        Ok(b) => parse_stat(&b).map(Some).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, format!("{path}: unparsable"))
        }),
        // `ESRCH`: the process exited while its directory was being read.
        Err(e)
            if e.kind() == io::ErrorKind::NotFound
                || e.raw_os_error() == Some(Errno::SRCH.raw_os_error()) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// This process's start time (`/proc/self/stat` field 22).
pub(crate) fn self_start() -> io::Result<u64> {
    stat_at("/proc/self/stat")?
        .map(|s| s.start)
        .ok_or_else(|| io::ErrorKind::NotFound.into())
}

/// This process's pid namespace: the device and inode of `/proc/self/ns/pid`.
/// `None` where the kernel has no pid namespaces (no `ns/pid` link).
pub(crate) fn pid_ns() -> Option<crate::sys::FileId> {
    let st = rustix::fs::stat("/proc/self/ns/pid").ok()?;
    Some(crate::sys::FileId::of_stat(&st))
}

/// This process and its ancestors (walking `ppid` up from `/proc/self`), with their
/// start times: a sweep never signals them, whatever they carry.
pub(crate) fn self_and_ancestors() -> io::Result<Vec<(u32, u64)>> {
    let me = stat_at("/proc/self/stat")?.ok_or(io::ErrorKind::NotFound)?;
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
pub(crate) fn all_processes() -> io::Result<Vec<(u32, ProcStat)>> {
    let proc = rustix::fs::open(
        "/proc",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut out = Vec::new();
    for e in rustix::fs::Dir::read_from(&proc)? {
        let e = e?;
        let Some(pid) = std::str::from_utf8(e.file_name().to_bytes())
            .ok()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if let Ok(Some(st)) = proc_stat(pid) {
            out.push((pid, st));
        }
    }
    Ok(out)
}

/// `/proc/PID/environ`, with a leading NUL so that a needle `\0NAME=VALUE\0` matches a
/// whole entry; `None` if it cannot be read (gone, or another user's).
pub(crate) fn environ(pid: u32) -> Option<Vec<u8>> {
    let mut env = vec![0u8];
    let mut f = std::fs::File::open(format!("/proc/{pid}/environ")).ok()?;
    std::io::Read::read_to_end(&mut f, &mut env).ok()?;
    Some(env)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_odd_command_names_parse() {
        let line = b"42 (a) b (c)) S 1 42 42 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 12345 0 0";
        let st = parse_stat(line).unwrap();
        assert_eq!((st.state, st.ppid, st.pgid, st.start), (b'S', 1, 42, 12345));
        assert!(parse_stat(b"garbage").is_none());
        let me = proc_stat(std::process::id()).unwrap().unwrap();
        assert_eq!(me.start, self_start().unwrap());
        assert_eq!(boot_id().unwrap().len(), 36);
    }
}
