//! An audio-ingest HTTP service (axum) in which every request owns what it acquires.
//!
//! `POST /ingest` runs one custodian scope per request: the upload is streamed into a
//! managed temp file, decoded by a managed `tokio_custodian_audio` decoder, and handed to a
//! managed child (`sox FILE -n stat` when `sox` is installed, else `gzip -c FILE`) with a
//! deadline; the answer is the audio's metadata as JSON. A malformed WAV, or one cut short
//! (its header declares more frames than the upload holds), is a 422 whose message names
//! no path (the private temp root stays private). Quotas are the
//! backpressure: 16 uploads spool at once, the others wait their turn. `GET /stats` is the
//! supervisor's counters and quotas; `GET /metrics` the same stats in Prometheus' text
//! format (custodian's `metrics` feature, rendered by `metrics-exporter-prometheus` from
//! the service's own router). At start the service scrapes its own `/metrics` once and
//! checks custodian's series are in it. On SIGTERM the service drains: it stops accepting,
//! lets the requests in flight finish (within 6 s of a 10 s grace), then `shutdown()`
//! releases what is left and its report is printed.
//! `POST /raw/ingest` does the same work without custodian: the benchmark's baseline.
//!
//! Run it with `cargo run --example 09_http_service [ADDR]` (or set `CUSTODIAN_HTTP_ADDR`;
//! the default `127.0.0.1:0` prints the port it got), then
//! `curl --data-binary @speech.wav http://ADDR/ingest`, `curl http://ADDR/stats` and
//! `curl http://ADDR/metrics`. With `CUSTODIAN_HTTP_ONCE=1` (as CI runs it) it shuts
//! down by itself after that first scrape.

use std::future::IntoFuture;
use std::pin::Pin;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_core::Stream;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio_custodian::{Quota, ResourceKind, Scope, Supervisor};
use tokio_custodian_audio::AudioDecoder;

#[path = "http_service/raw.rs"]
mod raw;
#[path = "http_service/scrape.rs"]
mod scrape;

/// Uploads above this are refused (413) before they fill the disk.
const MAX_UPLOAD: usize = 16 << 20;
/// The external tool gets this long; then custodian stops its process group.
const TOOL_DEADLINE: Duration = Duration::from_secs(5);
/// The whole graceful shutdown's bound (keep it inside `TimeoutStopSec` and co), and the
/// drain within it: requests in flight get 6 s to finish before they are cancelled.
const GRACE: Duration = Duration::from_secs(10);
const DRAIN: Duration = Duration::from_secs(6);
/// Backpressure: at most this many uploads spool at once (more wait their turn, first come
/// first served); each holds one file, then one decoder and one child, so those and the
/// fds stay bounded too, and the spool files may take 256 MiB of disk together.
const IN_FLIGHT: usize = 16;
/// An upload that sends nothing for this long is cut off (408).
const STALL: Duration = Duration::from_secs(5);

#[derive(Clone)]
struct App {
    sup: Supervisor,
    sox: bool,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
}

/// A failed request: a status and a message that is safe to show a client.
pub(crate) struct Failure(
    pub(crate) StatusCode,
    pub(crate) &'static str,
    pub(crate) String,
);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"error": self.1, "detail": self.2}))).into_response()
    }
}

