//! The decoding library's side: runs only on blocking threads, never on async workers.
//!
//! Every entry point here is called inside `catch_unwind` by the guard (see
//! `decoder.rs`), so a panic in the library becomes an error and the state is dropped.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use symphonia::core::codecs::{CODEC_TYPE_NULL, Decoder, DecoderOptions};
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::{FormatOptions, FormatReader, SeekMode, SeekTo};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::{Limit, MetadataOptions};
use symphonia::core::probe::Hint;

use crate::error::{Fail, Op};
use crate::info::{AudioInfo, Container};
use crate::limits::Limits;
use crate::open::open_regular;
use crate::sample::{Buffers, Queue, Sample, interleave};
use crate::sniff::{Patched, sniff};

/// Largest packet (in frames) a codec may announce before its buffers are sized.
const MAX_PACKET_FRAMES: u64 = 1 << 20;
/// Initial reservation for reads of unknown length, in samples.
const RESERVE_UNKNOWN: usize = 1 << 22;
/// Undecodable packets in a row before decoding gives up.
const MAX_BAD_PACKETS: u32 = 8;

/// An open stream: reader, decoder and what has been decoded but not handed out.
pub(crate) struct State {
    format: Box<dyn FormatReader>,
    decoder: Box<dyn Decoder>,
    track: u32,
    channels: usize,
    total: Option<u64>,
    /// Whether `total` is exact (counted from the file, not declared by it).
    exact: bool,
    max_frames: u64,
    bufs: Buffers,
    /// Decoded samples not handed out yet after a switch of sample type (the rest of a
    /// packet otherwise stays in `bufs`, see `Buffers::take_rest`).
    queue: Queue,
    /// Frames to drop after an accurate seek that landed early.
    skip: u64,
    /// Frame position of the next frame handed out.
    pub(crate) position: u64,
    eof: bool,
    bad: u32,
}

/// Opens, checks and probes `path`, and makes a decoder for its first audio track.
pub(crate) fn open(path: &Path, limits: &Limits) -> Result<(State, AudioInfo), (Op, Fail)> {
    let open = |f| (Op::Open, f);
    let (file, len) = open_regular(path).map_err(open)?;
    let sniffed = sniff(&file, len, limits).map_err(open)?;
    let probe = |f| (Op::Probe, f);
    let source = Patched::new(file, len, sniffed.patches);
    let mss = MediaSourceStream::new(Box::new(source), Default::default());
    let mut hint = Hint::new();
    if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
        hint.with_extension(ext);
    }
    let meta_opts = MetadataOptions {
        limit_metadata_bytes: Limit::Maximum(limits.chunk_bytes as usize),
        limit_visual_bytes: Limit::Maximum(limits.chunk_bytes as usize),
    };
    let probed = symphonia::default::get_probe()
        .format(&hint, mss, &FormatOptions::default(), &meta_opts)
        .map_err(|e| probe(Fail::from_symphonia(e)))?;
    let format = probed.format;
    let track = format
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
        .ok_or_else(|| probe(Fail::malformed("no audio track")))?;
    let p = &track.codec_params;
    let channels = p
        .channels
        .map(|c| c.count())
        .ok_or_else(|| probe(Fail::malformed("channel count not declared")))?;
    let limit = |what, value: u64, limit: u64| {
        if value > limit {
            Err(probe(Fail::Limit { what, value, limit }))
        } else {
            Ok(())
        }
    };
    if channels == 0 {
        return Err(probe(Fail::malformed("zero channels")));
    }
    limit("channels", channels as u64, limits.channels.into())?;
    let rate = p.sample_rate.unwrap_or(0);
    if rate == 0 {
        return Err(probe(Fail::malformed("zero sample rate")));
    }
    limit("sample rate", rate.into(), limits.sample_rate.into())?;
    let exact = sniffed.wav_frames.is_some();
    let total = sniffed.wav_frames.or(p.n_frames);
    let declared = match sniffed.wav_frames {
        Some(_) => sniffed.wav_declared,
        None => p.n_frames,
    };
    if let Some(n) = total {
        limit("declared frames", n, limits.frames)?;
        let secs = n / u64::from(rate);
        limit("declared seconds", secs, limits.duration.as_secs())?;
    }
    if let Some(m) = p.max_frames_per_packet {
        limit("frames per packet", m, MAX_PACKET_FRAMES)?;
    }
    let codecs = symphonia::default::get_codecs();
    let codec = codecs
        .get_codec(p.codec)
        .map_or("unknown", |d| d.short_name)
        .to_owned();
    let decoder = codecs
        .make(p, &DecoderOptions::default())
        .map_err(|e| probe(Fail::from_symphonia(e)))?;
    let info = AudioInfo {
        container: match sniffed.container {
            Container::Other => Container::Other,
            c => c,
        },
        codec,
        sample_rate: rate,
        channels: channels as u16,
        bits_per_sample: p.bits_per_sample,
        total_frames: total,
        declared_frames: declared,
        duration: total.map(|n| AudioInfo::duration_of(n, rate)),
    };
    let track = track.id;
    Ok((
        State {
            format,
            decoder,
            track,
            channels,
            total,
            exact,
            max_frames: limits.frames,
            bufs: Buffers::default(),
            queue: Queue::default(),
            skip: 0,
            position: 0,
            eof: false,
            bad: 0,
        },
        info,
    ))
}

