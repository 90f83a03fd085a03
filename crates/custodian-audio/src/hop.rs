//! The decoder's hops to the blocking pool: the producer that decodes ahead in the
//! background (see `ahead.rs`), and a seek.
//!
//! Invariants: at most one producer runs, and never together with a seek hop: a seek
//! stops the producer and waits for it before it starts, and a read waits for a seek in
//! flight (even one whose future was dropped) before it takes anything, so everything
//! happens in call order. Reads only take from the read-ahead; a dropped read has taken
//! nothing, so it loses nothing.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use tokio::task::JoinHandle;

use crate::ahead::{End, LOW, MIN_PIECE};
use crate::decoder::AudioDecoder;
use crate::error::{Fail, Op, Result, panic_message};
use crate::sample::Sample;
use crate::shared::Shared;

/// A seek on the blocking pool: the new position.
pub(crate) type Hop = JoinHandle<Result<u64, Fail>>;

impl AudioDecoder {
    pub(crate) fn poll_read<S: Sample>(
        &mut self,
        cx: &mut Context<'_>,
        frames: usize,
    ) -> Poll<Result<Vec<S>>> {
        // A seek whose future was dropped lands before this read.
        ready!(self.poll_settle(cx));
        if self.shared.is_released() {
            return Poll::Ready(Err(Fail::Released.at(Op::Read, &self.path)));
        }
        let ch = usize::from(self.info.channels);
        let want = frames.saturating_mul(ch);
        let mut a = self.shared.ahead();
        let served = a.len() >= want || matches!(a.end, Some(End::Eof));
        if !served && let Some(End::Failed(_)) = a.end {
            // What is still queued came before the error, and is handed out after it.
            let Some(End::Failed(f)) = a.end.take() else {
                unreachable!()
            };
            return Poll::Ready(Err(f.at(Op::Read, &self.path)));
        }
        // The producer decodes pieces of this read's size and type from now on.
        a.piece = frames.max(MIN_PIECE / ch).max(1);
        a.channels = ch;
        a.f32 = S::IS_F32;
        let v = served.then(|| {
            a.unwait();
            let v = a.take::<S>(want);
            // A read of a whole piece leaves the producer a buffer for the next one;
            // reads smaller than a piece (`MIN_PIECE`) would leave many per piece.
            if v.len() == want && a.piece == frames {
                a.give_spare::<S>(want);
            }
            v
        });
        let start =
            !a.running && a.end.is_none() && (v.is_none() || (want > 0 && a.len() < LOW)) && {
                a.running = true;
                a.stop = false;
                true
            };
        if v.is_none() {
            a.wait(cx.waker(), want);
        }
        drop(a);
        if start {
            let shared = self.shared.clone();
            // Detached: `Running` reports its end through the read-ahead.
            drop(tokio::task::spawn_blocking(move || produce::<S>(shared)));
        }
        match v {
            Some(v) => {
                self.position += (v.len() / ch) as u64;
                Poll::Ready(Ok(v))
            }
            None => Poll::Pending,
        }
    }

    /// Stops the producer, if one runs, and waits until it has.
    pub(crate) fn poll_stop(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let mut a = self.shared.ahead();
        if !a.running {
            return Poll::Ready(());
        }
        a.stop = true;
        // Woken only when the producer is done (it never queues this much).
        a.wait(cx.waker(), usize::MAX);
        Poll::Pending
    }

    /// Waits for a seek in flight, if any, and keeps its position.
    pub(crate) fn poll_settle(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.inflight.is_some()
            && let Ok(pos) = ready!(self.poll_hop(cx))
        {
            self.position = pos;
        }
        Poll::Ready(())
    }

    pub(crate) fn poll_hop(&mut self, cx: &mut Context<'_>) -> Poll<Result<u64, Fail>> {
        let Some(h) = self.inflight.as_mut() else {
            return Poll::Ready(Err(Fail::Released));
        };
        let joined = ready!(Pin::new(h).poll(cx));
        self.inflight = None;
        Poll::Ready(joined.unwrap_or_else(|e| Err(join_fail(e))))
    }

