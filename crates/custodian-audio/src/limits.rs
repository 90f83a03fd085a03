//! Caps on what a file may declare, checked before anything is allocated for it.

use std::time::Duration;

/// Caps on declared sizes, checked before any buffer is sized from them.
///
/// A file that declares more is refused with [`Error::Limit`](crate::Error::Limit).
/// The defaults accept any ordinary recording (up to 32 channels, 768 kHz, 24 hours,
/// 4 GiB) and refuse absurd headers.
///
/// ```
/// use std::time::Duration;
/// let limits = tokio_custodian_audio::Limits::default()
///     .max_channels(2)
///     .max_duration(Duration::from_secs(600));
/// assert_eq!(limits.channels, 2);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Most channels a stream may have.
    pub channels: u32,
    /// Highest sample rate, in Hz.
    pub sample_rate: u32,
    /// Most frames a stream may declare, and most frames [`read_all`] returns.
    ///
    /// [`read_all`]: crate::AudioDecoder::read_all
    pub frames: u64,
    /// Longest declared duration.
    pub duration: Duration,
    /// Largest file, in bytes.
    pub bytes: u64,
    /// Largest metadata chunk (such as a RIFF `LIST` or `smpl` chunk), in bytes.
    pub chunk_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            channels: 32,
            sample_rate: 768_000,
            frames: 48_000 * 3600 * 24,
            duration: Duration::from_secs(3600 * 24),
            bytes: 4 << 30,
            chunk_bytes: 1 << 20,
        }
    }
}

impl Limits {
    /// Sets [`channels`](Self::channels).
    ///
    /// ```
    /// let l = tokio_custodian_audio::Limits::default().max_channels(2);
    /// assert_eq!(l.channels, 2);
    /// ```
    pub fn max_channels(mut self, n: u32) -> Self {
        self.channels = n;
        self
    }

    /// Sets [`sample_rate`](Self::sample_rate).
    ///
    /// ```
    /// let l = tokio_custodian_audio::Limits::default().max_sample_rate(48_000);
    /// assert_eq!(l.sample_rate, 48_000);
    /// ```
    pub fn max_sample_rate(mut self, hz: u32) -> Self {
        self.sample_rate = hz;
        self
    }

    /// Sets [`frames`](Self::frames).
    ///
    /// ```
    /// let l = tokio_custodian_audio::Limits::default().max_frames(1_000);
    /// assert_eq!(l.frames, 1_000);
    /// ```
    pub fn max_frames(mut self, n: u64) -> Self {
        self.frames = n;
        self
    }

    /// Sets [`duration`](Self::duration).
    ///
    /// ```
    /// use std::time::Duration;
    /// let l = tokio_custodian_audio::Limits::default().max_duration(Duration::from_secs(60));
    /// assert_eq!(l.duration, Duration::from_secs(60));
    /// ```
    pub fn max_duration(mut self, d: Duration) -> Self {
        self.duration = d;
        self
    }

    /// Sets [`bytes`](Self::bytes).
    ///
    /// ```
    /// let l = tokio_custodian_audio::Limits::default().max_bytes(1 << 20);
    /// assert_eq!(l.bytes, 1 << 20);
    /// ```
    pub fn max_bytes(mut self, n: u64) -> Self {
        self.bytes = n;
        self
    }

    /// Sets [`chunk_bytes`](Self::chunk_bytes).
    ///
    /// ```
    /// let l = tokio_custodian_audio::Limits::default().max_chunk_bytes(4096);
    /// assert_eq!(l.chunk_bytes, 4096);
    /// ```
    pub fn max_chunk_bytes(mut self, n: u64) -> Self {
        self.chunk_bytes = n;
        self
    }
}
