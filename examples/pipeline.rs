//! The main job: an audio-ingest pipeline on built-in inputs, run under a supervisor.
//!
//! Six uploads (synthetic WAV bytes generated here) go through the same steps: spool the
//! upload to a temp file, unpack "frames" into a temp dir, summarise them, and persist the
//! summary atomically into an output directory. Four of the jobs go wrong on purpose: a
//! malformed upload (error path), a panic mid-job, a job that loses a race against a
//! deadline (its future is dropped), and a job that `mem::forget`s a guard. Afterwards the
//! program checks that no temp path and no file descriptor is left, and prints the stats
//! and the shutdown report.
//!
//! Run it with `cargo run --example pipeline`.

use std::time::Duration;

use custodian::{Scope, Supervisor};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

/// A 16-bit mono PCM WAV of `frames` samples of a ramp.
fn wav(frames: u32) -> Vec<u8> {
    let data_len = frames * 2;
    let mut v = Vec::with_capacity(44 + data_len as usize);
    v.extend_from_slice(b"RIFF");
    v.extend_from_slice(&(36 + data_len).to_le_bytes());
    v.extend_from_slice(b"WAVEfmt ");
    v.extend_from_slice(&16u32.to_le_bytes());
    v.extend_from_slice(&1u16.to_le_bytes()); // PCM
    v.extend_from_slice(&1u16.to_le_bytes()); // mono
    v.extend_from_slice(&16_000u32.to_le_bytes());
    v.extend_from_slice(&32_000u32.to_le_bytes());
    v.extend_from_slice(&2u16.to_le_bytes());
    v.extend_from_slice(&16u16.to_le_bytes());
    v.extend_from_slice(b"data");
    v.extend_from_slice(&data_len.to_le_bytes());
    for i in 0..frames {
        v.extend_from_slice(&((i % 2000) as i16 - 1000).to_le_bytes());
    }
    v
}

#[derive(Clone, Copy, Debug)]
enum Fault {
    None,
    Malformed,
    Panic,
    Deadline,
    Forget,
}

async fn job(
    s: Scope,
    n: usize,
    fault: Fault,
    out_dir: std::path::PathBuf,
) -> Result<String, String> {
    // 1. Spool the upload.
    let mut upload = s
        .temp()
        .prefix("upload-")
        .suffix(".wav")
        .label("upload")
        .file()
        .await
        .map_err(|e| e.to_string())?;
    let bytes = match fault {
        Fault::Malformed => b"RIFF\x00\x00\x00\x00JUNK".to_vec(),
        _ => wav(16_000),
    };
    upload.write_all(&bytes).await.map_err(|e| e.to_string())?;
    upload.rewind().await.map_err(|e| e.to_string())?;
    let mut header = [0u8; 44];
    upload
        .read_exact(&mut header)
        .await
        .map_err(|e| format!("job {n}: upload too short: {e}"))?;
    if &header[8..12] != b"WAVE" {
        return Err(format!("job {n}: not a WAVE file"));
    }
    // 2. Unpack frames into a temp dir.
    let frames = s
        .temp()
        .prefix("frames-")
        .label("frames")
        .dir()
        .await
        .map_err(|e| e.to_string())?;
    let mut pcm = Vec::new();
    upload
        .read_to_end(&mut pcm)
        .await
        .map_err(|e| e.to_string())?;
    for (i, chunk) in pcm.chunks(3200).enumerate() {
        tokio::fs::write(frames.path().join(format!("{i:04}.pcm")), chunk)
            .await
            .map_err(|e| e.to_string())?;
    }
    match fault {
        Fault::Panic => panic!("job {n}: decoder bug"),
        Fault::Deadline => tokio::time::sleep(Duration::from_secs(3600)).await,
        Fault::Forget => std::mem::forget(s.temp().label("forgotten").file().await),
        _ => {}
    }
    // 3. Summarise and persist atomically: write a temp file, then rename it into place.
    let samples: Vec<i16> = pcm
        .chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .collect();
    let rms =
        (samples.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / samples.len() as f64).sqrt();
    let mut summary = s
        .temp()
        .suffix(".json")
        .label("summary")
        .file()
        .await
        .map_err(|e| e.to_string())?;
    let text = format!(
        "{{\"job\":{n},\"frames\":{},\"rms\":{rms:.1}}}\n",
        samples.len()
    );
    summary
        .write_all(text.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let kept = summary
        .persist(out_dir.join(format!("job-{n}.json")))
        .await
        .map_err(|e| e.error.to_string())?;
    kept.close().await.map_err(|e| e.to_string())?;
    Ok(text.trim().to_owned())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The panic in job 3 is part of the demo: print it in one line.
    std::panic::set_hook(Box::new(|info| eprintln!("(expected) panic: {info}")));
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let fds_before = custodian_suite::open_fds();
    let out_dir =
        std::env::temp_dir().join(format!("custodian-pipeline-out-{}", std::process::id()));
    std::fs::create_dir_all(&out_dir)?;
    let sup = Supervisor::builder()
        .grace(Duration::from_millis(500))
        .start()?;
    println!("temp root: {}", sup.temp_root().display());

    let faults = [
        Fault::None,
        Fault::None,
        Fault::Malformed,
        Fault::Panic,
        Fault::Deadline,
        Fault::Forget,
    ];
    let mut tasks = Vec::new();
    for (n, fault) in faults.into_iter().enumerate() {
        let (sup, out) = (sup.clone(), out_dir.clone());
        tasks.push(tokio::spawn(async move {
            let run = sup.scope(&format!("job-{n}"), async move |s| job(s, n, fault, out).await);
            tokio::select! {
                r = run => r.map_err(|e| e.to_string()).and_then(|r| r),
                () = tokio::time::sleep(Duration::from_millis(300)) => Err(format!("job {n}: deadline exceeded")),
            }
        }));
    }
    for (n, t) in tasks.into_iter().enumerate() {
        match t.await {
            Ok(Ok(summary)) => println!("job {n}: ok {summary}"),
            Ok(Err(e)) => println!("job {n}: failed: {e}"),
            Err(e) => println!("job {n}: panicked: {e}"),
        }
    }

    println!("\nstats after all jobs:\n{}", sup.stats());
    for leak in sup.leaked() {
        println!("leak: {leak}");
    }
    let left = custodian_suite::entries(sup.temp_root());
    println!("temp root entries left after the jobs: {}", left.len());
    let report = sup.shutdown().await;
    println!("\n{report}");
    drop(sup);
    let fds_after = custodian_suite::open_fds();
    println!("open fds: {fds_before} before, {fds_after} after");
    if fds_after > fds_before {
        println!("{:#?}", custodian_suite::fd_targets());
    }
    println!("outputs: {:?}", custodian_suite::entries(&out_dir));
    std::fs::remove_dir_all(&out_dir)?;
    let ok = left.is_empty()
        && fds_after <= fds_before
        && report.stats.is_consistent()
        && report.stats.live() == 0;
    if !ok {
        return Err("resources were left behind".into());
    }
    println!("nothing left behind");
    Ok(())
}
