//! Decoded chunks as a `futures_core::Stream`.

use std::fmt;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;

use crate::decoder::AudioDecoder;
use crate::error::Result;
use crate::sample::Sample;

/// A stream of chunks of `frames` frames (the last may be shorter), made by
/// [`AudioDecoder::chunks`]. Ends after the last chunk or after the first error.
///
/// # Cancel safety
///
/// Cancel safe: the decode in flight belongs to the decoder, so dropping a `next()` future
/// (for example in `tokio::select!`) loses nothing.
///
/// See [`AudioDecoder::chunks`] for an example.
#[must_use = "streams do nothing unless polled"]
pub struct Chunks<'a, S: Sample> {
    dec: &'a mut AudioDecoder,
    frames: usize,
    done: bool,
    _s: PhantomData<fn() -> S>,
}

impl AudioDecoder {
    /// The rest of the stream, as chunks of `frames` frames (`frames` is at least 1).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let path = std::env::temp_dir().join(format!("ca-chunks-{}.wav", std::process::id()));
    /// # let spec = hound::WavSpec { channels: 2, sample_rate: 8_000, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
    /// # let mut w = hound::WavWriter::create(&path, spec)?;
    /// # for i in 0..2_500 { w.write_sample(i as i16)?; w.write_sample(-(i as i16))?; }
    /// # w.finalize()?;
    /// use std::future::poll_fn;
    /// use std::pin::Pin;
    /// use futures_core::Stream;
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let mut dec = tokio_custodian_audio::AudioDecoder::open(&sup.root(), &path).await?;
    /// let mut chunks = dec.chunks::<i16>(1_000);
    /// let mut sizes = Vec::new();
    /// while let Some(chunk) = poll_fn(|cx| Pin::new(&mut chunks).poll_next(cx)).await {
    ///     sizes.push(chunk?.len() / 2);
    /// }
    /// assert_eq!(sizes, [1_000, 1_000, 500]);
    /// # drop(dec); sup.shutdown().await; std::fs::remove_file(path)?; Ok(()) }
    /// ```
    pub fn chunks<S: Sample>(&mut self, frames: usize) -> Chunks<'_, S> {
        Chunks {
            dec: self,
            frames: frames.max(1),
            done: false,
            _s: PhantomData,
        }
    }
}

impl<S: Sample> Stream for Chunks<'_, S> {
    type Item = Result<Vec<S>>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        let r = std::task::ready!(this.dec.poll_read::<S>(cx, this.frames));
        match r {
            Ok(v) if v.is_empty() => {
                this.done = true;
                Poll::Ready(None)
            }
            Ok(v) => Poll::Ready(Some(Ok(v))),
            Err(e) => {
                this.done = true;
                Poll::Ready(Some(Err(e)))
            }
        }
    }
}

impl<S: Sample> fmt::Debug for Chunks<'_, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chunks")
            .field("frames", &self.frames)
            .field("done", &self.done)
            .finish()
    }
}
