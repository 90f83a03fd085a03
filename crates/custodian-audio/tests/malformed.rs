//! A corpus of crafted malformed files: each gives a typed error (or, where the oddity is
//! common in real files and the audio is intact, an exact decode), in bounded time and
//! memory, with no panic escaping, every fd closed and the decoder counted as released.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{Chunk, Dir, chunk, fmt_body, pcm16, peak_rss_kib, riff, wav16};
use custodian_suite::{fd_targets, open_fds};
use tokio_custodian::{ResourceKind, Supervisor};
use tokio_custodian_audio::{AudioDecoder, Error, Op};

/// What a case must produce.
#[derive(Debug, Clone, Copy)]
enum Want {
    /// Decodes to exactly this many frames of the 16-bit stereo fixture.
    Frames(usize),
    Malformed(Op),
    Limit(&'static str),
    Unsupported,
    NotAFile,
    NotFound,
}

fn fmt16() -> Chunk {
    chunk(b"fmt ", fmt_body(1, 2, 16_000, 4, 16))
}

fn data(frames: usize) -> Chunk {
    chunk(b"data", pcm16(2, frames, 7).0)
}

fn with_len(mut c: Chunk, len: u32) -> Chunk {
    c.len = Some(len);
    c
}

/// Every case: name, file bytes (None: a special path), expected outcome.
fn corpus(dir: &Dir) -> Vec<(&'static str, PathBuf, Want)> {
    let (good, _) = wav16(2, 16_000, 1000);
    let mut v: Vec<(&'static str, Vec<u8>, Want)> = vec![
        ("empty", vec![], Want::Malformed(Op::Open)),
        (
            "truncated header",
            good[..20].to_vec(),
            Want::Malformed(Op::Open),
        ),
        (
            "truncated RIFF magic",
            good[..6].to_vec(),
            Want::Malformed(Op::Open),
        ),
        // 500 whole frames and half of the next: the whole frames decode.
        (
            "truncated data",
            good[..44 + 500 * 4 + 2].to_vec(),
            Want::Frames(500),
        ),
        (
            "zero channels",
            riff(
                &[chunk(b"fmt ", fmt_body(1, 0, 16_000, 4, 16)), data(10)],
                None,
            ),
            Want::Malformed(Op::Open),
        ),
        (
            "zero sample rate",
            riff(&[chunk(b"fmt ", fmt_body(1, 2, 0, 4, 16)), data(10)], None),
            Want::Malformed(Op::Open),
        ),
        (
            "zero block align",
            riff(
                &[chunk(b"fmt ", fmt_body(1, 2, 16_000, 0, 16)), data(10)],
                None,
            ),
            Want::Malformed(Op::Open),
        ),
        (
            "absurd bits per sample",
            riff(
                &[chunk(b"fmt ", fmt_body(1, 2, 16_000, 4, 4096)), data(10)],
                None,
            ),
            Want::Malformed(Op::Open),
        ),
        (
            "block align disagrees with channels and bits",
            riff(
                &[chunk(b"fmt ", fmt_body(1, 2, 16_000, 6, 16)), data(10)],
                None,
            ),
            Want::Malformed(Op::Open),
        ),
        (
            "1000 channels",
            riff(
                &[
                    chunk(b"fmt ", fmt_body(1, 1000, 16_000, 2000, 16)),
                    data(10),
                ],
                None,
            ),
            Want::Limit("channels"),
        ),
        (
            "4 GHz sample rate",
            riff(
                &[
                    chunk(b"fmt ", fmt_body(1, 2, 4_000_000_000, 4, 16)),
                    data(10),
                ],
                None,
            ),
            Want::Limit("sample rate"),
        ),
        // Streamed WAVs (ffmpeg to a pipe) declare u32::MAX: decode what is there.
        (
            "data length u32::MAX",
            riff(&[fmt16(), with_len(data(300), u32::MAX)], Some(u32::MAX)),
            Want::Frames(300),
        ),
        // A wrong RIFF length is common and harmless when the chunks are intact.
        (
            "RIFF length too small",
            riff(&[fmt16(), data(300)], Some(4)),
            Want::Frames(300),
        ),
        (
            "second fmt chunk",
            riff(&[fmt16(), fmt16(), data(10)], None),
            Want::Malformed(Op::Open),
        ),
        (
            "fmt chunk too short",
            riff(&[chunk(b"fmt ", vec![1, 0, 2, 0]), data(10)], None),
            Want::Malformed(Op::Open),
        ),
        (
            "data before fmt",
            riff(&[data(10), fmt16()], None),
            Want::Malformed(Op::Open),
        ),
        (
            "no data chunk",
            riff(&[fmt16()], None),
            Want::Malformed(Op::Open),
        ),
        (
            "oversized LIST chunk (declared 2 GiB)",
            riff(
                &[
                    fmt16(),
                    with_len(chunk(b"LIST", b"INFOISFT".to_vec()), 0x7FFF_FFF0),
                    data(10),
                ],
                None,
            ),
            Want::Malformed(Op::Open),
        ),
        (
            "oversized smpl chunk (really 2 MiB)",
            riff(&[fmt16(), chunk(b"smpl", vec![0; 2 << 20]), data(10)], None),
            Want::Limit("RIFF chunk size"),
        ),
        (
            "chunk running past the end of the file",
            riff(
                &[
                    fmt16(),
                    with_len(chunk(b"junk", vec![0; 8]), 1000),
                    data(10),
                ],
                None,
            ),
            Want::Malformed(Op::Open),
        ),
        (
            "odd chunk without pad byte",
            riff(
                &[
                    fmt16(),
                    Chunk {
                        tag: *b"junk",
                        len: None,
                        body: vec![1, 2, 3],
                        pad: false,
                    },
                    data(10),
                ],
                None,
            ),
            Want::Malformed(Op::Open),
        ),
        (
            "odd chunk with its pad byte",
            riff(&[fmt16(), chunk(b"junk", vec![1, 2, 3]), data(10)], None),
            Want::Frames(10),
        ),
        (
            "300 tiny chunks before data",
            riff(
                &std::iter::once(fmt16())
                    .chain((0..300).map(|_| chunk(b"junk", vec![])))
                    .chain(std::iter::once(data(10)))
                    .collect::<Vec<_>>(),
                None,
            ),
            Want::Limit("RIFF chunks before `data`"),
        ),
        (
            "ADPCM codec (not built in)",
            riff(
                &[
                    chunk(
                        b"fmt ",
                        [fmt_body(0x11, 1, 8_000, 256, 4), vec![2, 0, 0xF9, 1]].concat(),
                    ),
                    data(10),
                ],
                None,
            ),
            Want::Unsupported,
        ),
        (
            "16-bit float",
            riff(
                &[chunk(b"fmt ", fmt_body(3, 2, 16_000, 4, 16)), data(10)],
                None,
            ),
            Want::Malformed(Op::Probe),
        ),
        (
            "ID3 prefix (skipped)",
            id3_prefixed(&good),
            Want::Frames(1000),
        ),
        // symphonia's probe searches from the start: a header inside the tag is checked.
        (
            "bad WAV hidden inside an ID3 tag",
            [
                id3_tag(&riff(
                    &[chunk(b"fmt ", fmt_body(1, 0, 16_000, 4, 16)), data(2)],
                    None,
                )),
                good.clone(),
            ]
            .concat(),
            Want::Malformed(Op::Open),
        ),
        (
            "RIFF but not WAVE",
            [&b"RIFF\x04\0\0\0AVI "[..], &[0; 32]].concat(),
            Want::Unsupported,
        ),
        (
            "text file renamed .wav",
            b"hello, this is not audio\n".repeat(10),
            Want::Unsupported,
        ),
    ];
    // Random garbage after a valid RIFF/WAVE header.
    let mut r = common::Rng(0x5eed);
    for name in ["random body 1", "random body 2", "random body 3"] {
        let mut b = good[..12].to_vec();
        b.extend((0..4096).map(|_| r.next() as u8));
        v.push((name, b, Want::Malformed(Op::Open)));
    }
    let mut out: Vec<(&'static str, PathBuf, Want)> = v
        .into_iter()
        .enumerate()
        .map(|(i, (name, bytes, want))| (name, dir.file(&format!("{i:02}.wav"), &bytes), want))
        .collect();
    let sub = dir.0.join("a-directory.wav");
    std::fs::create_dir_all(&sub).unwrap();
    out.push(("a directory", sub, Want::NotAFile));
    out.push(("a missing file", dir.0.join("missing.wav"), Want::NotFound));
    out
}

/// A 16-byte ID3v2.4 padding tag, then `wav`.
fn id3_prefixed(wav: &[u8]) -> Vec<u8> {
    [id3_tag(&[0; 16]), wav.to_vec()].concat()
}

/// An ID3v2.4 tag whose body is `body` (syncsafe size).
fn id3_tag(body: &[u8]) -> Vec<u8> {
    let n = body.len() as u32;
    let size = [
        (n >> 21) & 0x7F,
        (n >> 14) & 0x7F,
        (n >> 7) & 0x7F,
        n & 0x7F,
    ]
    .map(|b| b as u8);
    [&b"ID3\x04\x00\x00"[..], &size, body].concat()
}

fn check(name: &str, want: Want, got: &Result<usize, Error>) -> bool {
    match (want, got) {
        (Want::Frames(n), Ok(f)) => *f == n,
        (Want::Malformed(op), Err(Error::Malformed { op: o, .. })) => *o == op,
        (Want::Limit(what), Err(Error::Limit { what: w, .. })) => *w == what,
        (Want::Unsupported, Err(Error::Unsupported { .. })) => true,
        (Want::NotAFile, Err(Error::NotAFile { .. })) => true,
        (Want::NotFound, Err(Error::Io { source, .. })) => {
            source.kind() == std::io::ErrorKind::NotFound
        }
        _ => {
            eprintln!("{name}: wanted {want:?}, got {got:?}");
            false
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_corpus_gives_typed_errors_and_releases_everything() {
    let dir = Dir::new("malformed");
    let cases = corpus(&dir);
    assert!(cases.len() >= 30);
    let sup = Supervisor::builder().start().unwrap();
    // Start's reap of abandoned roots runs on the blocking pool with fds of its own.
    sup.reaped_at_start().await;
    // Warm the blocking pool and the runtime before taking the fd baseline.
    let (warm, _) = wav16(1, 8_000, 10);
    let warm = dir.file("warm.wav", &warm);
    AudioDecoder::open(&sup.root(), &warm)
        .await
        .unwrap()
        .close()
        .await
        .unwrap();
    let fds = open_fds();
    let rss = peak_rss_kib();
    let mut failures = Vec::new();
    for (i, (name, path, want)) in cases.iter().enumerate() {
        let started = Instant::now();
        let got = sup
            .scope(name, async |s| match AudioDecoder::open(&s, path).await {
                Ok(mut dec) => {
                    let frames = dec.read_all::<i16>().await.map(|v| v.len() / 2);
                    // Whatever the frames, reading on must not panic either.
                    let _ = dec.seek(Duration::from_millis(10)).await;
                    let _ = dec.read_f32(100).await;
                    frames
                }
                Err(e) => {
                    // The error names the path it concerns.
                    assert_eq!(e.path(), Some(path.as_path()), "{name}");
                    assert!(e.to_string().contains(&*path.to_string_lossy()), "{e}");
                    Err(e)
                }
            })
            .await
            .expect("the scope itself succeeds");
        let took = started.elapsed();
        println!(
            "{name:45} -> {}",
            match &got {
                Ok(f) => format!("decoded {f} frames"),
                Err(e) => e.to_string().replace(&*dir.0.to_string_lossy(), "$DIR"),
            }
        );
        if !check(name, *want, &got) {
            failures.push(*name);
        }
        assert!(took < Duration::from_secs(10), "{name} took {took:?}");
        let s = sup.stats().kind(ResourceKind::AudioDecoder);
        let opened = i as u64 + 2;
        assert_eq!(
            (s.created, s.released_total(), s.live),
            (opened, opened, 0),
            "{name}"
        );
        assert_eq!(open_fds(), fds, "{name}: fds {:#?}", fd_targets());
    }
    let grew_mib = (peak_rss_kib() - rss) / 1024;
    assert!(grew_mib < 64, "peak memory grew by {grew_mib} MiB");
    assert!(failures.is_empty(), "unexpected outcomes: {failures:?}");
    let report = sup.shutdown().await;
    assert!(report.is_clean(), "{report}");
}
