//! Generated WAVs decode sample-exact, with exact frame counts and durations.

mod common;

use std::time::Duration;

use common::{Dir, int_samples, write_f32, write_int};
use tokio_custodian::{ResourceKind, Supervisor};
use tokio_custodian_audio::{AudioDecoder, Container};

const RATES: [u32; 5] = [8_000, 16_000, 22_050, 44_100, 48_000];

/// Decodes `path` to both sample types and checks the declared parameters.
async fn decode(
    sup: &Supervisor,
    path: &std::path::Path,
    rate: u32,
    channels: u16,
    bits: u32,
    frames: u64,
) -> (Vec<i16>, Vec<f32>) {
    let root = sup.root();
    let mut dec = AudioDecoder::open(&root, path).await.unwrap();
    let info = dec.info().clone();
    assert_eq!(info.container, Container::Wav);
    assert_eq!(info.sample_rate, rate);
    assert_eq!(info.channels, channels);
    assert_eq!(info.bits_per_sample, Some(bits), "{}", path.display());
    assert_eq!(info.total_frames, Some(frames));
    let nanos = u128::from(frames) * 1_000_000_000 / u128::from(rate);
    assert_eq!(info.duration, Some(Duration::from_nanos(nanos as u64)));
    let ints: Vec<i16> = dec.read_all().await.unwrap();
    assert_eq!(dec.position(), frames);
    assert!(dec.read_i16(10).await.unwrap().is_empty());
    dec.seek(Duration::ZERO).await.unwrap();
    let floats: Vec<f32> = dec.read_all().await.unwrap();
    dec.close().await.unwrap();
    (ints, floats)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integer_pcm_round_trips_sample_exact() {
    let dir = Dir::new("rt-int");
    let sup = Supervisor::builder().start().unwrap();
    let mut n = 0;
    for &rate in &RATES {
        for channels in [1u16, 2] {
            for bits in [8u16, 16, 24] {
                // A length that is not a multiple of any packet size.
                let frames = (rate / 10 + 37) as usize;
                let v = int_samples(
                    bits,
                    frames * usize::from(channels),
                    u64::from(rate) + u64::from(bits),
                );
                let path = dir.0.join(format!("i{bits}-{channels}-{rate}.wav"));
                write_int(&path, channels, rate, bits, &v);
                let (ints, floats) =
                    decode(&sup, &path, rate, channels, bits.into(), frames as u64).await;
                let shift = 16 - i32::from(bits);
                let want_i16: Vec<i16> = v
                    .iter()
                    .map(|&s| {
                        if shift >= 0 {
                            (s << shift) as i16
                        } else {
                            (s >> -shift) as i16
                        }
                    })
                    .collect();
                assert_eq!(ints, want_i16, "{}", path.display());
                let scale = (1u64 << (bits - 1)) as f32;
                let want_f32: Vec<f32> = v.iter().map(|&s| s as f32 / scale).collect();
                assert_eq!(floats, want_f32, "{}", path.display());
                n += 1;
            }
        }
    }
    let s = sup.stats().kind(ResourceKind::AudioDecoder);
    assert_eq!((s.created, s.released_total(), s.live), (n, n, 0));
    assert!(sup.shutdown().await.is_clean());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn float_pcm_round_trips_sample_exact() {
    let dir = Dir::new("rt-float");
    let sup = Supervisor::builder().start().unwrap();
    for &rate in &RATES {
        for channels in [1u16, 2] {
            let frames = (rate / 10 + 11) as usize;
            let v: Vec<f32> = int_samples(24, frames * usize::from(channels), u64::from(rate))
                .into_iter()
                .map(|s| s as f32 / 8_388_608.0)
                .collect();
            let path = dir.0.join(format!("f32-{channels}-{rate}.wav"));
            write_f32(&path, channels, rate, &v);
            let (ints, floats) = decode(&sup, &path, rate, channels, 32, frames as u64).await;
            assert_eq!(floats, v, "{}", path.display());
            assert_eq!(ints.len(), v.len());
        }
    }
    assert!(sup.shutdown().await.is_clean());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_reads_match_read_all_and_seek_is_frame_exact() {
    let dir = Dir::new("rt-chunks");
    let (bytes, want) = common::wav16(2, 16_000, 10_007);
    let path = dir.file("a.wav", &bytes);
    let sup = Supervisor::builder().start().unwrap();
    let root = sup.root();
    let mut dec = AudioDecoder::open(&root, &path).await.unwrap();
    let mut got = Vec::new();
    // Sizes below, at and above a packet, and alternating sample types.
    for (i, n) in [1usize, 7, 1152, 1153, 5000, 3].iter().cycle().enumerate() {
        let chunk = if i % 3 == 2 {
            dec.read_f32(*n)
                .await
                .unwrap()
                .into_iter()
                .map(|s| (s * 32768.0) as i16)
                .collect()
        } else {
            dec.read_i16(*n).await.unwrap()
        };
        if chunk.is_empty() {
            break;
        }
        assert!(chunk.len() == n * 2 || dec.position() == 10_007);
        got.extend(chunk);
    }
    assert_eq!(got, want);
    for frame in [0u64, 1, 1151, 1152, 1153, 9_999, 10_006] {
        let pos = dec
            .seek(Duration::from_nanos(frame * 62_500))
            .await
            .unwrap();
        assert_eq!(pos, frame);
        let s = dec.read_i16(1).await.unwrap();
        let i = frame as usize * 2;
        assert_eq!(s, want[i..i + 2], "frame {frame}");
    }
    assert_eq!(dec.seek(Duration::from_secs(60)).await.unwrap(), 10_007);
    assert!(dec.read_i16(1).await.unwrap().is_empty());
    drop(dec);
    assert!(sup.shutdown().await.is_clean());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wav_behind_an_id3_tag_is_recognised_and_exact() {
    let dir = Dir::new("rt-id3");
    let (wav, want) = common::wav16(1, 8_000, 777);
    // ID3v2.3 header, 20 bytes of (syncsafe-sized) tag, then the WAV.
    let bytes = [&b"ID3\x03\x00\x00\x00\x00\x00\x14"[..], &[0u8; 20], &wav].concat();
    let path = dir.file("tagged.wav", &bytes);
    let sup = Supervisor::builder().start().unwrap();
    let mut dec = AudioDecoder::open(&sup.root(), &path).await.unwrap();
    assert_eq!(dec.info().container, Container::Wav);
    assert_eq!(dec.info().total_frames, Some(777));
    assert_eq!(dec.read_all::<i16>().await.unwrap(), want);
    drop(dec);
    assert!(sup.shutdown().await.is_clean());
}
