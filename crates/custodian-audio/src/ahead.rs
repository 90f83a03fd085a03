//! The read-ahead: pieces decoded by a background hop, waiting for the guard's reads.
//!
//! One *producer* hop at a time runs on the blocking pool (see `hop.rs`): it decodes
//! pieces of the size the reads ask for and appends them here, while the reads are served
//! from here on the async thread. A sequential reader therefore waits for the blocking
//! pool only when it is faster than the decoder, and then for a batch of pieces, not one
//! hop per read (each hop costs two thread wake-ups).
//!
//! Invariants (under `Shared::ahead`, a lock held only for a push, a take or a clear,
//! never while decoding and never together with the state's lock):
//! - `pieces` are in stream order, and `end` (if set) is what the producer met after the
//!   last of them: the end of the stream or an error, handed out only once the pieces
//!   before it have been;
//! - `running` is set by the guard when it starts a producer and cleared when that
//!   producer is done, on every path (see `Running` in `hop.rs`), and the waiter woken
//!   then: a waiting read never hangs;
//! - a producer stops before a piece once `len() >= target()`: the read-ahead holds at
//!   most `CAP` samples (or what a waiting read asked for) plus one piece;
//! - `spare` holds empty buffers of the reads' type that the reads allocated for the
//!   producer to decode into, only while `len() + spare_len <= CAP`: they add nothing to
//!   that bound. They are made on the reader's thread so that the buffers the caller
//!   frees go back to the reader's own allocator arena: a buffer the producer allocated
//!   and the caller freed made both threads contend for the producer's arena lock (a
//!   futex wait of the producer several times per second of audio).

use std::collections::VecDeque;
use std::task::Waker;

use crate::error::Fail;
use crate::sample::{Sample, Samples};

/// The read-ahead a producer fills before it stops, in samples (512 KiB as `i16`, 1 MiB
/// as `f32`): about 2.7 s of 48 kHz stereo.
pub(crate) const CAP: usize = 1 << 18;
/// A read that leaves less than this queued starts a producer (if none runs), so that
/// the next pieces are decoded while the reader works on this one.
pub(crate) const LOW: usize = CAP / 2;
/// A waiting read is woken once this much (or what it asked for, if more) is queued, or
/// when the producer stops: a reader faster than the decoder wakes once per batch, not
/// once per piece (each wake costs the producer a few µs). The first read of a decoder
/// waits for this much, as much as it did when each read decoded ahead in its own hop;
/// the batch doubles at each wake up to [`WAKE_MAX`], and starts again at a seek.
pub(crate) const WAKE: usize = 1 << 16;
/// The largest batch a waiting read is woken for: the producer still has a quarter of
/// [`CAP`] of room to decode into while the reader wakes up.
pub(crate) const WAKE_MAX: usize = CAP / 4 * 3;
/// The smallest piece a producer decodes, in samples: tiny reads are served from larger
/// pieces rather than making a piece (an allocation, two locks) each.
pub(crate) const MIN_PIECE: usize = 1 << 12;

/// What the producer met after the last piece.
#[derive(Debug)]
pub(crate) enum End {
    /// The end of the stream: no more pieces until a seek.
    Eof,
    /// A decode error, for the read that needs what comes after the pieces.
    Failed(Fail),
}

/// The queue and the producer's orders; see the module's invariants.
#[derive(Debug, Default)]
pub(crate) struct Ahead {
    pieces: VecDeque<Samples>,
    /// Samples of the front piece already handed out.
    head: usize,
    /// Samples queued (all pieces, less `head`).
    len: usize,
    pub(crate) end: Option<End>,
    pub(crate) running: bool,
    /// Set by a seek: the producer stops before its next piece.
    pub(crate) stop: bool,
    /// The sample type the reads ask for (`true` for `f32`); a producer of the other
    /// type stops before its next piece.
    pub(crate) f32: bool,
    /// The piece size the reads ask for, in frames.
    pub(crate) piece: usize,
    /// Samples per frame.
    pub(crate) channels: usize,
    /// The read waiting for the producer, and how many samples it needs.
    waiter: Option<(Waker, usize)>,
    /// The batch a waiting read is woken for (`WAKE` doubling up to `WAKE_MAX`); zero
    /// stands for `WAKE`.
    batch: usize,
    /// Empty buffers for the producer's next pieces, made by the reads.
    spare: Vec<Samples>,
    /// Their capacity, in samples.
    spare_len: usize,
}

