//! The sample types a decoder hands out, and the buffers that carry them between threads.

use symphonia::core::audio::SampleBuffer;
use symphonia::core::conv::ConvertibleSample;

/// A sample type decoders can produce: `i16` or `f32`. Sealed.
///
/// ```
/// fn width<S: custodian_audio::Sample>() -> usize { std::mem::size_of::<S>() }
/// assert_eq!(width::<i16>(), 2);
/// ```
pub trait Sample:
    ConvertibleSample + symphonia::core::sample::Sample + Send + Sync + 'static + sealed::Sealed
{
    #[doc(hidden)]
    fn wrap(v: Vec<Self>) -> Samples;
    #[doc(hidden)]
    fn unwrap(s: Samples) -> Result<Vec<Self>, Samples>;
    #[doc(hidden)]
    fn convert(s: Samples) -> Vec<Self>;
    #[doc(hidden)]
    fn buffer(b: &mut Buffers) -> &mut Option<SampleBuffer<Self>>;
}

/// One conversion buffer per sample type, reused across packets.
#[doc(hidden)]
#[derive(Default)]
pub struct Buffers {
    i16: Option<SampleBuffer<i16>>,
    f32: Option<SampleBuffer<f32>>,
}

impl std::fmt::Debug for Buffers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Buffers")
    }
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

impl Samples {
    pub(crate) fn len(&self) -> usize {
        match self {
            Samples::I16(v) => v.len(),
            Samples::F32(v) => v.len(),
        }
    }
}

impl Sample for i16 {
    fn wrap(v: Vec<Self>) -> Samples {
        Samples::I16(v)
    }
    fn unwrap(s: Samples) -> Result<Vec<Self>, Samples> {
        match s {
            Samples::I16(v) => Ok(v),
            other => Err(other),
        }
    }
    fn convert(s: Samples) -> Vec<Self> {
        use symphonia::core::conv::FromSample;
        match s {
            Samples::I16(v) => v,
            Samples::F32(v) => v.into_iter().map(i16::from_sample).collect(),
        }
    }
    fn buffer(b: &mut Buffers) -> &mut Option<SampleBuffer<Self>> {
        &mut b.i16
    }
}

impl Sample for f32 {
    fn wrap(v: Vec<Self>) -> Samples {
        Samples::F32(v)
    }
    fn unwrap(s: Samples) -> Result<Vec<Self>, Samples> {
        match s {
            Samples::F32(v) => Ok(v),
            other => Err(other),
        }
    }
    fn convert(s: Samples) -> Vec<Self> {
        use symphonia::core::conv::FromSample;
        match s {
            Samples::F32(v) => v,
            Samples::I16(v) => v.into_iter().map(f32::from_sample).collect(),
        }
    }
    fn buffer(b: &mut Buffers) -> &mut Option<SampleBuffer<Self>> {
        &mut b.f32
    }
}
