//! The read-ahead decodes in the background while reads are served from it: a reader
//! that works between reads does not wait for the blocking pool, and what was decoded
//! ahead is exact, in order, and gone with the decoder.

mod common;

use std::future::Future;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use common::{Dir, long_wav, settle_fds};
use tokio_custodian::{ResourceKind, Supervisor};
use tokio_custodian_audio::AudioDecoder;

/// Polls `dec.read_i16(frames)` once: `Some` if it was served without waiting.
fn read_now(dec: &mut AudioDecoder, frames: usize) -> Option<Vec<i16>> {
    let mut read = std::pin::pin!(dec.read_i16(frames));
    match read.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(r) => Some(r.unwrap()),
        Poll::Pending => None,
    }
}

/// 100 ms reads of 48 kHz stereo with the caller busy between them (a sleep here): the
/// decoder fills its read-ahead meanwhile, so a run of reads longer than one hop's worth
/// (64 Ki samples, about 7 reads) never waits. Before the background fill, the 7th read
/// after a pause waited for a hop to the blocking pool (two thread wake-ups).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_reader_is_served_from_the_background_read_ahead() {
    let dir = Dir::new("ahead-busy");
    let path = long_wav(&dir, "a.wav", 10);
    let sup = Supervisor::builder().start().unwrap();
    let mut dec = AudioDecoder::open(&sup.root(), &path).await.unwrap();
    let mut got = dec.read_i16(4_800).await.unwrap();
    // The caller "works" on its chunk; the decoder fills the read-ahead meanwhile (a few
    // hundred µs of decoding, given a generous margin for a loaded machine).
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in 0..25 {
        let chunk = read_now(&mut dec, 4_800).unwrap_or_else(|| panic!("read {i} waited"));
        assert_eq!(chunk.len(), 9_600);
        got.extend(chunk);
    }
    // Then read on as fast as possible: every frame in order, exactly.
    loop {
        let chunk = dec.read_i16(4_800).await.unwrap();
        if chunk.is_empty() {
            break;
        }
        got.extend(chunk);
    }
    assert_eq!(got.len(), 2 * 480_000);
    for (i, pair) in got.chunks(2).enumerate() {
        let s = ((i % 200) as i16 - 100) * 300;
        assert_eq!(pair, [s, -s], "frame {i}");
    }
    assert_eq!(dec.position(), 480_000);
    dec.close().await.unwrap();
    assert_eq!(settle_fds(&dir.0).await, 0);
    assert!(sup.shutdown().await.is_clean());
}

/// A seek while the read-ahead is full, or while it is being filled, drops what was
/// decoded ahead: the reads after it start exactly at the seek, in either sample type.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seek_drops_the_read_ahead_whether_it_is_full_or_filling() {
    let dir = Dir::new("ahead-seek");
    let path = long_wav(&dir, "a.wav", 10);
    let sup = Supervisor::builder().start().unwrap();
    let mut dec = AudioDecoder::open(&sup.root(), &path).await.unwrap();
    let frame = |i: u64| {
        let s = ((i % 200) as i16 - 100) * 300;
        [s, -s]
    };
    for (k, pause) in [0u64, 0, 50, 1, 0].into_iter().enumerate() {
        let first = dec.read_i16(4_800).await.unwrap();
        assert_eq!(first[..2], frame(dec.position() - 4_800));
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let to = 12_345 * (k as u64 + 1);
        let at = dec
            .seek(Duration::from_micros(to * 1_000_000 / 48_000 + 1))
            .await;
        assert_eq!(at.unwrap(), to);
        let v = dec.read_i16(3).await.unwrap();
        assert_eq!(v, [frame(to), frame(to + 1), frame(to + 2)].concat());
        let f = dec.read_f32(1).await.unwrap();
        assert_eq!(f.len(), 2);
        assert!((f[0] - f32::from(frame(to + 3)[0]) / 32_768.0).abs() < 1e-6);
    }
    drop(dec);
    assert_eq!(settle_fds(&dir.0).await, 0);
    let st = sup.stats().kind(ResourceKind::AudioDecoder);
    assert_eq!((st.created, st.live), (1, 0));
    assert!(sup.shutdown().await.is_clean());
}