impl Ahead {
    /// Samples queued.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Samples queued plus the capacity of the spare buffers: what the read-ahead holds.
    pub(crate) fn held(&self) -> usize {
        self.len + self.spare_len
    }

    /// The fill at which a producer stops: `CAP`, or more for a waiting read.
    pub(crate) fn target(&self) -> usize {
        self.waiter.as_ref().map_or(CAP, |w| w.1.max(CAP))
    }

    /// The frames of the producer's next piece: the reads' size, or less so that it ends
    /// where a read of that size will end. Reads take from the queue's head in steps of
    /// their size, so once the queue is out of step with them (after reads of another
    /// size) one shorter piece puts it back in step, and the pieces after it are handed
    /// out whole, without a copy.
    pub(crate) fn next_piece(&self) -> usize {
        let ch = self.channels.max(1);
        let step = self.piece.saturating_mul(ch).max(1);
        match self.len % step {
            0 => self.piece,
            r => (step - r) / ch,
        }
    }

    /// Hands out up to `want` samples as `S`. A whole piece of exactly that size and
    /// type is handed out as it is (no copy): the common case of equal reads.
    pub(crate) fn take<S: Sample>(&mut self, want: usize) -> Vec<S> {
        if self.head == 0
            && self.pieces.front().is_some_and(|p| p.len() == want)
            && let Some(p) = self.pieces.pop_front()
        {
            match S::unwrap(p) {
                Ok(v) => {
                    self.len -= v.len();
                    return v;
                }
                Err(p) => self.pieces.push_front(p),
            }
        }
        let mut out = Vec::with_capacity(want.min(self.len));
        while out.len() < want
            && let Some(p) = self.pieces.front()
        {
            let k = (want - out.len()).min(p.len() - self.head);
            p.copy_to(self.head, k, &mut out);
            self.len -= k;
            if self.head + k == p.len() {
                self.pieces.pop_front();
                self.head = 0;
            } else {
                self.head += k;
            }
        }
        out
    }

    /// After a read that took samples: leaves the producer an empty buffer for one piece
    /// of `samples`, allocated here (on the reader's thread), if the producer may still
    /// decode and the read-ahead and its buffers stay within `CAP`.
    pub(crate) fn give_spare<S: Sample>(&mut self, samples: usize) {
        if self.end.is_none() && self.f32 == S::IS_F32 && samples <= CAP.saturating_sub(self.held())
        {
            let v = Vec::<S>::with_capacity(samples);
            self.spare_len += v.capacity();
            self.spare.push(S::wrap(v));
        }
    }

    /// An empty buffer for the producer's next piece: a spare of type `S` if there is
    /// one, else a new (empty) vector.
    pub(crate) fn take_spare<S: Sample>(&mut self) -> Vec<S> {
        while let Some(s) = self.spare.pop() {
            let v = S::unwrap(s);
            let cap = v.as_ref().map_or_else(Samples::capacity, Vec::capacity);
            self.spare_len -= cap;
            if let Ok(v) = v {
                return v;
            }
        }
        Vec::new()
    }

    /// Takes the spare buffers out (to drop them outside the lock).
    pub(crate) fn take_spares(&mut self) -> Vec<Samples> {
        self.spare_len = 0;
        std::mem::take(&mut self.spare)
    }

    /// Appends a piece; returns the waiter to wake if it has what it waits for.
    pub(crate) fn push(&mut self, piece: Samples) -> Option<Waker> {
        self.len += piece.len();
        self.pieces.push_back(piece);
        let batch = self.batch.max(WAKE);
        match &self.waiter {
            Some((_, need)) if self.len >= (*need).max(batch) => {
                self.batch = (batch * 2).min(WAKE_MAX);
                self.waiter.take().map(|w| w.0)
            }
            _ => None,
        }
    }

    /// Registers the read that waits for `need` samples (or for the producer to stop).
    pub(crate) fn wait(&mut self, waker: &Waker, need: usize) {
        match &mut self.waiter {
            Some((w, n)) => {
                w.clone_from(waker);
                *n = need;
            }
            None => self.waiter = Some((waker.clone(), need)),
        }
    }

