//! The sample types a decoder hands out, and the buffers that carry them between threads.

use symphonia::core::audio::{AudioBuffer, AudioBufferRef, SampleBuffer, Signal};
use symphonia::core::conv::{ConvertibleSample, FromSample};

/// A sample type decoders can produce: `i16` or `f32`. Sealed.
///
/// ```
/// fn width<S: tokio_custodian_audio::Sample>() -> usize { std::mem::size_of::<S>() }
/// assert_eq!(width::<i16>(), 2);
/// ```
pub trait Sample:
    ConvertibleSample + symphonia::core::sample::Sample + Send + Sync + 'static + sealed::Sealed
{
    /// Whether this is `f32` (the other type is `i16`).
    #[doc(hidden)]
    const IS_F32: bool;
    #[doc(hidden)]
    fn wrap(v: Vec<Self>) -> Samples;
    #[doc(hidden)]
    fn unwrap(s: Samples) -> Result<Vec<Self>, Samples>;
    #[doc(hidden)]
    fn buffer(b: &mut Buffers) -> &mut Option<SampleBuffer<Self>>;
    /// This type's queue, after converting what the other type's queue held.
    #[doc(hidden)]
    fn queue(q: &mut Queue) -> &mut Vec<Self>;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for i16 {}
    impl Sealed for f32 {}
}

/// Interleaved samples of either type.
#[doc(hidden)]
#[derive(Debug)]
pub enum Samples {
    /// 16-bit integers.
    I16(Vec<i16>),
    /// 32-bit floats.
    F32(Vec<f32>),
}

/// One conversion buffer per sample type, reused across packets, and the rest of the
/// last packet not handed out yet.
#[doc(hidden)]
#[derive(Default)]
pub struct Buffers {
    i16: Option<SampleBuffer<i16>>,
    f32: Option<SampleBuffer<f32>>,
    /// `samples()[from..to]` of the buffer of `f32` (if `true`) or `i16`: the rest of the
    /// last packet, handed out from there by the next read (not copied to a queue first).
    rest: Option<(bool, usize, usize)>,
}

impl Buffers {
    /// Samples of the last packet not handed out yet.
    pub(crate) fn rest_len(&self) -> usize {
        self.rest.map_or(0, |(_, from, to)| to - from)
    }

    /// Drops the rest (a seek).
    pub(crate) fn clear_rest(&mut self) {
        self.rest = None;
    }

    /// Keeps `samples()[from..to]` of `S`'s buffer as the rest (none if empty).
    pub(crate) fn set_rest<S: Sample>(&mut self, from: usize, to: usize) {
        self.rest = (from < to).then_some((S::IS_F32, from, to));
    }

    /// A rest of the other type than `S` moves to `q` (converted when it is taken), so
    /// that the buffer of `S` can be reused.
    pub(crate) fn spill<S: Sample>(&mut self, q: &mut Queue) {
        let Some((f32, from, to)) = self.rest else {
            return;
        };
        if f32 == S::IS_F32 {
            return;
        }
        match (f32, &self.i16, &self.f32) {
            (false, Some(b), _) => q.push::<i16>(&b.samples()[from..to]),
            (true, _, Some(b)) => q.push::<f32>(&b.samples()[from..to]),
            _ => {}
        }
        self.rest = None;
    }

    /// Moves up to `max` samples of a rest of type `S` to `out`.
    pub(crate) fn take_rest<S: Sample>(&mut self, max: usize, out: &mut Vec<S>) {
        let Some((f32, from, to)) = self.rest else {
            return;
        };
        if f32 != S::IS_F32 {
            return;
        }
        let k = (to - from).min(max);
        if let Some(b) = S::buffer(self) {
            out.extend_from_slice(&b.samples()[from..from + k]);
        }
        self.set_rest::<S>(from + k, to);
    }
}

impl std::fmt::Debug for Buffers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Buffers")
    }
}

/// Decoded samples not handed out yet, in the type last asked for; `head` is the first
/// one not handed out. At most one of the two vectors is non-empty.
#[doc(hidden)]
#[derive(Debug, Default)]
pub struct Queue {
    i16: Vec<i16>,
    f32: Vec<f32>,
    head: usize,
}

impl Queue {
    /// Samples queued.
    pub(crate) fn len(&self) -> usize {
        self.i16.len() + self.f32.len() - self.head
    }

    pub(crate) fn clear(&mut self) {
        self.i16.clear();
        self.f32.clear();
        self.head = 0;
    }

    /// Moves up to `max` samples to `out`.
    pub(crate) fn take<S: Sample>(&mut self, max: usize, out: &mut Vec<S>) {
        S::queue(self); // converts first, which resets `head`
        let head = self.head;
        let v = S::queue(self);
        let k = (v.len() - head).min(max);
        out.extend_from_slice(&v[head..head + k]);
        if head + k == v.len() {
            v.clear();
            self.head = 0;
        } else {
            self.head = head + k;
        }
    }

    /// Appends samples.
    pub(crate) fn push<S: Sample>(&mut self, s: &[S]) {
        S::queue(self); // converts first, which resets `head`
        let head = self.head;
        let v = S::queue(self);
        if head > 0 && head * 2 >= v.len() {
            v.drain(..head);
            self.head = 0;
        }
        S::queue(self).extend_from_slice(s);
    }
}