/// Maps a custodian error to a response. Its full text (paths included) is logged; the
/// client gets `Error::public()`, which names no path: a quota or a stop in progress is
/// a 503, anything else a 500.
fn internal(e: tokio_custodian::Error) -> Failure {
    eprintln!("ingest: {e}");
    let (status, what) = match e {
        tokio_custodian::Error::QuotaExceeded { .. } => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
        tokio_custodian::Error::ShuttingDown { .. } => (StatusCode::SERVICE_UNAVAILABLE, "cut off"),
        _ if e.is_cancellation() => (StatusCode::SERVICE_UNAVAILABLE, "cut off"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    };
    Failure(status, what, e.public().to_string())
}

/// A failed write to the spool file: logged, a 500.
pub(crate) fn io_failed(e: std::io::Error) -> Failure {
    eprintln!("ingest: spool: {e}");
    if e.kind() == std::io::ErrorKind::QuotaExceeded {
        return Failure(StatusCode::SERVICE_UNAVAILABLE, "busy", String::new());
    }
    Failure(StatusCode::INTERNAL_SERVER_ERROR, "internal", String::new())
}

/// Bad audio is the client's fault (422); the message keeps the kind of problem and drops
/// the path, which lies under the private temp root.
fn bad_audio(e: tokio_custodian_audio::Error) -> Failure {
    use tokio_custodian_audio::Error as A;
    let detail = match e {
        A::Malformed { op, message, .. } => format!("{op}: malformed: {message}"),
        A::Unsupported { op, what, .. } => format!("{op}: unsupported: {what}"),
        A::Limit { op, what, .. } => format!("{op}: {what} is above the limit"),
        A::Panicked { op, .. } => format!("{op}: the decoder failed on this input"),
        A::Custodian(e) => return internal(e),
        // Released: the scope was cut off under the decoder.
        A::Released { .. } => {
            return Failure(StatusCode::SERVICE_UNAVAILABLE, "cut off", String::new());
        }
        e => {
            eprintln!("ingest: {e}");
            return Failure(StatusCode::INTERNAL_SERVER_ERROR, "internal", String::new());
        }
    };
    Failure(StatusCode::UNPROCESSABLE_ENTITY, "bad audio", detail)
}

/// The next chunk of a request body; an error means the client went away mid-upload. A
/// client that stalls is cut off after `STALL`: it would hold a spool slot of the quota.
pub(crate) async fn next_chunk(
    body: &mut (impl Stream<Item = Result<Bytes, axum::Error>> + Unpin),
) -> Result<Option<Bytes>, Failure> {
    let next = std::future::poll_fn(|cx| Pin::new(&mut *body).poll_next(cx));
    let Ok(next) = tokio::time::timeout(STALL, next).await else {
        return Err(Failure(
            StatusCode::REQUEST_TIMEOUT,
            "upload stalled",
            String::new(),
        ));
    };
    match next {
        Some(Ok(b)) => Ok(Some(b)),
        Some(Err(_)) => Err(Failure(
            StatusCode::BAD_REQUEST,
            "upload cut off",
            String::new(),
        )),
        None => Ok(None),
    }
}

async fn ingest(State(app): State<App>, body: Body) -> Response {
    let sox = app.sox;
    match app
        .sup
        .scope("ingest", async move |s| work(&s, body, sox).await)
        .await
    {
        Ok(Ok(meta)) => Json(meta).into_response(),
        Ok(Err(failure)) => failure.into_response(),
        // The scope was refused before the work began (the service is stopping): safe to
        // retry elsewhere. A scope cut off later is `cut off`, from `internal`.
        Err(
            e @ (tokio_custodian::Error::Draining { .. }
            | tokio_custodian::Error::ShuttingDown { .. }),
        ) => {
            let f = Failure(
                StatusCode::SERVICE_UNAVAILABLE,
                "refused",
                e.public().to_string(),
            );
            ([("retry-after", "1")], f).into_response()
        }
        Err(e) => internal(e).into_response(),
    }
}

async fn work(s: &Scope, body: Body, sox: bool) -> Result<Value, Failure> {
    let upload = s.temp().prefix("upload-").suffix(".wav").label("upload");
    let mut upload = upload.file().await.map_err(internal)?;
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
        upload.write_all(&chunk).await.map_err(io_failed)?;
    }
    upload.flush().await.map_err(io_failed)?;

    let mut decoder = AudioDecoder::open(s, upload.path())
        .await
        .map_err(bad_audio)?;
    let info = decoder.info().clone();
    // A recording cut short decodes fine as far as it goes: refuse it rather than answer
    // for audio that never arrived.
    if info.is_truncated() {
        let (declared, present) = (info.declared_frames, info.total_frames);
        let (declared, present) = (declared.unwrap_or(0), present.unwrap_or(0));
        return Err(Failure(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad audio",
            format!("truncated: the header declares {declared} frames, {present} present"),
        ));
    }
    let (mut frames, mut peak) = (0u64, 0u16);
    loop {
        let chunk = decoder.read_i16(16_384).await.map_err(bad_audio)?;
        if chunk.is_empty() {
            break;
        }
        frames += (chunk.len() / usize::from(info.channels)) as u64;
        peak = chunk.iter().fold(peak, |p, x| p.max(x.unsigned_abs()));
    }
    decoder.close().await.map_err(bad_audio)?;

    let tool = match sox {
        true => s.command("sox").arg(upload.path()).args(["-n", "stat"]),
        false => s.command("gzip").arg("-c").arg(upload.path()),
    };
    let out = tool
        .label("tool")
        .deadline(TOOL_DEADLINE)
        .output()
        .await
        .map_err(internal)?;
    upload.close().await.map_err(internal)?;
    Ok(json!({
        "bytes": bytes, "sample_rate": info.sample_rate, "channels": info.channels,
        "frames": frames, "peak": peak, "tool": if sox { "sox" } else { "gzip" },
        "tool_ok": out.status.success(), "tool_bytes": out.stdout.len() + out.stderr.len(),
    }))
}