    /// No read waits any more (one that waited was dropped, or is served now).
    pub(crate) fn unwait(&mut self) {
        self.waiter = None;
    }

    /// The producer is done: returns the waiter to wake.
    pub(crate) fn finish(&mut self) -> Option<Waker> {
        self.running = false;
        self.waiter.take().map(|w| w.0)
    }

    /// Drops everything queued and the end marker (a seek, or the release).
    pub(crate) fn clear(&mut self) {
        self.pieces.clear();
        self.head = 0;
        self.len = 0;
        self.end = None;
        self.batch = 0;
        self.spare.clear();
        self.spare_len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_keep_order_across_pieces_sizes_and_types() {
        let mut a = Ahead::default();
        assert!(a.push(Samples::I16(vec![1, 2, 3])).is_none());
        a.push(Samples::I16(vec![4, 5]));
        // A piece of exactly the size asked for moves out whole.
        assert_eq!(a.take::<i16>(3), [1, 2, 3]);
        a.push(Samples::F32(vec![0.5, -1.0]));
        assert_eq!(a.len(), 4);
        assert_eq!(a.take::<i16>(1), [4]);
        let f: Vec<f32> = a.take(10);
        assert_eq!(f.len(), 3);
        assert!((f[0] - 5.0 / 32_768.0).abs() < 1e-6 && f[1] == 0.5 && f[2] == -1.0);
        assert_eq!((a.len(), a.take::<i16>(4)), (0, vec![]));
    }

    /// Pieces decoded for reads of another size (here: smaller ones) leave the queue out
    /// of step with the reads that follow: one shorter piece puts it back in step, and
    /// every piece after it is handed out whole (the very vector that was pushed).
    /// Before, every later read was copied out of two pieces under the queue's lock,
    /// for the rest of the stream.
    #[test]
    fn pieces_fall_back_in_step_with_the_reads() {
        let mut a = Ahead {
            channels: 2,
            piece: 2_048,
            ..Ahead::default()
        };
        let mut next = 0i16;
        let mut push = |a: &mut Ahead| {
            let n = a.next_piece() * 2;
            let v: Vec<i16> = (0..n).map(|i| next.wrapping_add(i as i16)).collect();
            next = next.wrapping_add(n as i16);
            a.push(Samples::I16(v));
        };
        for _ in 0..5 {
            push(&mut a);
        }
        // The reads now ask for 4,800 frames; the producer follows from now on.
        a.piece = 4_800;
        let mut expect = 0i16;
        let (mut whole, mut reads) = (0, 0);
        for _ in 0..12 {
            push(&mut a);
            while a.len() >= 9_600 {
                let front = match a.pieces.front() {
                    Some(Samples::I16(v)) if a.head == 0 && v.len() == 9_600 => v.as_ptr(),
                    _ => std::ptr::null(),
                };
                let v = a.take::<i16>(9_600);
                whole += usize::from(v.as_ptr() == front);
                reads += 1;
                assert_eq!(v[0], expect);
                expect = expect.wrapping_add(9_600);
            }
        }
        assert_eq!(a.len() % 9_600, 0);
        // Only the reads that cover the five smaller pieces were copies (3 of them).
        assert_eq!((whole, reads), (11, 14));
    }

    #[test]
    fn a_waiter_is_woken_once_it_has_a_batch_or_what_it_asked_for() {
        let mut a = Ahead::default();
        a.wait(std::task::Waker::noop(), 10);
        assert_eq!(a.target(), CAP);
        assert!(
            a.push(Samples::I16(vec![0; 10])).is_none(),
            "less than a batch"
        );
        assert!(a.push(Samples::I16(vec![0; WAKE])).is_some());
        // The next batch is twice as large.
        a.take::<i16>(WAKE + 10);
        a.wait(std::task::Waker::noop(), 10);
        assert!(a.push(Samples::I16(vec![0; WAKE])).is_none());
        assert!(a.push(Samples::I16(vec![0; WAKE])).is_some());
        a.take::<i16>(2 * WAKE);
        a.wait(std::task::Waker::noop(), CAP * 2);
        assert_eq!(a.target(), CAP * 2);
        assert!(a.push(Samples::I16(vec![0; CAP])).is_none());
        a.running = true;
        assert!(a.finish().is_some() && !a.running);
        a.clear();
        assert_eq!(a.len(), 0);
    }
}
