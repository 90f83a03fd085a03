//! The guard: an open audio stream registered in a custodian scope.

use std::fmt;
use std::future::{Future, poll_fn};
use std::panic::{AssertUnwindSafe, Location, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_custodian::{Registration, ResourceId, ResourceKind, Scope};

use crate::engine;
use crate::error::{Error, Fail, Op, Result, panic_message};
use crate::hop::{Hop, join_fail};
use crate::info::AudioInfo;
use crate::limits::Limits;
use crate::sample::Sample;
use crate::shared::{DecoderReclaim, Shared};

/// An audio decoder owned by a custodian [`Scope`]: probing and decoding run on Tokio's
/// blocking pool, many packets per hop; the file is closed on every path.
///
/// Registered as [`ResourceKind::AudioDecoder`] before [`open`](Self::open) returns, so
/// it appears in the supervisor's stats, live listing and leak reports, and a failed open
/// is counted as created and released too.
///
/// # Resource leaking
///
/// The decoder state (reader, decoder, open file) is shared with the registry entry: a
/// guard that escapes its scope or is forgotten with `mem::forget` is still closed at scope
/// end or shutdown; its later reads fail with [`Error::Released`]. Dropping the guard
/// never blocks: a decode in flight is told to stop, and its state is dropped on the
/// blocking pool after at most one packet.
///
/// The `wave.readframes` loop of the original service, with the file closed on every path:
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = std::env::temp_dir().join(format!("ca-doc-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir)?;
/// # let path = dir.join("speech.wav");
/// # let spec = hound::WavSpec { channels: 1, sample_rate: 16_000, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
/// # let mut w = hound::WavWriter::create(&path, spec)?;
/// # for i in 0..40_000 { w.write_sample((i % 1000) as i16)?; }
/// # w.finalize()?;
/// use tokio_custodian_audio::AudioDecoder;
/// let sup = tokio_custodian::Supervisor::builder().start()?;
/// let frames = sup
///     .scope("recognise", async |s| {
///         let mut wav = AudioDecoder::open(&s, &path).await?; // wave.open(path)
///         assert_eq!(wav.info().sample_rate, 16_000);         // getframerate()
///         let mut total = 0;
///         loop {
///             let chunk = wav.read_i16(4_000).await?;         // readframes(4000)
///             if chunk.is_empty() {
///                 break;
///             }
///             total += chunk.len(); // feed the recogniser here; an error or panic
///         }                         // still closes the file
///         Ok::<_, tokio_custodian::Error>(total)
///     })
///     .await??;
/// assert_eq!(frames, 40_000);
/// assert_eq!(sup.stats().kind(tokio_custodian::ResourceKind::AudioDecoder).live, 0);
/// # sup.shutdown().await; std::fs::remove_dir_all(dir)?; Ok(()) }
/// ```
#[must_use = "dropping an AudioDecoder closes it"]
pub struct AudioDecoder {
    pub(crate) reg: Registration,
    pub(crate) shared: Arc<Shared>,
    pub(crate) info: AudioInfo,
    pub(crate) path: Arc<Path>,
    pub(crate) inflight: Option<Hop>,
    pub(crate) position: u64,
}

impl AudioDecoder {
    /// Opens `path` in `scope` with the default [`Limits`].
    ///
    /// # Errors
    ///
    /// [`Error::Io`] or [`Error::NotAFile`] ([`Op::Open`]) if the file cannot be opened;
    /// [`Error::Malformed`], [`Error::Limit`], [`Error::Unsupported`] or
    /// [`Error::Panicked`] for bad content; [`Error::Custodian`] if the scope has ended or
    /// the supervisor is shutting down, if its scope is cancelled while it waits for quota
    /// room, or if a [`Quota`](tokio_custodian::Quota) that counts decoders has no room and
    /// waiting would close a wait-for cycle (`QuotaExceeded`). It waits for room first,
    /// as files and children do. The decoder is released (and counted) either way.
    ///
    /// # Cancel safety
    ///
    /// Dropped while it waits for quota room, it takes nothing. Dropped later, it
    /// releases the decoder; a probe in flight finishes on the blocking pool and closes
    /// the file.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let err = tokio_custodian_audio::AudioDecoder::open(&sup.root(), "/").await.unwrap_err();
    /// assert!(matches!(err, tokio_custodian_audio::Error::NotAFile { .. }));
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    #[track_caller]
    pub fn open<P: AsRef<Path>>(
        scope: &Scope,
        path: P,
    ) -> impl Future<Output = Result<AudioDecoder>> + use<P> {
        Self::open_with(scope, path, Limits::default())
    }

    /// Opens `path` in `scope` with the given [`Limits`].
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open).
    ///
    /// # Cancel safety
    ///
    /// As [`open`](Self::open).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let path = std::env::temp_dir().join(format!("ca-lim-{}.wav", std::process::id()));
    /// # let spec = hound::WavSpec { channels: 2, sample_rate: 8_000, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
    /// # let mut w = hound::WavWriter::create(&path, spec)?; w.write_sample(0i16)?; w.write_sample(0i16)?; w.finalize()?;
    /// use tokio_custodian_audio::{AudioDecoder, Error, Limits};
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let mono_only = Limits::default().max_channels(1);
    /// let err = AudioDecoder::open_with(&sup.root(), &path, mono_only).await.unwrap_err();
    /// assert!(matches!(err, Error::Limit { what: "channels", value: 2, .. }));
    /// # sup.shutdown().await; std::fs::remove_file(path)?; Ok(()) }
    /// ```
    #[track_caller]
    pub fn open_with<P: AsRef<Path>>(
        scope: &Scope,
        path: P,
        limits: Limits,
    ) -> impl Future<Output = Result<AudioDecoder>> + use<P> {
        let site = Location::caller();
        let scope = scope.clone();
        let path: PathBuf = path.as_ref().to_path_buf();
        async move {
            let shared = Arc::new(Shared::default());
            let label = path.file_name().map_or_else(
                || path.display().to_string(),
                |n| n.to_string_lossy().into(),
            );
            let reclaim = DecoderReclaim(shared.clone());
            // Waits for quota room (a decoder's file counts in `Quota::fds`) before the
            // open, like the core's files and children.
            let reg = scope
                .register_when_room(
                    ResourceKind::AudioDecoder,
                    label,
                    Some(path.clone()),
                    reclaim,
                    site,
                )
                .await?;
            let path: Arc<Path> = path.into();
            let job = {
                let (shared, path) = (shared.clone(), path.clone());
                move || match catch_unwind(AssertUnwindSafe(|| engine::open(&path, &limits))) {
                    Ok(Ok((state, info))) => {
                        shared.install(state).map_err(|f| (Op::Open, f))?;
                        Ok(info)
                    }
                    Ok(Err(e)) => Err(e),
                    Err(p) => Err((Op::Probe, Fail::Panicked(panic_message(&*p)))),
                }
            };
            let joined = tokio::task::spawn_blocking(job).await;
            let outcome = joined.unwrap_or_else(|e| Err((Op::Open, join_fail(e))));
            match outcome {
                Ok(info) => Ok(AudioDecoder {
                    reg,
                    shared,
                    info,
                    path,
                    inflight: None,
                    position: 0,
                }),
                Err((op, fail)) => {
                    // The clean-up of an empty slot cannot fail.
                    let _ = reg.close().await;
                    tracing::debug!(path = %path.display(), %op, ?fail, "audio open failed");
                    Err(fail.at(op, &path))
                }
            }
        }
    }

    /// The stream's parameters.
    ///
    /// See [`AudioInfo`] for an example.
    pub fn info(&self) -> &AudioInfo {
        &self.info
    }

    /// The path the decoder was opened at.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let path = std::env::temp_dir().join(format!("ca-path-{}.wav", std::process::id()));
    /// # let spec = hound::WavSpec { channels: 1, sample_rate: 8_000, bits_per_sample: 8, sample_format: hound::SampleFormat::Int };
    /// # hound::WavWriter::create(&path, spec)?.finalize()?;
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let dec = tokio_custodian_audio::AudioDecoder::open(&sup.root(), &path).await?;
    /// assert_eq!(dec.path(), path);
    /// # drop(dec); sup.shutdown().await; std::fs::remove_file(path)?; Ok(()) }
    /// ```
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The decoder's id in the supervisor's registry.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let path = std::env::temp_dir().join(format!("ca-id-{}.wav", std::process::id()));
    /// # let spec = hound::WavSpec { channels: 1, sample_rate: 8_000, bits_per_sample: 8, sample_format: hound::SampleFormat::Int };
    /// # hound::WavWriter::create(&path, spec)?.finalize()?;
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let dec = tokio_custodian_audio::AudioDecoder::open(&sup.root(), &path).await?;
    /// assert_eq!(sup.live()[0].id(), dec.id());
    /// assert_eq!(sup.live()[0].kind(), tokio_custodian::ResourceKind::AudioDecoder);
    /// # drop(dec); sup.shutdown().await; std::fs::remove_file(path)?; Ok(()) }
    /// ```
    pub fn id(&self) -> ResourceId {
        self.reg.id()
    }

    /// The decoder's registration (to check it is live, or move it to another scope).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let path = std::env::temp_dir().join(format!("ca-reg-{}.wav", std::process::id()));
    /// # let spec = hound::WavSpec { channels: 1, sample_rate: 8_000, bits_per_sample: 8, sample_format: hound::SampleFormat::Int };
    /// # hound::WavWriter::create(&path, spec)?.finalize()?;
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let dec = tokio_custodian_audio::AudioDecoder::open(&sup.root(), &path).await?;
    /// assert!(dec.registration().is_live());
    /// # drop(dec); sup.shutdown().await; std::fs::remove_file(path)?; Ok(()) }
    /// ```
    pub fn registration(&self) -> &Registration {
        &self.reg
    }

    /// The position of the next frame [`read`](Self::read) returns.
    ///
    /// See [`seek`](Self::seek) for an example.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Decodes the next `frames` frames as interleaved samples (`i16` or `f32`). Returns
    /// fewer only at the end of the stream, and an empty vector after it.
    ///
    /// Reads are served from a read-ahead that a background hop on the blocking pool
    /// fills while the caller works: pieces of the size and type of the last read, up to
    /// 256 Ki samples (512 KiB as `i16`, 1 MiB as `f32`) or one read if larger, plus one
    /// piece. A read that leaves less than half of that queued starts the next fill; a
    /// read that finds too little waits for all it asked for and a batch (64 Ki samples,
    /// doubling at each such wait up to 192 Ki: a reader faster than the decoder wakes
    /// rarely). The vectors handed out are allocated by the reads, on the caller's
    /// thread, and filled by the background hop (within the same bound), so the caller
    /// frees them into its own allocator arena, not the decoding thread's.
    /// Switching the sample type mid-stream converts what was decoded ahead from the
    /// other type (exact for 16-bit sources; from deeper sources, samples decoded ahead
    /// as `i16` keep only 16 bits). An error met while decoding ahead is returned by the
    /// read that needs the frames after it; the frames before it are handed out after.
    ///
    /// # Errors
    ///
    /// [`Error::Malformed`], [`Error::Unsupported`], [`Error::Io`] or [`Error::Panicked`]
    /// ([`Op::Read`]) for bad content; [`Error::Limit`] when more than
    /// [`Limits::frames`] frames were decoded; [`Error::Released`] once the decoder's scope
    /// ended.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a read takes frames only when it returns them, so if the future is
    /// dropped, the frames decoded meanwhile are returned by the next read; nothing is lost
    /// or reordered.
    ///
    /// See [`AudioDecoder`] for an example.
    pub async fn read<S: Sample>(&mut self, frames: usize) -> Result<Vec<S>> {
        poll_fn(|cx| self.poll_read::<S>(cx, frames)).await
    }

    /// [`read`](Self::read) as `i16`.
    ///
    /// # Errors
    ///
    /// As [`read`](Self::read).
    ///
    /// # Cancel safety
    ///
    /// As [`read`](Self::read).
    ///
    /// See [`AudioDecoder`] for an example.
    pub async fn read_i16(&mut self, frames: usize) -> Result<Vec<i16>> {
        self.read::<i16>(frames).await
    }

    /// [`read`](Self::read) as `f32` in `[-1, 1]`.
    ///
    /// # Errors
    ///
    /// As [`read`](Self::read).
    ///
    /// # Cancel safety
    ///
    /// As [`read`](Self::read).
    ///
    /// See [`read_all`](Self::read_all) for an example.
    pub async fn read_f32(&mut self, frames: usize) -> Result<Vec<f32>> {
        self.read::<f32>(frames).await
    }

    /// Decodes everything left, in one hop (capped at [`Limits::frames`]).
    ///
    /// # Errors
    ///
    /// As [`read`](Self::read).
    ///
    /// # Cancel safety
    ///
    /// As [`read`](Self::read).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let path = std::env::temp_dir().join(format!("ca-all-{}.wav", std::process::id()));
    /// # let spec = hound::WavSpec { channels: 2, sample_rate: 8_000, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
    /// # let mut w = hound::WavWriter::create(&path, spec)?;
    /// # for _ in 0..800 { w.write_sample(i16::MAX)?; w.write_sample(i16::MIN)?; }
    /// # w.finalize()?;
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let mut dec = tokio_custodian_audio::AudioDecoder::open(&sup.root(), &path).await?;
    /// let first = dec.read_f32(1).await?;
    /// assert!(first[0] > 0.99 && first[1] == -1.0);
    /// let rest: Vec<i16> = dec.read_all().await?;
    /// assert_eq!(rest.len(), 2 * 799);
    /// # drop(dec); sup.shutdown().await; std::fs::remove_file(path)?; Ok(()) }
    /// ```
    pub async fn read_all<S: Sample>(&mut self) -> Result<Vec<S>> {
        self.read::<S>(usize::MAX).await
    }

    /// Moves to `to` from the start (frame-exact for PCM); returns the new frame position.
    /// Seeking at or past the end leaves the decoder at its end.
    ///
    /// # Errors
    ///
    /// [`Error::Malformed`] or [`Error::Unsupported`] ([`Op::Seek`]) if the stream cannot
    /// seek there; [`Error::Released`] once the decoder's scope ended.
    ///
    /// # Cancel safety
    ///
    /// If the future is dropped, the seek may or may not have happened; later reads stay
    /// in order with it.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let path = std::env::temp_dir().join(format!("ca-seek-{}.wav", std::process::id()));
    /// # let spec = hound::WavSpec { channels: 1, sample_rate: 8_000, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
    /// # let mut w = hound::WavWriter::create(&path, spec)?;
    /// # for i in 0..16_000 { w.write_sample(i as i16)?; }
    /// # w.finalize()?;
    /// use std::time::Duration;
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let mut dec = tokio_custodian_audio::AudioDecoder::open(&sup.root(), &path).await?;
    /// assert_eq!(dec.seek(Duration::from_millis(1500)).await?, 12_000);
    /// assert_eq!(dec.read_i16(2).await?, [12_000, 12_001]);
    /// assert_eq!(dec.position(), 12_002);
    /// # drop(dec); sup.shutdown().await; std::fs::remove_file(path)?; Ok(()) }
    /// ```
    pub async fn seek(&mut self, to: Duration) -> Result<u64> {
        let rate = u128::from(self.info.sample_rate);
        let ts = u64::try_from(to.as_nanos() * rate / 1_000_000_000).unwrap_or(u64::MAX);
        // An earlier seek first, then the decoding ahead stops: what it decoded is
        // before the seek, and is dropped when the seek starts.
        poll_fn(|cx| self.poll_settle(cx)).await;
        poll_fn(|cx| self.poll_stop(cx)).await;
        self.start_seek(ts);
        match poll_fn(|cx| self.poll_hop(cx)).await {
            Ok(pos) => {
                self.position = pos;
                Ok(pos)
            }
            Err(f) => Err(f.at(Op::Seek, &self.path)),
        }
    }

    /// Releases the decoder (closing its file) and waits for its clean-up.
    ///
    /// # Errors
    ///
    /// None in practice; the signature matches custodian's guards.
    ///
    /// # Cancel safety
    ///
    /// The release happens at the first poll.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let path = std::env::temp_dir().join(format!("ca-close-{}.wav", std::process::id()));
    /// # let spec = hound::WavSpec { channels: 1, sample_rate: 8_000, bits_per_sample: 8, sample_format: hound::SampleFormat::Int };
    /// # hound::WavWriter::create(&path, spec)?.finalize()?;
    /// use tokio_custodian::{ReleasePath, ResourceKind};
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// tokio_custodian_audio::AudioDecoder::open(&sup.root(), &path).await?.close().await?;
    /// assert_eq!(sup.stats().kind(ResourceKind::AudioDecoder).released(ReleasePath::Close), 1);
    /// # sup.shutdown().await; std::fs::remove_file(path)?; Ok(()) }
    /// ```
    pub async fn close(self) -> Result<()> {
        let AudioDecoder { reg, .. } = self;
        reg.close().await.map_err(Error::Custodian)
    }
}

impl fmt::Debug for AudioDecoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AudioDecoder")
            .field("id", &self.reg.id())
            .field("path", &self.path)
            .field("info", &self.info)
            .field("position", &self.position)
            .finish()
    }
}