    /// Starts a seek to frame `ts` once the producer has stopped; the read-ahead (all
    /// before the seek) is dropped first.
    pub(crate) fn start_seek(&mut self, ts: u64) {
        self.shared.ahead().clear();
        let shared = self.shared.clone();
        self.inflight = Some(tokio::task::spawn_blocking(move || {
            shared.with(|st, _| st.seek(ts))
        }));
    }
}

/// The producer: decodes pieces into the read-ahead until it is full, the stream ends,
/// an error, a seek or a read of the other sample type.
fn produce<S: Sample>(shared: Arc<Shared>) {
    let mut running = Running(shared, false);
    let shared = &running.0;
    loop {
        let (frames, buf) = {
            let mut a = shared.ahead();
            if a.stop || a.f32 != S::IS_F32 || a.end.is_some() || a.len() >= a.target() {
                break;
            }
            (a.next_piece(), a.take_spare::<S>())
        };
        let r = shared.with(|st, released| Ok((st.read::<S>(frames, released, buf)?, st.ended())));
        let mut a = shared.ahead();
        let wake = match r {
            Ok((v, ended)) => {
                let w = if v.is_empty() {
                    None
                } else {
                    a.push(S::wrap(v))
                };
                if ended {
                    a.end = Some(End::Eof);
                }
                w
            }
            Err(f) => {
                a.end = Some(End::Failed(f));
                None
            }
        };
        // No more pieces until a seek: the spare buffers go (outside the lock).
        let spares = if a.end.is_some() {
            a.take_spares()
        } else {
            Vec::new()
        };
        drop(a);
        drop(spares);
        if let Some(w) = wake {
            w.wake();
        }
    }
    running.1 = true;
}

/// Marks the producer done when dropped: after its last piece, after a panic outside the
/// decoding library's guard, or when the runtime drops the hop before it ran.
struct Running(Arc<Shared>, bool);

impl Drop for Running {
    fn drop(&mut self) {
        let mut a = self.0.ahead();
        if !self.1 && a.end.is_none() {
            a.end = Some(End::Failed(if std::thread::panicking() {
                Fail::Panicked("the decode hop panicked".into())
            } else {
                // Dropped unrun: the runtime is shutting down.
                Fail::Released
            }));
        }
        let w = a.finish();
        drop(a);
        if let Some(w) = w {
            w.wake();
        }
    }
}

pub(crate) fn join_fail(e: tokio::task::JoinError) -> Fail {
    if e.is_panic() {
        Fail::Panicked(panic_message(&*e.into_panic()))
    } else {
        // The runtime is shutting down.
        Fail::Released
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::ahead::{CAP, MIN_PIECE};
    use crate::decoder::AudioDecoder;

    /// The producer fills the read-ahead to its cap and stops there: the memory held
    /// ahead is bounded by `CAP` plus one piece, whatever the length of the file.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_read_ahead_stops_at_its_cap_plus_one_piece() {
        let path = std::env::temp_dir().join(format!("ca-cap-{}.wav", std::process::id()));
        std::fs::write(&path, crate::shared::tests::wav(2_000_000)).unwrap();
        let sup = tokio_custodian::Supervisor::builder().start().unwrap();
        let mut dec = AudioDecoder::open(&sup.root(), &path).await.unwrap();
        assert_eq!(dec.read_i16(100).await.unwrap().len(), 100);
        let mut waited = 0;
        while dec.shared.ahead().running {
            assert!(waited < 1_000, "the producer never stopped");
            tokio::time::sleep(Duration::from_millis(10)).await;
            waited += 1;
        }
        let (queued, held) = {
            let a = dec.shared.ahead();
            (a.len(), a.held())
        };
        // At most one piece past the cap; 100 below it when the read ran only after the
        // producer had stopped at the cap (above `LOW`, no new producer starts).
        assert!((CAP - 100..CAP + MIN_PIECE).contains(&queued), "{queued}");
        // The empty buffers left for the producer count within the same bound.
        assert!(held < CAP + MIN_PIECE, "{held}");
        // The release drops what was decoded ahead, and the spare buffers.
        let shared = dec.shared.clone();
        drop(dec);
        assert_eq!(shared.ahead().held(), 0);
        sup.shutdown().await;
        std::fs::remove_file(path).unwrap();
    }
}
