//! The one decode hop a decoder may have in flight on the blocking pool, and how its
//! outcome is matched to the read that waits for it.
//!
//! Invariant: a decoder has at most one hop in flight, and every operation first waits
//! for it, so hops run in call order even when the futures that started them were
//! dropped. A dropped read's batch is handed to the next read, or put back in front of
//! the queue if that read asked for another size or type.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::task::JoinHandle;

use crate::decoder::AudioDecoder;
use crate::engine::Batch;
use crate::error::{Fail, Op, Result, panic_message};
use crate::sample::Sample;

/// What one blocking hop produced.
#[derive(Debug)]
pub(crate) enum Outcome {
    Batch(Batch),
    Seeked(u64),
}

pub(crate) type Hop = JoinHandle<Result<Outcome, Fail>>;

impl AudioDecoder {
    pub(crate) fn poll_read<S: Sample>(
        &mut self,
        cx: &mut Context<'_>,
        frames: usize,
    ) -> Poll<Result<Vec<S>>> {
        if self.inflight.is_none() {
            // Served from the read-ahead of an earlier hop: no trip to the blocking pool.
            if let Some(v) = self.shared.try_queued::<S>(frames) {
                self.position += (v.len() / usize::from(self.info.channels)) as u64;
                return Poll::Ready(Ok(v));
            }
        }
        let mut carry = None;
        loop {
            if self.inflight.is_some() {
                match ready!(self.poll_hop(cx)) {
                    Ok(Outcome::Batch(b)) if b.frames == frames => match S::unwrap(b.samples) {
                        Ok(v) => {
                            self.position += (v.len() / usize::from(self.info.channels)) as u64;
                            return Poll::Ready(Ok(v));
                        }
                        Err(other) => carry = Some(other),
                    },
                    // A read of another size or type, whose future was dropped: its
                    // frames go back in front of the queue.
                    Ok(Outcome::Batch(b)) => carry = Some(b.samples),
                    Ok(Outcome::Seeked(pos)) => self.position = pos,
                    Err(f) => return Poll::Ready(Err(f.at(Op::Read, &self.path))),
                }
            }
            let shared = self.shared.clone();
            let carry = carry.take();
            self.inflight = Some(tokio::task::spawn_blocking(move || {
                shared.with(|st, released| {
                    if let Some(c) = carry {
                        st.unread(c);
                    }
                    let samples = S::wrap(st.read::<S>(frames, released)?);
                    Ok(Outcome::Batch(Batch { frames, samples }))
                })
            }));
        }
    }

    /// Waits for the hop in flight, if any, and discards a batch it produced.
    pub(crate) fn poll_settle(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.inflight.is_some()
            && let Ok(Outcome::Seeked(pos)) = ready!(self.poll_hop(cx))
        {
            self.position = pos;
        }
        Poll::Ready(())
    }

    pub(crate) fn poll_hop(&mut self, cx: &mut Context<'_>) -> Poll<Result<Outcome, Fail>> {
        let Some(h) = self.inflight.as_mut() else {
            return Poll::Ready(Err(Fail::Released));
        };
        let joined = ready!(Pin::new(h).poll(cx));
        self.inflight = None;
        Poll::Ready(joined.unwrap_or_else(|e| Err(join_fail(e))))
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
