//! Who holds a pipe: the processes with an fd on it, found in `/proc/*/fd` (for a
//! report only; nothing is ever signalled on this evidence).

use std::os::fd::AsFd;

/// The pipe's inode, if `fd` is a pipe.
pub(crate) fn pipe_inode(fd: impl AsFd) -> Option<u64> {
    let st = rustix::fs::fstat(fd).ok()?;
    let fifo = rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Fifo;
    // `st_ino` is unsigned on every Linux target; the cast only widens.
    #[allow(clippy::unnecessary_cast)]
    fifo.then_some(st.st_ino as u64)
}

/// The pids, other than this process, with an fd on the pipe `ino` (those whose fds
/// can be read: all of them as root, the same user's otherwise), sorted.
pub(crate) fn holders(ino: u64) -> Vec<u32> {
    let me = std::process::id();
    let want = format!("pipe:[{ino}]");
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found: Vec<u32> = procs
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
                fds.filter_map(Result::ok).any(|fd| {
                    std::fs::read_link(fd.path()).is_ok_and(|t| t.as_os_str() == want.as_str())
                })
            })
        })
        .collect();
    found.sort_unstable();
    found
}
