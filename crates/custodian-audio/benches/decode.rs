//! Decode throughput of a generated 60 s 16-bit stereo 48 kHz WAV: the managed decoder
//! (registered in a scope, decoding on the blocking pool) against raw symphonia on the
//! calling thread, in the same run.
//!
//! Run: `cargo bench -p tokio-custodian-audio --bench decode`. The ratio is
//! `raw time / managed time` (1.0 means no overhead).

// criterion's macros generate undocumented items.
#![allow(missing_docs)]

use std::fs::File;
use std::path::{Path, PathBuf};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::DecoderOptions;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

const RATE: u32 = 48_000;
const FRAMES: usize = 60 * RATE as usize;

fn fixture() -> PathBuf {
    let path =
        std::env::temp_dir().join(format!("custodian-audio-bench-{}.wav", std::process::id()));
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

/// The same work without custodian: probe, make the decoder, decode every packet into
/// one interleaved `Vec<i16>`.
fn raw(path: &Path) -> Vec<i16> {
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
    let mut out = Vec::with_capacity(params.n_frames.unwrap() as usize * ch);
    let mut buf: Option<SampleBuffer<i16>> = None;
    while let Ok(packet) = format.next_packet() {
        if packet.track_id() != id {
            continue;
        }
        let decoded = decoder.decode(&packet).unwrap();
        let b = buf
            .get_or_insert_with(|| SampleBuffer::new(decoded.capacity() as u64, *decoded.spec()));
        b.copy_interleaved_ref(decoded);
        out.extend_from_slice(b.samples());
    }
    out
}

/// The managed decoder's `read_all`, as a user would call it.
fn managed(rt: &tokio::runtime::Runtime, root: &tokio_custodian::Scope, path: &Path) -> Vec<i16> {
    rt.block_on(async {
        let mut dec = tokio_custodian_audio::AudioDecoder::open(root, path)
            .await
            .unwrap();
        let v: Vec<i16> = dec.read_all().await.unwrap();
        dec.close().await.unwrap();
        v
    })
}

/// Alternates raw and managed runs so that drift of a shared VM hits both alike; prints
/// the median of the per-pair ratios (raw time / managed time).
fn interleaved(rt: &tokio::runtime::Runtime, root: &tokio_custodian::Scope, path: &Path) {
    let mut ratios = Vec::new();
    for i in 0..41 {
        let t = std::time::Instant::now();
        std::hint::black_box(raw(path));
        let r = t.elapsed();
        let t = std::time::Instant::now();
        std::hint::black_box(managed(rt, root, path));
        let m = t.elapsed();
        if i > 0 {
            ratios.push(r.as_secs_f64() / m.as_secs_f64());
        }
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "interleaved raw/managed read_all ratio over {} pairs: median {:.3} (p25 {:.3}, p75 {:.3})",
        ratios.len(),
        ratios[ratios.len() / 2],
        ratios[ratios.len() / 4],
        ratios[3 * ratios.len() / 4],
    );
}

fn bench(c: &mut Criterion) {
    let path = fixture();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let sup = rt.block_on(async { tokio_custodian::Supervisor::builder().start().unwrap() });
    let root = sup.root();
    assert_eq!(raw(&path).len(), FRAMES * 2);
    interleaved(&rt, &root, &path);

    let mut g = c.benchmark_group("decode_60s_s16_stereo_48k");
    g.throughput(Throughput::Elements(FRAMES as u64));
    g.sample_size(30);
    g.bench_function("raw_symphonia", |b| b.iter(|| raw(&path)));
    // Control: the same raw work, moved to the blocking pool as the managed decoder does.
    g.bench_function("raw_symphonia_on_blocking_pool", |b| {
        b.iter(|| {
            let p = path.clone();
            rt.block_on(rt.spawn_blocking(move || raw(&p))).unwrap()
        })
    });
    g.bench_function("managed_read_all", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut dec = tokio_custodian_audio::AudioDecoder::open(&root, &path)
                    .await
                    .unwrap();
                let v: Vec<i16> = dec.read_all().await.unwrap();
                dec.close().await.unwrap();
                v
            })
        })
    });
    for chunk in [48_000usize, 4_800] {
        g.bench_function(format!("managed_chunks_{chunk}"), |b| {
            b.iter(|| {
                rt.block_on(async {
                    let mut dec = tokio_custodian_audio::AudioDecoder::open(&root, &path)
                        .await
                        .unwrap();
                    let mut n = 0;
                    loop {
                        let v = dec.read_i16(chunk).await.unwrap();
                        if v.is_empty() {
                            break;
                        }
                        n += v.len();
                    }
                    dec.close().await.unwrap();
                    n
                })
            })
        });
    }
    g.finish();
    rt.block_on(sup.shutdown());
    let _ = std::fs::remove_file(path);
}

criterion_group!(benches, bench);
criterion_main!(benches);
