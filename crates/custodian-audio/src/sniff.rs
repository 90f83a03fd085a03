//! A bounded look at the file's headers before the decoding library sees it.
//!
//! The decoding library trusts some declared sizes (a `LIST` chunk is read into a buffer of
//! its declared length) and refuses some common real-world oddities (a streamed WAV whose
//! data length is `u32::MAX`, a truncated recording). This walk reads at most a few bytes
//! per chunk header, checks every declared size against the file's real size and the
//! [`Limits`], and corrects the two length fields the library relies on through a
//! read-time overlay ([`Patched`]), never by writing to the file.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;

use symphonia::core::io::MediaSource;

use crate::error::Fail;
use crate::info::Container;
use crate::limits::Limits;

/// Most chunks walked before the `data` chunk.
const MAX_CHUNKS: u32 = 256;

const WAVE_FORMAT_PCM: u16 = 1;
const WAVE_FORMAT_IEEE_FLOAT: u16 = 3;
const WAVE_FORMAT_EXTENSIBLE: u16 = 0xFFFE;

/// What the walk found.
#[derive(Debug)]
pub(crate) struct Sniffed {
    pub(crate) container: Container,
    /// Little-endian `u32` fields to present differently: (offset, value).
    pub(crate) patches: Vec<(u64, u32)>,
    /// Frames the `data` chunk really holds (WAV only).
    pub(crate) wav_frames: Option<u64>,
    /// Frames the `data` chunk's header declares (WAV only; `None` for a streamed WAV,
    /// whose length field is `u32::MAX`).
    pub(crate) wav_declared: Option<u64>,
}

fn read_at(file: &File, buf: &mut [u8], at: u64) -> Result<(), Fail> {
    file.read_exact_at(buf, at).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => Fail::malformed("header runs past the end of the file"),
        _ => Fail::Io(e),
    })
}

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[i], b[i + 1]])
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

/// Recognises the container and, for WAV, checks every chunk header.
pub(crate) fn sniff(file: &File, len: u64, limits: &Limits) -> Result<Sniffed, Fail> {
    if len == 0 {
        return Err(Fail::malformed("empty file"));
    }
    if len > limits.bytes {
        return Err(Fail::Limit {
            what: "file size",
            value: len,
            limit: limits.bytes,
        });
    }
    let mut head = [0u8; 12];
    let n = head.len().min(len as usize);
    read_at(file, &mut head[..n], 0)?;
    let other = |container| Sniffed {
        container,
        patches: Vec::new(),
        wav_frames: None,
        wav_declared: None,
    };
    let guess = match &head[..n] {
        [b'R', b'I', b'F', b'F', _, _, _, _, b'W', b'A', b'V', b'E'] => {
            return riff_wave(file, 0, len, limits);
        }
        [b'R', b'I', b'F', b'F', ..] if n < 12 => {
            return Err(Fail::malformed("truncated RIFF header"));
        }
        // The library reads these in place, without searching further.
        [b'f', b'L', b'a', b'C', ..] => return Ok(other(Container::Flac)),
        [b'O', b'g', b'g', b'S', ..] => return Ok(other(Container::Ogg)),
        [b'I', b'D', b'3', ..] => Container::Mp3,
        [0xFF, b, ..] if b & 0xE0 == 0xE0 => Container::Mp3,
        _ => Container::Other,
    };
    // Otherwise the library's probe searches up to 1 MiB for a marker (skipping an ID3v2
    // tag, or junk): a WAV header it may find there gets the same checks as one at the
    // start.
    match find_riff_wave(file, len)? {
        Some(at) => riff_wave(file, at, len, limits),
        None => Ok(other(guess)),
    }
}

/// How far the decoding library's probe searches for a container marker.
const PROBE_SEARCH: u64 = 1 << 20;

/// The offset of the first `RIFF....WAVE` within the probe's search window.
fn find_riff_wave(file: &File, len: u64) -> Result<Option<u64>, Fail> {
    let n = len.min(PROBE_SEARCH + 12) as usize;
    let mut buf = vec![0u8; n];
    read_at(file, &mut buf, 0)?;
    Ok(buf
        .windows(12)
        .position(|w| &w[..4] == b"RIFF" && &w[8..] == b"WAVE")
        .map(|i| i as u64))
}

