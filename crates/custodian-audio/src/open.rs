//! Opening an audio file without ever waiting on a special file.
//!
//! `open(2)` of a FIFO waits for a writer, and of some devices has side effects, so the
//! path is checked with `stat` first (no open at all for a FIFO, socket, device or
//! directory), then opened with `O_NONBLOCK` (a FIFO swapped in after the check cannot
//! make it wait) and the opened fd checked with `fstat` (what was opened is what is read).

use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use rustix::fs::{Mode, OFlags};

use crate::error::Fail;

/// What a non-regular file is, in words for the error message.
fn describe(meta: &Metadata) -> Option<&'static str> {
    let t = meta.file_type();
    Some(if t.is_file() {
        return None;
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else {
        "not a regular file"
    })
}

fn refuse(meta: &Metadata) -> Result<(), Fail> {
    match describe(meta) {
        None => Ok(()),
        Some(what) => Err(Fail::NotAFile(what)),
    }
}

/// Opens `path` for reading if it is a regular file; returns it and its length. Never
/// blocks on a FIFO and never opens a device.
pub(crate) fn open_regular(path: &Path) -> Result<(File, u64), Fail> {
    refuse(&std::fs::metadata(path).map_err(Fail::Io)?)?;
    let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    let fd = rustix::fs::open(path, flags, Mode::empty()).map_err(|e| Fail::Io(e.into()))?;
    let file = File::from(fd);
    let meta = file.metadata().map_err(Fail::Io)?;
    refuse(&meta)?;
    // A regular file ignores O_NONBLOCK; cleared all the same, as a plain open leaves it.
    rustix::fs::fcntl_setfl(&file, OFlags::empty()).map_err(|e| Fail::Io(io::Error::from(e)))?;
    Ok((file, meta.len()))
}
