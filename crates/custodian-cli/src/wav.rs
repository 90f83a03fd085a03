//! Speech-like WAV inputs generated on the spot, so that the demo needs no download.

/// A small deterministic generator (xorshift64*), enough to vary the demo by `--seed`.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        // Zero is xorshift's fixed point.
        Self(seed ^ 0x9E37_79B9_7F4A_7C15 | 1)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value in `lo..hi` (`lo` when the range is empty).
    pub(crate) fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % hi.saturating_sub(lo).max(1)
    }
}

/// A 16-bit mono PCM WAV at `rate` Hz: `words` bursts of a voiced tone (pitch and length
/// from `rng`) separated by pauses, like speech with silences for captions to split on.
pub(crate) fn speech(rng: &mut Rng, rate: u32, words: u32) -> Vec<u8> {
    let mut samples: Vec<i16> = Vec::new();
    for _ in 0..words {
        let pitch = rng.range(110, 260) as f64;
        let len = rng.range(u64::from(rate) / 6, u64::from(rate) / 2) as usize;
        for i in 0..len {
            let t = i as f64 / f64::from(rate);
            // A fundamental and two harmonics under a raised-sine envelope.
            let env = (std::f64::consts::PI * i as f64 / len as f64).sin();
            let w = std::f64::consts::TAU * pitch * t;
            let x = w.sin() + 0.5 * (2.0 * w).sin() + 0.25 * (3.0 * w).sin();
            samples.push((x * env * 6000.0) as i16);
        }
        let pause = rng.range(u64::from(rate) / 10, u64::from(rate) / 4) as usize;
        samples.extend(std::iter::repeat_n(0, pause));
    }
    encode(rate, &samples)
}

/// A 16-bit mono PCM WAV holding `samples`.
pub(crate) fn encode(rate: u32, samples: &[i16]) -> Vec<u8> {
    let data = u32::try_from(samples.len() * 2).unwrap_or(u32::MAX);
    let mut v = Vec::with_capacity(44 + samples.len() * 2);
    v.extend_from_slice(b"RIFF");
    v.extend_from_slice(&data.saturating_add(36).to_le_bytes());
    v.extend_from_slice(b"WAVEfmt ");
    v.extend_from_slice(&16u32.to_le_bytes());
    v.extend_from_slice(&[1, 0, 1, 0]); // PCM, mono
    v.extend_from_slice(&rate.to_le_bytes());
    v.extend_from_slice(&(rate * 2).to_le_bytes());
    v.extend_from_slice(&[2, 0, 16, 0]); // block align 2, 16 bits
    v.extend_from_slice(b"data");
    v.extend_from_slice(&data.to_le_bytes());
    for s in samples {
        v.extend_from_slice(&s.to_le_bytes());
    }
    v
}

/// A WAV whose header promises a format chunk it does not have.
pub(crate) fn malformed() -> Vec<u8> {
    b"RIFF\x24\0\0\0WAVEfmt \x10\0\0\0junk".to_vec()
}
