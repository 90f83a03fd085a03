//! The buffers a sequential reader receives are allocated on the reader's own thread
//! (the reads leave the producer empty buffers to decode into), so the caller frees them
//! into its own allocator arena. When the producer on the blocking pool allocated them,
//! every buffer the caller freed went back to the producer's arena, and the two threads
//! contended for that arena's lock (the producer waited on a futex several times per
//! second of audio: part of the 100 ms reads' gap to a raw symphonia loop).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{Dir, long_wav};
use tokio_custodian::Supervisor;
use tokio_custodian_audio::AudioDecoder;

/// One 100 ms read of 48 kHz stereo as `i16`, in bytes.
const READ_BYTES: usize = 4_800 * 2 * 2;
const SLOTS: usize = 1 << 16;

/// For each allocation of `READ_BYTES`: its address, with the low bit set if the reader's
/// thread made it. A slot may be overwritten by another address (then the check below
/// counts that buffer as not the reader's: the count can only come out low).
static LAST: [AtomicUsize; SLOTS] = [const { AtomicUsize::new(0) }; SLOTS];

thread_local! {
    static READER: Cell<bool> = const { Cell::new(false) };
}

fn slot(p: usize) -> &'static AtomicUsize {
    &LAST[(p >> 4).wrapping_mul(0x9E37_79B9) % SLOTS]
}

struct Tracking;

// SAFETY: every call is forwarded to `System` with the caller's arguments; the
// bookkeeping only stores integers in atomics and never allocates.
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, passed on as is.
        let p = unsafe { System.alloc(layout) };
        if layout.size() == READ_BYTES && !p.is_null() {
            let reader = READER.try_with(Cell::get).unwrap_or(false);
            slot(p as usize).store(p as usize | usize::from(reader), Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        // SAFETY: as above: `p` and `layout` come from a matching `alloc`.
        unsafe { System.dealloc(p, layout) }
    }
}

#[global_allocator]
static ALLOC: Tracking = Tracking;

/// A reader on a current-thread runtime (this thread) reads 10 s of 48 kHz stereo in
/// 100 ms reads as fast as it can; after the first fill of the read-ahead (27 reads),
/// the pieces it gets were allocated on its own thread.
#[tokio::test(flavor = "current_thread")]
async fn a_sequential_readers_buffers_come_from_its_own_thread() {
    READER.with(|r| r.set(true));
    let dir = Dir::new("reader-buffers");
    let path = long_wav(&dir, "a.wav", 10);
    let sup = Supervisor::builder().start().unwrap();
    let mut dec = AudioDecoder::open(&sup.root(), &path).await.unwrap();
    let (mut reads, mut own) = (0, 0);
    let mut frame = 0usize;
    loop {
        let chunk = dec.read_i16(4_800).await.unwrap();
        if chunk.is_empty() {
            break;
        }
        let p = chunk.as_ptr() as usize;
        reads += 1;
        own += usize::from(slot(p).load(Ordering::Relaxed) == p | 1);
        // Exact and in order whoever allocated the buffer.
        for pair in chunk.chunks(2) {
            let s = ((frame % 200) as i16 - 100) * 300;
            assert_eq!(pair, [s, -s], "frame {frame}");
            frame += 1;
        }
    }
    assert_eq!((reads, frame), (100, 480_000));
    // 100 reads; the first read-ahead (about 27 reads' worth) is the producer's own.
    assert!(own >= 50, "only {own} of {reads} buffers were the reader's");
    dec.close().await.unwrap();
    assert!(sup.shutdown().await.is_clean());
}