fn riff_wave(file: &File, base: u64, len: u64, limits: &Limits) -> Result<Sniffed, Fail> {
    let mut patches = Vec::new();
    let mut pos = base + 12;
    let mut fmt: Option<(u16, u16)> = None; // (channels, block_align)
    for _ in 0..MAX_CHUNKS {
        if pos + 8 > len {
            return Err(Fail::malformed(
                "no `data` chunk before the end of the file",
            ));
        }
        let mut hdr = [0u8; 8];
        read_at(file, &mut hdr, pos)?;
        let tag = [hdr[0], hdr[1], hdr[2], hdr[3]];
        let clen = u64::from(u32_at(&hdr, 4));
        let body = pos + 8;
        let avail = len - body;
        let name = tag.escape_ascii().to_string();
        match &tag {
            b"fmt " => {
                if fmt.is_some() {
                    return Err(Fail::malformed("second `fmt ` chunk"));
                }
                if clen < 16 {
                    return Err(Fail::malformed(format!("`fmt ` chunk of {clen} bytes")));
                }
                if clen > avail {
                    return Err(Fail::malformed(
                        "`fmt ` chunk runs past the end of the file",
                    ));
                }
                let mut f = [0u8; 16];
                read_at(file, &mut f, body)?;
                fmt = Some(check_fmt(&f, limits)?);
            }
            b"data" => {
                let Some((_, align)) = fmt else {
                    return Err(Fail::malformed("`data` chunk before the `fmt ` chunk"));
                };
                let align = u64::from(align);
                // Streamed (u32::MAX) or truncated: present what the file really holds.
                let real = clen.min(avail) / align * align;
                if real != clen {
                    patches.push((pos + 4, real as u32));
                }
                let riff_len = u64::from(u32_at(&read_head(file, base)?, 4));
                let needed = body + real - base - 8;
                if riff_len < needed || base + riff_len + 8 > len {
                    let fixed = u32::try_from(len - base - 8).unwrap_or(u32::MAX);
                    patches.push((base + 4, fixed));
                }
                return Ok(Sniffed {
                    container: Container::Wav,
                    patches,
                    wav_frames: Some(real / align),
                    wav_declared: (clen != u64::from(u32::MAX)).then_some(clen / align),
                });
            }
            _ => {
                if clen > avail {
                    return Err(Fail::malformed(format!(
                        "chunk `{name}` of {clen} bytes runs past the end of the file"
                    )));
                }
                if clen > limits.chunk_bytes {
                    return Err(Fail::Limit {
                        what: "RIFF chunk size",
                        value: clen,
                        limit: limits.chunk_bytes,
                    });
                }
            }
        }
        pos = body + clen + (clen & 1);
    }
    Err(Fail::Limit {
        what: "RIFF chunks before `data`",
        value: u64::from(MAX_CHUNKS) + 1,
        limit: u64::from(MAX_CHUNKS),
    })
}

fn read_head(file: &File, base: u64) -> Result<[u8; 8], Fail> {
    let mut h = [0u8; 8];
    read_at(file, &mut h, base)?;
    Ok(h)
}

/// Checks a `fmt ` chunk's first 16 bytes; returns (channels, block_align).
fn check_fmt(f: &[u8; 16], limits: &Limits) -> Result<(u16, u16), Fail> {
    let format = u16_at(f, 0);
    let channels = u16_at(f, 2);
    let rate = u32_at(f, 4);
    let align = u16_at(f, 12);
    let bits = u16_at(f, 14);
    if channels == 0 {
        return Err(Fail::malformed("zero channels"));
    }
    if u32::from(channels) > limits.channels {
        return Err(Fail::Limit {
            what: "channels",
            value: channels.into(),
            limit: limits.channels.into(),
        });
    }
    if rate == 0 {
        return Err(Fail::malformed("zero sample rate"));
    }
    if rate > limits.sample_rate {
        return Err(Fail::Limit {
            what: "sample rate",
            value: rate.into(),
            limit: limits.sample_rate.into(),
        });
    }
    if align == 0 {
        return Err(Fail::malformed("zero block align"));
    }
    if matches!(
        format,
        WAVE_FORMAT_PCM | WAVE_FORMAT_IEEE_FLOAT | WAVE_FORMAT_EXTENSIBLE
    ) {
        if bits == 0 || bits > 64 {
            return Err(Fail::malformed(format!("{bits} bits per sample")));
        }
        let expected = u32::from(channels) * u32::from(bits).div_ceil(8);
        if u32::from(align) != expected {
            return Err(Fail::malformed(format!(
                "block align {align} does not match {channels} channels of {bits} bits"
            )));
        }
    }
    Ok((channels, align))
}

/// The file as the decoding library sees it: the same bytes, with a few length fields
/// corrected.
#[derive(Debug)]
pub(crate) struct Patched {
    file: File,
    pos: u64,
    len: u64,
    patches: Vec<(u64, u32)>,
}

impl Patched {
    pub(crate) fn new(file: File, len: u64, patches: Vec<(u64, u32)>) -> Self {
        Patched {
            file,
            pos: 0,
            len,
            patches,
        }
    }
}

impl Read for Patched {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf)?;
        let start = self.pos;
        for &(at, value) in &self.patches {
            for (i, b) in value.to_le_bytes().into_iter().enumerate() {
                let p = at + i as u64;
                if p >= start && p < start + n as u64 {
                    buf[(p - start) as usize] = b;
                }
            }
        }
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for Patched {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.pos = self.file.seek(to)?;
        Ok(self.pos)
    }
}

impl MediaSource for Patched {
    fn is_seekable(&self) -> bool {
        true
    }

    fn byte_len(&self) -> Option<u64> {
        Some(self.len)
    }
}
