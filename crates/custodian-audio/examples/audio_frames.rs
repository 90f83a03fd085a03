//! Reads a WAV file frame by frame, the way a speech recogniser consumes audio, with the
//! decoder owned by a custodian scope. The example writes its own 3-second 16 kHz mono
//! WAV (a tone with a silent gap), then reads it in 100 ms chunks, printing an energy bar
//! per chunk; halfway through, the "recogniser" fails. The failure ends the scope, and the
//! decoder's file is closed anyway: the stats at the end show it released, with no leak.
//!
//! Run: `cargo run -p tokio-custodian-audio --example audio_frames`

use std::time::Duration;

use tokio_custodian::{ResourceKind, Supervisor};
use tokio_custodian_audio::AudioDecoder;

const RATE: u32 = 16_000;

/// Writes 3 s of a 440 Hz tone with a silent second in the middle.
fn write_fixture(path: &std::path::Path) -> Result<(), hound::Error> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec)?;
    for i in 0..3 * RATE {
        let t = f64::from(i) / f64::from(RATE);
        let loud = if (1.0..2.0).contains(&t) { 0.0 } else { 0.6 };
        let s = (t * 440.0 * std::f64::consts::TAU).sin() * loud * f64::from(i16::MAX);
        w.write_sample(s as i16)?;
    }
    w.finalize()
}

/// A stand-in recogniser: fails on the 25th chunk.
fn recognise(n: usize, chunk: &[i16]) -> Result<f64, String> {
    if n == 25 {
        return Err(format!("recogniser crashed on chunk {n}"));
    }
    let energy = chunk.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / chunk.len() as f64;
    Ok(energy.sqrt() / f64::from(i16::MAX))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sup = Supervisor::builder().start()?;
    let wav = sup.root().temp().suffix(".wav").file().await?;
    write_fixture(wav.path())?;

    let result = sup
        .scope("transcribe", async |s| {
            let mut dec = AudioDecoder::open(&s, wav.path()).await?;
            let info = dec.info();
            println!(
                "{} {}: {} Hz, {} ch, {:?} bits, {:?}",
                info.container,
                info.codec,
                info.sample_rate,
                info.channels,
                info.bits_per_sample,
                info.duration.unwrap_or(Duration::ZERO),
            );
            let chunk_frames = (RATE / 10) as usize; // 100 ms, like wave.readframes(1600)
            let mut n = 0;
            loop {
                let chunk = dec.read_i16(chunk_frames).await?;
                if chunk.is_empty() {
                    return Ok::<_, tokio_custodian::Error>(n);
                }
                let level = recognise(n, &chunk).map_err(|m| tokio_custodian::Error::Resource {
                    op: tokio_custodian::Operation::Decode,
                    path: dec.path().to_path_buf(),
                    message: m,
                })?;
                println!(
                    "{:5} ms |{:<30}|",
                    n * 100,
                    "#".repeat((level * 40.0) as usize)
                );
                n += 1;
            }
        })
        .await?;

    match result {
        Ok(chunks) => println!("read {chunks} chunks"),
        Err(e) => println!("scope failed: {e}"),
    }
    let stats = sup.stats().kind(ResourceKind::AudioDecoder);
    println!(
        "audio decoders: created {}, released {}, live {}",
        stats.created,
        stats.released_total(),
        stats.live
    );
    assert_eq!(
        stats.live, 0,
        "the decoder is closed although the scope failed"
    );
    drop(wav);
    let report = sup.shutdown().await;
    println!("shutdown clean: {}", report.is_clean());
    Ok(())
}