async fn stats(State(app): State<App>) -> Json<Value> {
    let st = app.sup.stats();
    Json(json!({"consistent": st.is_consistent(), "live": st.live(), "stats": st}))
}

#[tokio::main]
pub(crate) async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("CUSTODIAN_HTTP_ADDR").ok());
    let addr = addr.unwrap_or_else(|| "127.0.0.1:0".to_owned());
    // The first SIGTERM/SIGINT starts the graceful shutdown (drain first), a second one
    // forces it.
    let sup = Supervisor::builder()
        .grace(GRACE)
        .drain(DRAIN)
        .quota(Quota::open_files(IN_FLIGHT))
        .quota(Quota::live(ResourceKind::AudioDecoder, IN_FLIGHT))
        .quota(Quota::live(ResourceKind::Child, IN_FLIGHT))
        // A request holds at most 15 fds at once as `Quota::fds` counts them: its upload,
        // then its decoder's file, then its tool's spawn (13 until it has forked: the
        // child's 5, the exec error pipe, three stdio pipes; 7 after).
        .quota(Quota::fds(16 * IN_FLIGHT))
        .quota(Quota::temp_bytes(256 << 20))
        .handle_signals(true)
        .start()?;
    let sox = std::process::Command::new("sox")
        .arg("--version")
        .output()
        .is_ok();
    let app = App {
        sup: sup.clone(),
        sox,
        metrics: scrape::install()?,
    };
    let router = Router::new()
        .route("/ingest", post(ingest))
        .route("/raw/ingest", post(raw::ingest))
        .route("/stats", get(stats))
        .route("/metrics", get(scrape::metrics))
        .with_state(app);
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let local = listener.local_addr()?;
    // Stop accepting once the drain begins; requests in flight finish their answer.
    let serving = axum::serve(listener, router).with_graceful_shutdown(sup.draining());
    let serving = tokio::spawn(serving.into_future());
    // Our own first scrape, before the address is announced (so before any client).
    let scraped = scrape::scrape_once(local).await?;
    let series = scraped
        .lines()
        .filter(|l| l.starts_with("custodian_"))
        .count();
    println!("/metrics: {series} custodian series");
    println!("listening on {local}");
    println!("temp root: {}", sup.temp_root().display());
    if std::env::var_os("CUSTODIAN_HTTP_ONCE").is_some_and(|v| v == "1") {
        let s = sup.clone();
        tokio::spawn(async move { s.shutdown().await });
    }
    serving.await??;
    let report = sup.shutdown().await;
    println!("{report}");
    println!("final stats: {}", serde_json::to_string(&report.stats)?);
    Ok(())
}