impl State {
    /// Decodes up to `frames` frames (fewer only at the end of the stream) as interleaved
    /// samples into `out` (emptied first; its capacity is reused). Stops early with
    /// `Released` once `released` is set.
    pub(crate) fn read<S: Sample>(
        &mut self,
        frames: usize,
        released: &AtomicBool,
        mut out: Vec<S>,
    ) -> Result<Vec<S>, Fail> {
        let ch = self.channels;
        let want = frames.saturating_mul(ch);
        let hint = match self.total {
            Some(t) if self.exact => t.saturating_sub(self.position) as usize * ch + ch,
            Some(t) => (t.saturating_sub(self.position) as usize * ch).min(RESERVE_UNKNOWN),
            None => RESERVE_UNKNOWN,
        };
        out.clear();
        out.reserve(want.min(hint));
        // In stream order: a rest of the other type (moved to the queue), the queue, the
        // rest of the last packet; the rest is set only once the queue is empty.
        self.bufs.spill::<S>(&mut self.queue);
        self.queue.take(want, &mut out);
        self.bufs.take_rest(want - out.len(), &mut out);
        while out.len() < want && !self.eof {
            // Acquire pairs with the Release store of the reclaim: stop promptly once the
            // decoder has been given up.
            if released.load(Ordering::Acquire) {
                return Err(Fail::Released);
            }
            let packet = match self.format.next_packet() {
                Ok(p) => p,
                Err(SymError::IoError(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    self.eof = true;
                    break;
                }
                Err(e) => return Err(Fail::from_symphonia(e)),
            };
            if packet.track_id() != self.track {
                continue;
            }
            let decoded = match self.decoder.decode(&packet) {
                Ok(d) => d,
                Err(SymError::DecodeError(m)) => {
                    self.bad += 1;
                    if self.bad > MAX_BAD_PACKETS {
                        return Err(Fail::malformed(m));
                    }
                    continue;
                }
                Err(e) => return Err(Fail::from_symphonia(e)),
            };
            self.bad = 0;
            if decoded.spec().channels.count() != ch {
                return Err(Fail::malformed("channel count changed mid-stream"));
            }
            if decoded.frames() == 0 {
                continue;
            }
            // A packet that fits whole goes straight into `out` (the rest is empty here:
            // it is set only when `out` is full).
            let skip = (self.skip as usize).min(decoded.frames());
            if (decoded.frames() - skip).saturating_mul(ch) <= want - out.len()
                && interleave(&decoded, skip, &mut out)
            {
                self.skip -= skip as u64;
                self.check_frames(out.len())?;
                continue;
            }
            let slot = S::buffer(&mut self.bufs);
            let buf = match slot {
                Some(b) if b.capacity() >= decoded.capacity() * ch => b,
                _ => slot.insert(symphonia::core::audio::SampleBuffer::new(
                    decoded.capacity() as u64,
                    *decoded.spec(),
                )),
            };
            buf.copy_interleaved_ref(decoded);
            let s = buf.samples();
            let mut from = 0;
            if self.skip > 0 {
                from = (self.skip as usize).saturating_mul(ch).min(s.len());
                self.skip -= (from / ch) as u64;
            }
            let k = (want - out.len()).min(s.len() - from);
            out.extend_from_slice(&s[from..from + k]);
            // The rest stays where it is for the next read: copied once, not twice.
            let end = s.len();
            self.bufs.set_rest::<S>(from + k, end);
            self.check_frames(out.len())?;
        }
        self.position += (out.len() / ch) as u64;
        Ok(out)
    }

    /// Moves to frame `ts`; returns the new position.
    pub(crate) fn seek(&mut self, ts: u64) -> Result<u64, Fail> {
        self.queue.clear();
        self.bufs.clear_rest();
        self.skip = 0;
        if let Some(total) = self.total.filter(|&t| ts >= t) {
            self.eof = true;
            self.position = total;
            return Ok(total);
        }
        let to = SeekTo::TimeStamp {
            ts,
            track_id: self.track,
        };
        let seeked = self
            .format
            .seek(SeekMode::Accurate, to)
            .map_err(Fail::from_symphonia)?;
        self.decoder.reset();
        self.eof = false;
        self.skip = seeked.required_ts.saturating_sub(seeked.actual_ts);
        self.position = seeked.required_ts;
        Ok(self.position)
    }
}

impl State {
    /// Fails once more than `Limits::frames` frames were decoded, `out` (of `samples`
    /// samples) counted.
    fn check_frames(&self, samples: usize) -> Result<(), Fail> {
        let value = self.position + (samples / self.channels) as u64;
        if value > self.max_frames {
            return Err(Fail::Limit {
                what: "decoded frames",
                value,
                limit: self.max_frames,
            });
        }
        Ok(())
    }

