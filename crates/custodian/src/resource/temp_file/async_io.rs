//! A temp file's `AsyncRead`, `AsyncWrite` and `AsyncSeek`: delegated to the file in
//! its slot, as for every guard, plus the temp bytes quota's accounting.
//!
//! With a temp bytes quota, the guard tracks its file position (reads, writes and seeks
//! all move it) and charges a write before it starts, up to the furthest offset it asks
//! for (`pos + len`); a write the quota has no room for fails with
//! `io::ErrorKind::QuotaExceeded` and writes nothing. `flush` and `shutdown` then settle
//! the charge to the file's size (`fstat`). Without the quota nothing is tracked.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, ReadBuf};

use super::TempFile;
use crate::resource::slot::ready;

impl TempFile {
    /// After a flush: the file's size is what it holds on disk.
    fn settle(&self) {
        if let Some(b) = &self.bytes
            && let Ok(Ok(st)) = self.file.with(|f| rustix::fs::fstat(&*f))
        {
            b.settle(u64::try_from(st.st_size).unwrap_or(0));
        }
    }
}

impl AsyncRead for TempFile {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = ready(this.file.with(|f| Pin::new(f).poll_read(cx, buf)));
        if matches!(r, Poll::Ready(Ok(()))) {
            this.pos += (buf.filled().len() - before) as u64;
        }
        r
    }
}

impl AsyncWrite for TempFile {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(b) = &this.bytes {
            b.charge_to(this.pos.saturating_add(buf.len() as u64))?;
        }
        let r = ready(this.file.with(|f| Pin::new(f).poll_write(cx, buf)));
        if let Poll::Ready(Ok(n)) = r {
            this.pos += n as u64;
        }
        r
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = ready(self.file.with(|f| Pin::new(f).poll_flush(cx)));
        if matches!(r, Poll::Ready(Ok(()))) {
            self.settle();
        }
        r
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = ready(self.file.with(|f| Pin::new(f).poll_shutdown(cx)));
        if matches!(r, Poll::Ready(Ok(()))) {
            self.settle();
        }
        r
    }
}

impl AsyncSeek for TempFile {
    fn start_seek(self: Pin<&mut Self>, position: io::SeekFrom) -> io::Result<()> {
        self.file.with(|f| Pin::new(f).start_seek(position))?
    }

    fn poll_complete(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        let this = self.get_mut();
        let r = ready(this.file.with(|f| Pin::new(f).poll_complete(cx)));
        if let Poll::Ready(Ok(p)) = r {
            this.pos = p;
        }
        r
    }
}
