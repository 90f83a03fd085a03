//! `POST /raw/ingest`: the work of `/ingest` done by hand, without custodian — the
//! baseline the benchmark compares against. A spool file removed by a drop guard, symphonia
//! on the blocking pool, `tokio::process` with `kill_on_drop` and a timeout. It is what a
//! careful service does without an owner: no registry, no scope, no process group.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Json;
use axum::body::Body;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::DecoderOptions;
use symphonia::core::io::MediaSourceStream;
use tokio::io::AsyncWriteExt;

use super::{Failure, MAX_UPLOAD, TOOL_DEADLINE, io_failed, next_chunk};

/// Removes the spool file when the request ends, by any path (a dropped future included).
struct Spool(PathBuf);

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

pub(crate) async fn ingest(body: Body) -> Response {
    match work(body).await {
        Ok(meta) => Json(meta).into_response(),
        Err(failure) => failure.into_response(),
    }
}

async fn work(body: Body) -> Result<Value, Failure> {
    static N: AtomicU64 = AtomicU64::new(0);
    let name = format!(
        "raw-upload-{}-{}.wav",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let spool = Spool(std::env::temp_dir().join(name));
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&spool.0)
        .await
        .map_err(io_failed)?;
    let (mut body, mut bytes) = (body.into_data_stream(), 0);
    while let Some(chunk) = next_chunk(&mut body).await? {
        bytes += chunk.len();
        if bytes > MAX_UPLOAD {
            return Err(Failure(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too large",
                String::new(),
            ));
        }
        file.write_all(&chunk).await.map_err(io_failed)?;
    }
    file.flush().await.map_err(io_failed)?;
    drop(file);

    let path = spool.0.clone();
    let decoded = tokio::task::spawn_blocking(move || decode(&path)).await;
    let (rate, channels, frames, peak) = match decoded {
        Ok(Ok(d)) => d,
        Ok(Err(detail)) => {
            return Err(Failure(
                StatusCode::UNPROCESSABLE_ENTITY,
                "bad audio",
                detail,
            ));
        }
        Err(_) => {
            return Err(Failure(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                String::new(),
            ));
        }
    };
    let tool = tokio::process::Command::new("gzip")
        .arg("-c")
        .arg(&spool.0)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = match tokio::time::timeout(TOOL_DEADLINE, tool).await {
        Ok(Ok(out)) => out,
        _ => {
            return Err(Failure(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                String::new(),
            ));
        }
    };
    drop(spool);
    Ok(json!({
        "bytes": bytes, "sample_rate": rate, "channels": channels, "frames": frames,
        "peak": peak, "tool": "gzip", "tool_ok": out.status.success(),
        "tool_bytes": out.stdout.len() + out.stderr.len(),
    }))
}

/// Probes and decodes the whole file: (rate, channels, frames, peak), or a client-safe
/// message (symphonia's errors carry no path).
fn decode(path: &Path) -> Result<(u32, usize, u64, u16), String> {
    let file = std::fs::File::open(path).map_err(|e| e.kind().to_string())?;
    let mss = MediaSourceStream::new(Box::new(file), Default::default());
    let probed = symphonia::default::get_probe()
        .format(
            &Default::default(),
            mss,
            &Default::default(),
            &Default::default(),
        )
        .map_err(|e| format!("probe audio: {e}"))?;
    let mut format = probed.format;
    let track = format
        .default_track()
        .ok_or("probe audio: no audio track")?;
    let (id, params) = (track.id, track.codec_params.clone());
    let rate = params.sample_rate.ok_or("probe audio: no sample rate")?;
    let channels = params.channels.ok_or("probe audio: no channels")?.count();
    let mut decoder = symphonia::default::get_codecs()
        .make(&params, &DecoderOptions::default())
        .map_err(|e| format!("probe audio: {e}"))?;
    let (mut frames, mut peak, mut buf) = (0u64, 0u16, None::<SampleBuffer<i16>>);
    loop {
        let packet = match format.next_packet() {
            Ok(p) if p.track_id() == id => p,
            Ok(_) => continue,
            Err(symphonia::core::errors::Error::IoError(e))
                if e.kind() == std::io::ErrorKind::UnexpectedEof =>
            {
                break;
            }
            Err(e) => return Err(format!("decode audio: {e}")),
        };
        let decoded = decoder
            .decode(&packet)
            .map_err(|e| format!("decode audio: {e}"))?;
        let buf = buf
            .get_or_insert_with(|| SampleBuffer::new(decoded.capacity() as u64, *decoded.spec()));
        buf.copy_interleaved_ref(decoded);
        frames += (buf.samples().len() / channels.max(1)) as u64;
        peak = buf
            .samples()
            .iter()
            .fold(peak, |p, x| p.max(x.unsigned_abs()));
    }
    Ok((rate, channels, frames, peak))
}
