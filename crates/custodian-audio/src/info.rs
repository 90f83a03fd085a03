//! What a decoder knows about its stream once it is open.

use std::fmt;
use std::time::Duration;

/// The container format, recognised from the file's first bytes.
///
/// ```
/// assert_eq!(tokio_custodian_audio::Container::Wav.to_string(), "wav");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Container {
    /// RIFF/WAVE.
    Wav,
    /// Native FLAC.
    Flac,
    /// Ogg.
    Ogg,
    /// MPEG audio frames (optionally after an ID3v2 tag).
    Mp3,
    /// Anything else the decoding library recognised.
    Other,
}

impl fmt::Display for Container {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Container::Wav => "wav",
            Container::Flac => "flac",
            Container::Ogg => "ogg",
            Container::Mp3 => "mp3",
            Container::Other => "other",
        })
    }
}

/// The stream's parameters, known once the decoder is open.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = std::env::temp_dir().join(format!("ca-info-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir)?;
/// # let path = dir.join("tone.wav");
/// # let spec = hound::WavSpec { channels: 1, sample_rate: 16_000, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
/// # let mut w = hound::WavWriter::create(&path, spec)?;
/// # for i in 0..16_000 { w.write_sample((i % 100) as i16)?; }
/// # w.finalize()?;
/// let sup = tokio_custodian::Supervisor::builder().start()?;
/// let dec = tokio_custodian_audio::AudioDecoder::open(&sup.root(), &path).await?;
/// let info = dec.info();
/// assert_eq!((info.sample_rate, info.channels, info.bits_per_sample), (16_000, 1, Some(16)));
/// assert_eq!(info.total_frames, Some(16_000));
/// assert_eq!(info.duration, Some(std::time::Duration::from_secs(1)));
/// assert_eq!(info.container, tokio_custodian_audio::Container::Wav);
/// # drop(dec); sup.shutdown().await; std::fs::remove_dir_all(dir)?; Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AudioInfo {
    /// The container.
    pub container: Container,
    /// The codec's short name (`pcm_s16le`, `flac`, `vorbis`, `mp3`...).
    pub codec: String,
    /// Frames per second.
    pub sample_rate: u32,
    /// Samples per frame.
    pub channels: u16,
    /// Bits per decoded sample, when the codec has a fixed width.
    pub bits_per_sample: Option<u32>,
    /// Frames in the stream, when the container declares them (for WAV: the frames the
    /// file actually holds, even if its header claims more).
    pub total_frames: Option<u64>,
    /// Frames the header declares, when it does (`None` for a streamed WAV, whose length
    /// field is `u32::MAX`). For WAV, more than [`total_frames`](Self::total_frames)
    /// means the file was cut short: see [`is_truncated`](Self::is_truncated).
    pub declared_frames: Option<u64>,
    /// `total_frames / sample_rate`.
    pub duration: Option<Duration>,
}

impl AudioInfo {
    /// Whether the header declares more frames than the file holds (a recording or an
    /// upload cut short). Known at open for WAV, where the frames present are counted
    /// from the file's size; for the other containers compare
    /// [`declared_frames`](Self::declared_frames) with the frames decoded at the end of
    /// the stream.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let path = std::env::temp_dir().join(format!("ca-cut-{}.wav", std::process::id()));
    /// # let spec = hound::WavSpec { channels: 1, sample_rate: 16_000, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
    /// # let mut w = hound::WavWriter::create(&path, spec)?;
    /// # for i in 0..48_000 { w.write_sample((i % 100) as i16)?; }
    /// # w.finalize()?;
    /// // A 48,000-frame recording whose last two thirds never reached the disk.
    /// let file = std::fs::OpenOptions::new().write(true).open(&path)?;
    /// file.set_len(44 + 2 * 14_978)?;
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let dec = tokio_custodian_audio::AudioDecoder::open(&sup.root(), &path).await?;
    /// let info = dec.info();
    /// assert_eq!((info.declared_frames, info.total_frames), (Some(48_000), Some(14_978)));
    /// assert!(info.is_truncated());
    /// assert_eq!(info.missing_frames(), 33_022);
    /// # drop(dec); sup.shutdown().await; std::fs::remove_file(path)?; Ok(()) }
    /// ```
    pub fn is_truncated(&self) -> bool {
        self.missing_frames() > 0
    }

    /// How many frames the header declares beyond those the file holds (0 when it is
    /// whole, or when either count is unknown). See [`is_truncated`](Self::is_truncated)
    /// for an example.
    pub fn missing_frames(&self) -> u64 {
        match (self.container, self.declared_frames, self.total_frames) {
            (Container::Wav, Some(d), Some(t)) => d.saturating_sub(t),
            _ => 0,
        }
    }

    pub(crate) fn duration_of(frames: u64, rate: u32) -> Duration {
        let rate = u64::from(rate.max(1));
        let secs = frames / rate;
        let nanos = (frames % rate) * 1_000_000_000 / rate;
        Duration::new(secs, nanos as u32)
    }
}
