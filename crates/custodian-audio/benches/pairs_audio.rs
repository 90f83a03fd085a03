//! The audio pair of issue 14 for `scripts/bench.sh`: decoding a generated 60 s, 16-bit
//! stereo, 48 kHz WAV in 100 ms reads (4,800 frames) through the managed decoder
//! (registered in the root scope, decoding on the blocking pool) against a raw symphonia
//! loop on the calling thread that hands out the same 100 ms `Vec<i16>` chunks, in two
//! ways: `raw_symphonia` as symphonia documents it (`SampleBuffer::copy_interleaved_ref`,
//! then a copy out of it), and `raw_straight`, which interleaves each 16-bit stereo packet
//! from the decoder's planes straight into the chunk, as the managed decoder does since
//! issue 22's third round (the fair best raw loop for this file).
//! A time ratio of 1.05× is a throughput of 0.95× the raw one.
//!
//! Modes as in custodian's `benches/harness/mod.rs` (`time`, `count`, `list`):
//! `cargo bench -p tokio-custodian-audio --bench pairs_audio -- time 11`.

#![allow(missing_docs)]

#[path = "../../custodian/benches/harness/mod.rs"]
#[macro_use]
mod harness;

use std::fs::File;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use symphonia::core::audio::{AudioBufferRef, SampleBuffer, Signal};
use symphonia::core::codecs::DecoderOptions;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

const RATE: u32 = 48_000;
const FRAMES: usize = 60 * RATE as usize;
/// 100 ms at 48 kHz.
const CHUNK: usize = 4_800;

fn fixture() -> PathBuf {
    let dir = std::env::var_os("CUSTODIAN_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let path = dir.join(format!("custodian-audio-pairs-{}.wav", std::process::id()));
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&path, spec).unwrap();
    let mut i16w = w.get_i16_writer(FRAMES as u32 * 2);
    for i in 0..FRAMES {
        let s = (((i * 7919) % 65_536) as i32 - 32_768) as i16;
        i16w.write_sample(s);
        i16w.write_sample(s.wrapping_neg());
    }
    i16w.flush().unwrap();
    w.finalize().unwrap();
    path
}

/// Probe, make the decoder, decode every packet, hand out 100 ms interleaved chunks
/// (through `SampleBuffer`, or, with `straight`, 16-bit stereo packets interleaved from
/// the planes into the chunk). Returns the number of samples.
fn raw_chunks(path: &Path, straight: bool) -> usize {
    let file = File::open(path).unwrap();
    let mss = MediaSourceStream::new(Box::new(file), Default::default());
    let probed = symphonia::default::get_probe()
        .format(
            &Hint::new(),
            mss,
            &FormatOptions::default(),
            &MetadataOptions::default(),
        )
        .unwrap();
    let mut format = probed.format;
    let track = format.default_track().unwrap();
    let (id, params) = (track.id, track.codec_params.clone());
    let mut decoder = symphonia::default::get_codecs()
        .make(&params, &DecoderOptions::default())
        .unwrap();
    let ch = params.channels.unwrap().count();
    let mut buf: Option<SampleBuffer<i16>> = None;
    let mut chunk = Vec::with_capacity(CHUNK * ch);
    let mut total = 0;
    while let Ok(packet) = format.next_packet() {
        if packet.track_id() != id {
            continue;
        }
        let decoded = decoder.decode(&packet).unwrap();
        if straight && let AudioBufferRef::S16(p) = &decoded {
            let (l, r) = (p.chan(0), p.chan(1));
            let mut at = 0;
            while at < l.len() {
                let take = ((CHUNK * ch - chunk.len()) / 2).min(l.len() - at);
                chunk.extend(
                    l[at..at + take]
                        .iter()
                        .zip(&r[at..at + take])
                        .flat_map(|(&a, &b)| [a, b]),
                );
                at += take;
                if chunk.len() == CHUNK * ch {
                    total += chunk.len();
                    black_box(std::mem::replace(
                        &mut chunk,
                        Vec::with_capacity(CHUNK * ch),
                    ));
                }
            }
            continue;
        }
        let b = buf
            .get_or_insert_with(|| SampleBuffer::new(decoded.capacity() as u64, *decoded.spec()));
        b.copy_interleaved_ref(decoded);
        let mut s = b.samples();
        while !s.is_empty() {
            let take = (CHUNK * ch - chunk.len()).min(s.len());
            chunk.extend_from_slice(&s[..take]);
            s = &s[take..];
            if chunk.len() == CHUNK * ch {
                total += chunk.len();
                black_box(std::mem::replace(
                    &mut chunk,
                    Vec::with_capacity(CHUNK * ch),
                ));
            }
        }
    }
    total + black_box(chunk).len()
}

fn main() {
    let rt = harness::runtime();
    let path = Arc::new(fixture());
    assert_eq!(raw_chunks(&path, false), FRAMES * 2);
    assert_eq!(raw_chunks(&path, true), FRAMES * 2);
    let base = path.parent().unwrap().to_path_buf();
    let sup = rt.block_on(async {
        tokio_custodian::Supervisor::builder()
            .temp_base(base)
            .start()
            .unwrap()
    });
    let root = sup.root();
    let build = |name: &str| {
        (name == "audio_100ms").then(|| harness::Pair {
            name: "audio_100ms",
            batch: 1,
            warm: 1,
            sides: vec![
                (
                    "managed",
                    per_op!((root.clone(), path.clone()), |s| {
                        let mut dec = tokio_custodian_audio::AudioDecoder::open(&s.0, &*s.1)
                            .await
                            .unwrap();
                        let mut n = 0;
                        loop {
                            let v = dec.read_i16(CHUNK).await.unwrap();
                            if v.is_empty() {
                                break;
                            }
                            n += v.len();
                        }
                        assert_eq!(n, FRAMES * 2);
                        dec.close().await.unwrap();
                    }),
                ),
                (
                    "raw_symphonia",
                    per_op!(path.clone(), |p| assert_eq!(
                        raw_chunks(&p, false),
                        FRAMES * 2
                    )),
                ),
                (
                    "raw_straight",
                    per_op!(path.clone(), |p| assert_eq!(
                        raw_chunks(&p, true),
                        FRAMES * 2
                    )),
                ),
            ],
            unit: harness::Unit::Ms,
        })
    };
    harness::main(&rt, &["audio_100ms"], build);
    rt.block_on(sup.shutdown());
    let _ = std::fs::remove_file(&*path);
}
