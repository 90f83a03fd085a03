//! `GET /metrics`: custodian's stats in Prometheus' text format, from the service's own
//! router. `metrics-exporter-prometheus` is only the recorder here (no listener of its
//! own): each scrape copies the supervisor's counters into it with
//! `tokio_custodian::metrics::publish`, then renders them. Nothing is recorded on the
//! request path.

use std::net::SocketAddr;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Installs the process's recorder (once per process); the handle renders what it holds.
pub(crate) fn install() -> Result<PrometheusHandle, Box<dyn std::error::Error>> {
    Ok(PrometheusBuilder::new().install_recorder()?)
}

/// The handler: publish, then render.
pub(crate) async fn metrics(State(app): State<super::App>) -> impl IntoResponse {
    tokio_custodian::metrics::publish(&app.sup);
    let text = app.metrics.render();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

/// Scrapes `/metrics` at `addr` once, as Prometheus would, and returns the body after
/// checking that custodian's series are in it (the live gauge per kind, the quotas and
/// the drain state).
pub(crate) async fn scrape_once(addr: SocketAddr) -> Result<String, Box<dyn std::error::Error>> {
    let mut conn = tokio::net::TcpStream::connect(addr).await?;
    conn.write_all(b"GET /metrics HTTP/1.0\r\nHost: service\r\n\r\n")
        .await?;
    let mut answer = String::new();
    conn.read_to_string(&mut answer).await?;
    let (head, body) = answer.split_once("\r\n\r\n").ok_or("no HTTP answer")?;
    if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
        return Err(format!("GET /metrics: {head}").into());
    }
    for series in [
        "custodian_live{kind=\"temp_file\"}",
        "custodian_quota_limit{quota=\"open files ≤ 16\"}",
        "custodian_draining",
    ] {
        if !body.contains(series) {
            return Err(format!("GET /metrics: no {series} in:\n{body}").into());
        }
    }
    Ok(body.to_owned())
}
