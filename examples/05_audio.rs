//! Audio: a managed symphonia decoder read in 100 ms frames, the way a speech service
//! consumes a WAV (`wave.readframes(1600)`), closed on every path.
//!
//! The example writes a 2-second 16 kHz mono WAV into a managed temp file, prints its
//! format, then reads it in 100 ms chunks with the decode running off the async threads.
//! Three inputs go wrong: a truncated header and a file of garbage give typed errors that
//! name the file (never a panic), a header declaring 1,000 channels is refused by the
//! limits before anything is allocated for it, and a consumer that fails half-way ends
//! its scope with the decoder still open, which the scope closes. The decoder stats at
//! the end read: every decoder created was released, none is live.
//!
//! Run it with `cargo run --example 05_audio`.

use tokio::io::AsyncWriteExt;
use tokio_custodian::{ResourceKind, Supervisor};
use tokio_custodian_audio::{AudioDecoder, Limits};

const RATE: u32 = 16_000;

/// A 16-bit PCM WAV: `channels` channels of `frames` frames of a 440 Hz tone.
fn wav(channels: u16, frames: u32) -> Vec<u8> {
    let block = 2 * u32::from(channels);
    let mut v = Vec::new();
    let le32 = |v: &mut Vec<u8>, x: u32| v.extend_from_slice(&x.to_le_bytes());
    v.extend_from_slice(b"RIFF");
    le32(&mut v, 36 + block * frames);
    v.extend_from_slice(b"WAVEfmt ");
    le32(&mut v, 16);
    v.extend_from_slice(&1u16.to_le_bytes()); // PCM
    v.extend_from_slice(&channels.to_le_bytes());
    le32(&mut v, RATE);
    le32(&mut v, RATE * block);
    v.extend_from_slice(&(block as u16).to_le_bytes());
    v.extend_from_slice(&16u16.to_le_bytes());
    v.extend_from_slice(b"data");
    le32(&mut v, block * frames);
    for i in 0..frames {
        let x = (f64::from(i) * 440.0 * std::f64::consts::TAU / f64::from(RATE)).sin();
        for _ in 0..channels {
            v.extend_from_slice(&((x * 8000.0) as i16).to_le_bytes());
        }
    }
    v
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sup = Supervisor::builder().start()?;
    let root = sup.root();
    // Inputs, as managed temp files (removed at shutdown at the latest).
    let mut inputs = Vec::new();
    for bytes in [
        wav(1, 2 * RATE),              // good
        wav(1, RATE)[..30].to_vec(),   // truncated header
        b"not a wav at all".repeat(8), // garbage
        wav(1000, 1),                  // declares 1,000 channels
    ] {
        let mut f = root.temp().suffix(".wav").file().await?;
        f.write_all(&bytes).await?;
        f.flush().await?;
        inputs.push(f);
    }

    // The good file, in 100 ms chunks.
    let good = inputs[0].path().to_path_buf();
    let chunks = sup
        .scope("transcribe", async |s| {
            let mut dec = AudioDecoder::open(&s, &good).await?;
            let info = dec.info();
            println!(
                "{} {}: {} Hz, {} ch, {:?} bits, {:?}",
                info.container,
                info.codec,
                info.sample_rate,
                info.channels,
                info.bits_per_sample,
                info.duration
            );
            let mut n = 0;
            loop {
                let chunk = dec.read_i16(RATE as usize / 10).await?;
                if chunk.is_empty() {
                    break;
                }
                n += 1;
            }
            dec.close().await?;
            Ok::<_, tokio_custodian_audio::Error>(n)
        })
        .await??;
    println!("read {chunks} chunks of 100 ms");
    assert_eq!(chunks, 20);

    // Malformed inputs: typed errors naming the file.
    let mono = Limits::default().max_channels(2);
    for input in &inputs[1..] {
        let err = AudioDecoder::open_with(&root, input.path(), mono)
            .await
            .expect_err("malformed");
        println!("refused: {err}");
        assert_eq!(err.path(), Some(input.path()));
    }

    // A consumer that fails half-way: the scope closes the decoder it left open.
    let failed = sup
        .scope("fails", async |s| {
            let mut dec = AudioDecoder::open(&s, &good).await?;
            dec.read_i16(RATE as usize / 10).await?;
            Err::<(), _>(tokio_custodian_audio::Error::from(
                tokio_custodian::Error::Resource {
                    op: tokio_custodian::Operation::Decode,
                    path: good.clone(),
                    message: "the recogniser crashed".into(),
                },
            ))
        })
        .await?;
    println!("failing consumer: {}", failed.unwrap_err());

    let stats = sup.stats().kind(ResourceKind::AudioDecoder);
    println!(
        "decoders: created {}, released {}, live {}",
        stats.created,
        stats.released_total(),
        stats.live
    );
    assert_eq!((stats.live, stats.created), (0, stats.released_total()));
    drop(inputs);
    let report = sup.shutdown().await;
    assert!(report.is_clean(), "{report}");
    Ok(())
}