    /// Whether everything has been handed out: the stream ended and nothing is queued.
    pub(crate) fn ended(&self) -> bool {
        self.eof && self.queue.len() == 0 && self.bufs.rest_len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A mono WAV of 5,000 samples counting 0, 1, 2...: each read is checked by value.
    fn counting_wav(tag: &str) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("{tag}-{}.wav", std::process::id()));
        let mut wav = crate::shared::tests::wav(5_000);
        for (i, s) in wav[44..].chunks_mut(2).enumerate() {
            s.copy_from_slice(&(i as i16).to_le_bytes());
        }
        std::fs::write(&path, &wav).unwrap();
        path
    }

    /// The rest of a packet (1,152 frames here) that a read does not take stays in the
    /// conversion buffer, and the next read copies it from there: once. Before, it was
    /// copied into the queue and then again out of it (about an eighth of the samples of
    /// 100 ms reads at 48 kHz went through the queue).
    #[test]
    fn the_rest_of_a_packet_is_handed_out_from_where_it_was_decoded() {
        let path = counting_wav("ca-rest");
        let (mut st, _) = open(&path, &Limits::default()).unwrap();
        let live = AtomicBool::new(false);
        let v = st.read::<i16>(1_000, &live, Vec::new()).unwrap();
        assert_eq!(v, (0..1_000).collect::<Vec<i16>>());
        assert_eq!((st.queue.len(), st.bufs.rest_len()), (0, 152));
        // In order across a switch of sample type and back.
        let f = st.read::<f32>(100, &live, Vec::new()).unwrap();
        assert_eq!(f.len(), 100);
        for (i, s) in f.iter().enumerate() {
            assert!((s - (1_000 + i) as f32 / 32_768.0).abs() < 1e-6, "{i}: {s}");
        }
        let v = st.read::<i16>(4_000, &live, Vec::new()).unwrap();
        assert_eq!(v, (1_100..5_000).collect::<Vec<i16>>());
        assert!(st.ended());
        // A seek drops the rest.
        assert_eq!(st.seek(10).unwrap(), 10);
        let v = st.read::<i16>(3, &live, Vec::new()).unwrap();
        assert_eq!(v, [10, 11, 12]);
        st.seek(0).unwrap();
        assert_eq!(st.bufs.rest_len(), 0);
        std::fs::remove_file(path).unwrap();
    }

    /// A packet that fits whole in the read is interleaved straight into the read's
    /// buffer: reads of whole packets never fill the conversion buffer (before, every
    /// packet was interleaved into it and copied out again, a quarter of the decoding
    /// time of 100 ms reads of 48 kHz stereo); only a packet split across reads is.
    #[test]
    fn whole_packets_go_straight_into_the_read() {
        let path = counting_wav("ca-direct");
        let (mut st, _) = open(&path, &Limits::default()).unwrap();
        let live = AtomicBool::new(false);
        // Two packets of 1,152 frames.
        let v = st.read::<i16>(2_304, &live, Vec::new()).unwrap();
        assert_eq!(v, (0..2_304).collect::<Vec<i16>>());
        assert!(i16::buffer(&mut st.bufs).is_none());
        let f = st.read::<f32>(1_152, &live, Vec::new()).unwrap();
        for (i, s) in f.iter().enumerate() {
            assert!((s - (2_304 + i) as f32 / 32_768.0).abs() < 1e-6, "{i}: {s}");
        }
        assert!(f32::buffer(&mut st.bufs).is_none());
        // A read that ends inside a packet leaves its rest in the conversion buffer.
        let v = st.read::<i16>(100, &live, Vec::new()).unwrap();
        assert_eq!(v, (3_456..3_556).collect::<Vec<i16>>());
        assert_eq!(st.bufs.rest_len(), 1_052);
        let v = st.read::<i16>(5_000, &live, Vec::new()).unwrap();
        assert_eq!(v, (3_556..5_000).collect::<Vec<i16>>());
        // After an accurate seek the frames before the target are skipped, also on the
        // straight path.
        assert_eq!(st.seek(1_000).unwrap(), 1_000);
        let skip = st.skip;
        let v = st.read::<i16>(4_000, &live, Vec::new()).unwrap();
        assert!(skip > 0 && st.skip == 0, "{skip}");
        assert_eq!(v, (1_000..5_000).collect::<Vec<i16>>());
        std::fs::remove_file(path).unwrap();
    }
}
