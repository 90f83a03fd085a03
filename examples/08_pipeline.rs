//! The main job: an audio-ingest pipeline on built-in inputs, run under a supervisor.
//!
//! Six uploads (16 kHz mono WAVs generated here) go through the steps a speech service
//! takes: spool the upload to a temp file, decode it in 100 ms frames with a managed
//! symphonia decoder (the `wave.readframes` loop), shell out to a tool (`cksum`) as a
//! managed child process, and persist a JSON summary atomically into an output directory.
//! Four jobs go wrong on purpose: a malformed upload (a typed error naming the path), a
//! panic while holding a decoder, a temp dir and a running child, a job that loses a race
//! against its deadline while a child runs (its future is dropped), and a job that
//! `mem::forget`s a temp file and a child. Afterwards the program checks that no temp path,
//! no file descriptor, no child process and no zombie is left, and prints the stats and the
//! shutdown report.
//!
//! Run it with `cargo run --example 08_pipeline`.

use std::path::PathBuf;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio_custodian::{Scope, Supervisor};
use tokio_custodian_audio::AudioDecoder;

/// A 16-bit mono PCM WAV of `frames` samples of a 440 Hz tone at 16 kHz.
fn wav(frames: u32) -> Vec<u8> {
    let mut v = Vec::with_capacity(44 + 2 * frames as usize);
    let le32 = |v: &mut Vec<u8>, x: u32| v.extend_from_slice(&x.to_le_bytes());
    v.extend_from_slice(b"RIFF");
    le32(&mut v, 36 + 2 * frames);
    v.extend_from_slice(b"WAVEfmt ");
    le32(&mut v, 16);
    v.extend_from_slice(&[1, 0, 1, 0]); // PCM, mono
    le32(&mut v, 16_000);
    le32(&mut v, 32_000);
    v.extend_from_slice(&[2, 0, 16, 0]); // block align 2, 16 bits
    v.extend_from_slice(b"data");
    le32(&mut v, 2 * frames);
    for i in 0..frames {
        let x = (f64::from(i) * 440.0 * std::f64::consts::TAU / 16_000.0).sin();
        v.extend_from_slice(&((x * 8000.0) as i16).to_le_bytes());
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
    out: PathBuf,
) -> Result<String, Box<dyn std::error::Error>> {
    // 1. Spool the upload.
    let mut upload = s
        .temp()
        .prefix("upload-")
        .suffix(".wav")
        .label("upload")
        .file()
        .await?;
    let bytes = if let Fault::Malformed = fault {
        b"RIFF\x24\0\0\0WAVEfmt \x10\0\0\0junk".to_vec()
    } else {
        wav(32_000)
    };
    upload.write_all(&bytes).await?;
    upload.flush().await?;

    // 2. Decode in 100 ms frames, like `wave.readframes(1600)` in a loop.
    let mut decoder = AudioDecoder::open(&s, upload.path()).await?;
    let (mut frames, mut energy) = (0usize, 0f64);
    loop {
        let chunk = decoder.read_i16(1600).await?;
        if chunk.is_empty() {
            break;
        }
        frames += chunk.len();
        energy += chunk.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>();
    }
    decoder.close().await?;

    // 3. Shell out to a tool, as a managed child (own process group, TERM then KILL).
    let sum = s
        .command("cksum")
        .arg(upload.path())
        .deadline(Duration::from_secs(10))
        .output()
        .await?;
    let cksum = String::from_utf8_lossy(&sum.stdout)
        .split_whitespace()
        .next()
        .unwrap_or("?")
        .to_owned();

    match fault {
        Fault::Panic => {
            let _held = (s.temp_dir().await?, s.command("sleep").arg("1000").spawn()?);
            panic!("job {n}: bug in the post-processing step");
        }
        Fault::Deadline => {
            let mut slow = s.command("sleep").arg("1000").label("slow tool").spawn()?;
            slow.wait().await?; // the job's deadline drops this future first
        }
        Fault::Forget => {
            std::mem::forget(s.temp().label("forgotten temp").file().await?);
            std::mem::forget(
                s.command("sleep")
                    .arg("1000")
                    .label("forgotten child")
                    .spawn()?,
            );
        }
        _ => {}
    }

    // 4. Persist the summary atomically: write a temp file, then rename it into place.
    let rms = (energy / frames.max(1) as f64).sqrt();
    let text =
        format!("{{\"job\":{n},\"frames\":{frames},\"rms\":{rms:.1},\"cksum\":\"{cksum}\"}}");
    let mut summary = s.temp().suffix(".json").label("summary").file().await?;
    summary.write_all(text.as_bytes()).await?;
    let kept = summary
        .persist(out.join(format!("job-{n}.json")))
        .await
        .map_err(|e| e.error)?;
    kept.close().await?;
    Ok(text)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    // The panic of job 2 is part of the demo: print it on one line.
    std::panic::set_hook(Box::new(|info| eprintln!("(expected) panic: {info}")));
    let fds_before = custodian_suite::open_fds();
    let out = std::env::temp_dir().join(format!("custodian-pipeline-out-{}", std::process::id()));
    std::fs::create_dir_all(&out)?;
    let sup = Supervisor::builder()
        .grace(Duration::from_millis(500))
        .start()?;
    println!("temp root: {}", sup.temp_root().display());

    let faults = [
        Fault::None,
        Fault::Malformed,
        Fault::Panic,
        Fault::Deadline,
        Fault::Forget,
        Fault::None,
    ];
    let mut tasks = Vec::new();
    for (n, fault) in faults.into_iter().enumerate() {
        let (sup, out) = (sup.clone(), out.clone());
        tasks.push(tokio::spawn(async move {
            let run = sup.scope(&format!("job-{n}"), async move |s| job(s, n, fault, out).await.map_err(|e| e.to_string()));
            tokio::select! {
                r = run => r.map_err(|e| e.to_string()).and_then(|r| r),
                () = tokio::time::sleep(Duration::from_secs(2)) => Err("deadline exceeded".to_owned()),
            }
        }));
    }
    for (n, t) in tasks.into_iter().enumerate() {
        match t.await {
            Ok(Ok(summary)) => println!("job {n}: ok {summary}"),
            Ok(Err(e)) => println!("job {n}: failed: {e}"),
            Err(e) => println!("job {n}: {e}"),
        }
    }

    println!("\nstats after all jobs:\n{}", sup.stats());
    let left = custodian_suite::entries(sup.temp_root());
    // The deadline job's child is stopped in the background (its future was dropped,
    // which cannot wait): it may be a zombie for a moment after the jobs end, so children
    // are counted once shutdown has waited for every clean-up.
    let report = sup.shutdown().await;
    let zombies = custodian_suite::zombie_children();
    println!("{report}");
    drop(sup);
    let fds_after = custodian_suite::open_fds();
    println!(
        "temp root entries left after the jobs: {}, zombie children: {}",
        left.len(),
        zombies.len()
    );
    println!("open fds: {fds_before} before, {fds_after} after");
    println!("outputs: {:?}", custodian_suite::entries(&out));
    std::fs::remove_dir_all(&out)?;
    let all_released = report.stats.is_consistent()
        && report.stats.live() == 0
        && report.alive_at_shutdown.is_empty();
    if !left.is_empty() || !zombies.is_empty() || fds_after > fds_before || !all_released {
        return Err("resources were left behind".into());
    }
    println!("nothing left behind: every resource was released exactly once");
    Ok(())
}
