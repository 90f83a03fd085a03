//! Fixture generators: WAV files written by `hound`, and raw RIFF bytes for crafted
//! malformed files. Nothing is downloaded.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};

/// A directory for one test's files, removed on drop.
pub struct Dir(pub PathBuf);

impl Dir {
    pub fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(format!("custodian-audio-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }

    pub fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Deterministic pseudo-random numbers (xorshift), so fixtures are reproducible.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// Interleaved integer samples of `bits` bits, full scale, reproducible.
pub fn int_samples(bits: u16, n: usize, seed: u64) -> Vec<i32> {
    let mut r = Rng(seed | 1);
    let (min, max) = (-(1i64 << (bits - 1)), (1i64 << (bits - 1)) - 1);
    let mut v: Vec<i32> = (0..n)
        .map(|_| (min + (r.next() % (max - min + 1) as u64) as i64) as i32)
        .collect();
    // Make sure the extremes are exercised.
    if n >= 2 {
        v[0] = min as i32;
        v[1] = max as i32;
    }
    v
}

/// Writes an integer PCM WAV with hound.
pub fn write_int(path: &Path, channels: u16, rate: u32, bits: u16, samples: &[i32]) {
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: bits,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for &s in samples {
        if bits == 8 {
            w.write_sample(s as i8).unwrap();
        } else {
            w.write_sample(s).unwrap();
        }
    }
    w.finalize().unwrap();
}

/// Writes a 32-bit float WAV with hound.
pub fn write_f32(path: &Path, channels: u16, rate: u32, samples: &[f32]) {
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for &s in samples {
        w.write_sample(s).unwrap();
    }
    w.finalize().unwrap();
}

/// A `fmt ` chunk body: format tag, channels, rate, block align, bits.
pub fn fmt_body(format: u16, channels: u16, rate: u32, align: u16, bits: u16) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend(format.to_le_bytes());
    b.extend(channels.to_le_bytes());
    b.extend(rate.to_le_bytes());
    b.extend((rate.wrapping_mul(u32::from(align))).to_le_bytes());
    b.extend(align.to_le_bytes());
    b.extend(bits.to_le_bytes());
    b
}

/// A chunk: tag, declared length (None: the body's), body, whether to pad odd bodies.
pub struct Chunk {
    pub tag: [u8; 4],
    pub len: Option<u32>,
    pub body: Vec<u8>,
    pub pad: bool,
}

pub fn chunk(tag: &[u8; 4], body: Vec<u8>) -> Chunk {
    Chunk {
        tag: *tag,
        len: None,
        body,
        pad: true,
    }
}

/// RIFF/WAVE bytes from chunks; `riff_len` None: the right one.
pub fn riff(chunks: &[Chunk], riff_len: Option<u32>) -> Vec<u8> {
    let mut body = b"WAVE".to_vec();
    for c in chunks {
        body.extend(c.tag);
        body.extend(c.len.unwrap_or(c.body.len() as u32).to_le_bytes());
        body.extend(&c.body);
        if c.pad && c.body.len() % 2 == 1 {
            body.push(0);
        }
    }
    let mut out = b"RIFF".to_vec();
    out.extend(riff_len.unwrap_or(body.len() as u32).to_le_bytes());
    out.extend(body);
    out
}

/// 16-bit PCM sample bytes and their values.
pub fn pcm16(channels: u16, frames: usize, seed: u64) -> (Vec<u8>, Vec<i16>) {
    let v: Vec<i16> = int_samples(16, frames * usize::from(channels), seed)
        .into_iter()
        .map(|s| s as i16)
        .collect();
    let bytes = v.iter().flat_map(|s| s.to_le_bytes()).collect();
    (bytes, v)
}

/// A well-formed 16-bit PCM WAV with a `fmt ` and a `data` chunk.
pub fn wav16(channels: u16, rate: u32, frames: usize) -> (Vec<u8>, Vec<i16>) {
    let (data, v) = pcm16(channels, frames, 7);
    let bytes = riff(
        &[
            chunk(b"fmt ", fmt_body(1, channels, rate, 2 * channels, 16)),
            chunk(b"data", data),
        ],
        None,
    );
    (bytes, v)
}

/// Peak resident memory of this process, in KiB.
pub fn peak_rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Open fds of this process that point into `dir` (immune to other tests' runtimes).
pub fn fds_under(dir: &Path) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| std::fs::read_link(e.path()).is_ok_and(|t| t.starts_with(dir)))
                .count()
        })
        .unwrap_or(0)
}

/// Waits (up to 10 s) until no fd points into `dir`; returns how many are left.
pub async fn settle_fds(dir: &Path) -> usize {
    for _ in 0..1000 {
        if fds_under(dir) == 0 {
            return 0;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    fds_under(dir)
}

/// A long 16-bit stereo 48 kHz WAV (`secs` seconds) at `dir/name`.
pub fn long_wav(dir: &Dir, name: &str, secs: usize) -> PathBuf {
    let frames = 48_000 * secs;
    let mut data = Vec::with_capacity(frames * 4);
    for i in 0..frames {
        let s = ((i % 200) as i16 - 100) * 300;
        data.extend(s.to_le_bytes());
        data.extend((-s).to_le_bytes());
    }
    let bytes = riff(
        &[
            chunk(b"fmt ", fmt_body(1, 2, 48_000, 4, 16)),
            chunk(b"data", data),
        ],
        None,
    );
    dir.file(name, &bytes)
}
