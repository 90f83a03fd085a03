//! `custodian probe FILE...`: each file through the managed decoder, one line (or one
//! JSON object) each. Hostile input is bounded by the decoder's `Limits` (declared sizes
//! capped before allocating, panics caught as errors) and by a per-file timeout; a FIFO,
//! socket or device is refused at once by the decoder, never waited on. A file cut short
//! (its header declares more frames than it holds) is reported as truncated, and fails
//! the run with `--strict`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde::Serialize;
use tokio_custodian::Supervisor;
use tokio_custodian_audio::AudioDecoder;

/// Options of `custodian probe`.
#[derive(Debug, Args)]
pub(crate) struct ProbeArgs {
    /// Audio files to probe.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Print one JSON array instead of one line per file.
    #[arg(long)]
    json: bool,
    /// Read the header only; by default every frame is decoded and counted, which finds
    /// damage past the header.
    #[arg(long)]
    header_only: bool,
    /// Exit 1 when a file is truncated (its header declares more frames than it holds);
    /// by default a truncated file is reported and what it holds is counted.
    #[arg(long)]
    strict: bool,
    /// Give up on a file after this long (e.g. 30s, 500ms).
    #[arg(long, default_value = "30s", value_parser = crate::parse_duration)]
    timeout: Duration,
}

#[derive(Debug, Serialize)]
struct Probed {
    path: PathBuf,
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    container: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    codec: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sample_rate: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    channels: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bits_per_sample: Option<u32>,
    /// Frames the header declares (absent when it declares none: a streamed WAV).
    #[serde(skip_serializing_if = "Option::is_none")]
    declared_frames: Option<u64>,
    /// Frames the file holds, as counted from its size (WAV) or declared (others).
    #[serde(skip_serializing_if = "Option::is_none")]
    present_frames: Option<u64>,
    /// Frames actually decoded (absent with `--header-only`).
    #[serde(skip_serializing_if = "Option::is_none")]
    frames: Option<u64>,
    /// The header declares more frames than the file holds (or than were decoded).
    #[serde(skip_serializing_if = "Option::is_none")]
    truncated: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl Probed {
    fn failed(path: PathBuf, error: String) -> Self {
        Self {
            path,
            ok: false,
            container: None,
            codec: None,
            sample_rate: None,
            channels: None,
            bits_per_sample: None,
            declared_frames: None,
            present_frames: None,
            frames: None,
            truncated: None,
            duration_s: None,
            error: Some(error),
        }
    }

    fn line(&self) -> String {
        let p = self.path.display();
        if let Some(e) = &self.error {
            return format!("{p}: error: {e}");
        }
        let opt = |v: Option<String>| v.unwrap_or_else(|| "?".to_owned());
        let cut = match (self.truncated, self.declared_frames) {
            (Some(true), Some(d)) => format!(
                " truncated: the header declares {d} frames, {} present",
                opt(self.frames.or(self.present_frames).map(|v| v.to_string()))
            ),
            _ => String::new(),
        };
        format!(
            "{p}: {} {} {} Hz {} ch {} bit {} frames {} s{cut}",
            opt(self.container.clone()),
            opt(self.codec.clone()),
            opt(self.sample_rate.map(|v| v.to_string())),
            opt(self.channels.map(|v| v.to_string())),
            opt(self.bits_per_sample.map(|v| v.to_string())),
            opt(self.frames.or(self.present_frames).map(|v| v.to_string())),
            opt(self.duration_s.map(|v| format!("{v:.3}"))),
        )
    }
}

/// Probes one file in its own scope, so that its decoder is released when it ends.
async fn probe(sup: &Supervisor, path: PathBuf, header_only: bool) -> Probed {
    let p = path.clone();
    let body = sup.scope("probe", async move |s| {
        let mut dec = AudioDecoder::open(&s, &p)
            .await
            .map_err(|e| e.to_string())?;
        let info = dec.info().clone();
        let channels = u64::from(info.channels.max(1));
        let mut frames = None;
        if !header_only {
            let mut n = 0u64;
            loop {
                let chunk = dec.read_f32(4096).await.map_err(|e| e.to_string())?;
                if chunk.is_empty() {
                    break;
                }
                n = n.saturating_add(chunk.len() as u64 / channels);
            }
            frames = Some(n);
        }
        dec.close().await.map_err(|e| e.to_string())?;
        let duration_s = match frames {
            Some(n) if info.sample_rate > 0 => Some(n as f64 / f64::from(info.sample_rate)),
            _ => info.duration.map(|d| d.as_secs_f64()),
        };
        // WAV: known from the file's size at open; others: fewer frames decoded than
        // the header declared.
        let short = matches!((frames, info.declared_frames), (Some(n), Some(d)) if n < d);
        let truncated = info.is_truncated() || short;
        Ok::<_, String>(Probed {
            path: p,
            ok: true,
            container: Some(info.container.to_string()),
            codec: Some(info.codec.clone()),
            sample_rate: Some(info.sample_rate),
            channels: Some(info.channels),
            bits_per_sample: info.bits_per_sample,
            declared_frames: info.declared_frames,
            present_frames: info.total_frames,
            frames,
            truncated: Some(truncated),
            duration_s,
            error: None,
        })
    });
    match body.await {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => Probed::failed(path, e),
        Err(e) => Probed::failed(path.clone(), format!("probe {}: {e}", path.display())),
    }
}

/// Runs `custodian probe`; returns the exit code.
pub(crate) async fn main(args: ProbeArgs) -> u8 {
    let sup = match Supervisor::builder().start() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("custodian probe: {e}");
            return 125;
        }
    };
    let mut out = Vec::new();
    for path in args.files {
        let shown = path.display().to_string();
        let r = tokio::time::timeout(args.timeout, probe(&sup, path.clone(), args.header_only));
        let p = r.await.unwrap_or_else(|_| {
            Probed::failed(
                path,
                format!("probe {shown}: timed out after {:?}", args.timeout),
            )
        });
        if !args.json {
            println!("{}", p.line());
        }
        out.push(p);
    }
    let report = sup.shutdown().await;
    if args.json {
        match serde_json::to_string_pretty(&out) {
            Ok(j) => println!("{j}"),
            Err(e) => {
                eprintln!("custodian probe: cannot write JSON: {e}");
                return 125;
            }
        }
    }
    if !report.is_clean() {
        eprintln!("custodian probe: resources were left behind:\n{report}");
        return 125;
    }
    let truncated = args.strict && out.iter().any(|p| p.truncated == Some(true));
    u8::from(truncated || out.iter().any(|p| !p.ok))
}