impl Samples {
    pub(crate) fn len(&self) -> usize {
        match self {
            Samples::I16(v) => v.len(),
            Samples::F32(v) => v.len(),
        }
    }

    /// Capacity, in samples.
    pub(crate) fn capacity(&self) -> usize {
        match self {
            Samples::I16(v) => v.capacity(),
            Samples::F32(v) => v.capacity(),
        }
    }

    /// Appends `k` samples from `from` on to `out`, converted to `S`.
    pub(crate) fn copy_to<S: Sample>(&self, from: usize, k: usize, out: &mut Vec<S>) {
        match self {
            Samples::I16(v) => out.extend(v[from..from + k].iter().map(|&s| S::from_sample(s))),
            Samples::F32(v) => out.extend(v[from..from + k].iter().map(|&s| S::from_sample(s))),
        }
    }
}

/// Appends the frames of a decoded packet from frame `from` on to `out`, interleaved and
/// converted to `S` (as `SampleBuffer::copy_interleaved_ref` converts them): straight
/// into the read's buffer, without the conversion buffer and the copy out of it. Only
/// for mono and stereo; returns `false` (and appends nothing) for other layouts.
pub(crate) fn interleave<S: Sample>(
    src: &AudioBufferRef<'_>,
    from: usize,
    out: &mut Vec<S>,
) -> bool {
    match src {
        AudioBufferRef::U8(b) => interleave_typed(b, from, out),
        AudioBufferRef::U16(b) => interleave_typed(b, from, out),
        AudioBufferRef::U24(b) => interleave_typed(b, from, out),
        AudioBufferRef::U32(b) => interleave_typed(b, from, out),
        AudioBufferRef::S8(b) => interleave_typed(b, from, out),
        AudioBufferRef::S16(b) => interleave_typed(b, from, out),
        AudioBufferRef::S24(b) => interleave_typed(b, from, out),
        AudioBufferRef::S32(b) => interleave_typed(b, from, out),
        AudioBufferRef::F32(b) => interleave_typed(b, from, out),
        AudioBufferRef::F64(b) => interleave_typed(b, from, out),
    }
}

fn interleave_typed<F, S>(src: &AudioBuffer<F>, from: usize, out: &mut Vec<S>) -> bool
where
    F: symphonia::core::sample::Sample,
    S: FromSample<F>,
{
    let n = src.frames();
    let from = from.min(n);
    match src.spec().channels.count() {
        1 => out.extend(src.chan(0)[from..].iter().map(|&s| S::from_sample(s))),
        // `FlatMap` over arrays of a slice's zip has a trusted length: `extend` writes
        // without a capacity check per sample.
        2 => out.extend(
            src.chan(0)[from..]
                .iter()
                .zip(&src.chan(1)[from..])
                .flat_map(|(&l, &r)| [S::from_sample(l), S::from_sample(r)]),
        ),
        _ => return false,
    }
    true
}

/// Converts the rest of `from` (from `head` on) into `to`, emptying `from`.
fn convert<A: Copy, B: FromSample<A>>(from: &mut Vec<A>, head: usize, to: &mut Vec<B>) {
    to.clear();
    to.extend(from[head..].iter().map(|&s| B::from_sample(s)));
    from.clear();
}

impl Sample for i16 {
    const IS_F32: bool = false;
    fn wrap(v: Vec<Self>) -> Samples {
        Samples::I16(v)
    }
    fn unwrap(s: Samples) -> Result<Vec<Self>, Samples> {
        match s {
            Samples::I16(v) => Ok(v),
            other => Err(other),
        }
    }
    fn buffer(b: &mut Buffers) -> &mut Option<SampleBuffer<Self>> {
        &mut b.i16
    }
    fn queue(q: &mut Queue) -> &mut Vec<Self> {
        if !q.f32.is_empty() {
            convert(&mut q.f32, q.head, &mut q.i16);
            q.head = 0;
        }
        &mut q.i16
    }
}

impl Sample for f32 {
    const IS_F32: bool = true;
    fn wrap(v: Vec<Self>) -> Samples {
        Samples::F32(v)
    }
    fn unwrap(s: Samples) -> Result<Vec<Self>, Samples> {
        match s {
            Samples::F32(v) => Ok(v),
            other => Err(other),
        }
    }
    fn buffer(b: &mut Buffers) -> &mut Option<SampleBuffer<Self>> {
        &mut b.f32
    }
    fn queue(q: &mut Queue) -> &mut Vec<Self> {
        if !q.i16.is_empty() {
            convert(&mut q.i16, q.head, &mut q.f32);
            q.head = 0;
        }
        &mut q.f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_keeps_order_across_take_push_and_type_switches() {
        let mut q = Queue::default();
        q.push::<i16>(&[1, 2, 3, 4]);
        let mut out = Vec::new();
        q.take::<i16>(3, &mut out);
        assert_eq!((out.as_slice(), q.len()), (&[1, 2, 3][..], 1));
        q.push::<i16>(&[5, 6]);
        let mut f = Vec::new();
        q.take::<f32>(10, &mut f);
        let back: Vec<i16> = f.iter().map(|&s| i16::from_sample(s)).collect();
        assert_eq!(back, [4, 5, 6]);
        assert_eq!(q.len(), 0);
        q.push::<f32>(&[0.5]);
        q.clear();
        assert_eq!(q.len(), 0);
    }
}
