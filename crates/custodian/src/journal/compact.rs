//! Compaction of a long journal, off the runtime's threads: the new file is written and
//! `fsync`ed on the blocking pool without the writer's lock; only the last step (append
//! the records written meanwhile, `rename` over the journal, swap the fd) takes it.
//!
//! The new file is `<stem>.compacting` (never a journal's name: a crashed compaction's
//! leftover is not swept as one; the sweep removes it with its dead owner's journal). A
//! crash at any point leaves one whole journal under the journal's name.

use std::ffi::OsString;
use std::io;
use std::os::fd::AsFd;
use std::sync::Arc;

use super::{COMPACTING, Journal, Record, State};
use crate::sys::journal as sys;

/// Snapshots the header and the live children, and hands the rest to the blocking pool.
/// Without a runtime (a release on a thread of its own) it is left for a later write.
pub(super) fn start(journal: &Arc<Journal>, state: &mut State) {
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let mut snapshot = state.header.clone();
    for (&pid, &(start, pgid, grace_ms, pidfd_ino)) in &state.live {
        let rec = Record::Child {
            pid,
            start,
            pgid,
            grace_ms: Some(grace_ms),
            pidfd_ino,
        };
        snapshot.extend(sys::frame(&rec.encode()));
    }
    state.pending = Some(Vec::new());
    let j = journal.clone();
    drop(handle.spawn_blocking(move || {
        if let Err(e) = finish(&j, &snapshot) {
            tracing::warn!(journal = %j.path.display(), error = %e, "crash journal compaction failed");
        }
    }));
}

/// Writes `snapshot` to a new locked file and `fsync`s it; then, under the writer's lock,
/// appends what was written since the snapshot and renames the file over the journal.
fn finish(j: &Journal, snapshot: &[u8]) -> io::Result<()> {
    let mut tmp: OsString = j.marker().to_os_string();
    tmp.push(COMPACTING);
    let _ = rustix::fs::unlinkat(&j.dir, &tmp, rustix::fs::AtFlags::empty());
    let unlink = || {
        let _ = rustix::fs::unlinkat(&j.dir, &tmp, rustix::fs::AtFlags::empty());
    };
    let written = sys::create_journal(j.dir.as_fd(), &tmp).and_then(|fd| {
        sys::append(fd.as_fd(), snapshot)?;
        rustix::fs::fsync(&fd)?;
        Ok(fd)
    });
    let mut state = j.lock();
    let since = state.pending.take().unwrap_or_default();
    let fd = match written {
        Ok(fd) => fd,
        Err(e) => {
            unlink();
            return Err(e);
        }
    };
    // No `fsync` for these: like every record after the owner's, the page cache
    // keeps them across the death of the process.
    let done = sys::append(fd.as_fd(), &since).and_then(|()| {
        rustix::fs::renameat(&j.dir, &tmp, &j.dir, &j.name).map_err(io::Error::from)
    });
    if let Err(e) = done {
        unlink();
        return Err(e);
    }
    state.fd = fd;
    state.written = 2 + state.live.len();
    Ok(())
}
