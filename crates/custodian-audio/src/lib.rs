//! # tokio-custodian-audio
//!
//! Audio decoders as [tokio_custodian] resources. An [`AudioDecoder`] is registered in a
//! [`tokio_custodian::Scope`] (as [`ResourceKind::AudioDecoder`](tokio_custodian::ResourceKind)) before
//! it is opened, so its file is closed on every path: explicit close, drop, scope end,
//! panic, a dropped future, shutdown, and a guard that was forgotten.
//!
//! * Probing and decoding run on Tokio's blocking pool, many packets per hop, never on an
//!   async worker thread.
//! * Malformed input is a typed [`Error`] naming the operation and the path: headers are
//!   checked against the file's real size and configurable [`Limits`] before anything is
//!   sized from them, and panics inside the decoding library are caught.
//! * WAV (PCM, float) is always on; FLAC, Ogg/Vorbis and MP3 are behind the `flac`,
//!   `vorbis` and `mp3` Cargo features. Decoding is done by `symphonia`.
//!
//! Reading fits a speech recogniser: the next N frames as interleaved `i16` or `f32`
//! ([`AudioDecoder::read`]), a [`Stream`](futures_core::Stream) of chunks
//! ([`AudioDecoder::chunks`]), [`seek`](AudioDecoder::seek), and
//! [`read_all`](AudioDecoder::read_all).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let path = std::env::temp_dir().join(format!("ca-lib-{}.wav", std::process::id()));
//! # let spec = hound::WavSpec { channels: 1, sample_rate: 16_000, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
//! # let mut w = hound::WavWriter::create(&path, spec)?;
//! # for i in 0..8_000 { w.write_sample(i as i16)?; }
//! # w.finalize()?;
//! let sup = tokio_custodian::Supervisor::builder().start()?;
//! let samples = sup
//!     .scope("transcribe", async |s| {
//!         let mut dec = tokio_custodian_audio::AudioDecoder::open(&s, &path).await?;
//!         Ok::<_, tokio_custodian::Error>(dec.read_all::<i16>().await?)
//!     })
//!     .await??;
//! assert_eq!(samples.len(), 8_000);
//! assert_eq!(sup.stats().kind(tokio_custodian::ResourceKind::AudioDecoder).live, 0);
//! # sup.shutdown().await; std::fs::remove_file(path)?; Ok(()) }
//! ```
//!
//! # Not guaranteed
//!
//! * Panics are caught only when the crate is built with `panic = "unwind"` (the default);
//!   with `panic = "abort"` a panic in the decoding library aborts the process.
//! * A decode hop in flight when the decoder is released finishes its current packet on
//!   the blocking pool before the file is closed.

#![forbid(unsafe_code)]

mod ahead;
mod decoder;
mod engine;
mod error;
mod hop;
mod info;
mod limits;
mod open;
mod sample;
mod shared;
mod sniff;
mod stream;

pub use decoder::AudioDecoder;
pub use error::{Error, Op, Result};
pub use info::{AudioInfo, Container};
pub use limits::Limits;
pub use sample::{Sample, Samples};
pub use stream::Chunks;
