//! The load side of the HTTP service tests and benchmark: start the `http-service` bin,
//! a minimal HTTP/1.1 client on raw TCP (one connection per request, so a client can hang
//! up mid-upload), WAVs made here, and a bounded concurrent load that records every
//! outcome with its timing.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use custodian_suite::LineChild;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A running service: its process, address and private temp root.
pub struct Service {
    pub child: LineChild,
    pub addr: SocketAddr,
    pub temp_root: String,
}

/// Starts the service with `TMPDIR=tmp` and reads its address and temp root.
pub fn start(tmp: &Path) -> Service {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_http-service"));
    cmd.env("TMPDIR", tmp)
        .env_remove("CUSTODIAN_HTTP_ADDR")
        .stdin(std::process::Stdio::null());
    let mut child = LineChild::spawn(&mut cmd);
    let addr = child
        .wait_line("listening on ", Duration::from_secs(20))
        .expect("service up");
    let temp_root = child
        .wait_line("temp root: ", Duration::from_secs(5))
        .expect("temp root");
    Service {
        child,
        addr: addr.parse().expect("an address"),
        temp_root,
    }
}

/// A 16-bit mono 16 kHz WAV of `frames` samples of a tone.
pub fn wav(frames: u32) -> Vec<u8> {
    let mut v = Vec::with_capacity(44 + 2 * frames as usize);
    let le32 = |v: &mut Vec<u8>, x: u32| v.extend_from_slice(&x.to_le_bytes());
    v.extend_from_slice(b"RIFF");
    le32(&mut v, 36 + 2 * frames);
    v.extend_from_slice(b"WAVEfmt ");
    le32(&mut v, 16);
    v.extend_from_slice(&[1, 0, 1, 0]);
    le32(&mut v, 16_000);
    le32(&mut v, 32_000);
    v.extend_from_slice(&[2, 0, 16, 0]);
    v.extend_from_slice(b"data");
    le32(&mut v, 2 * frames);
    for i in 0..frames {
        let x = (f64::from(i) * 440.0 * std::f64::consts::TAU / 16_000.0).sin();
        v.extend_from_slice(&((x * 8000.0) as i16).to_le_bytes());
    }
    v
}

/// A WAV whose `fmt ` chunk claims more bytes than the file has.
pub fn malformed() -> Vec<u8> {
    b"RIFF\x24\0\0\0WAVEfmt \x10\0\0\0junk".to_vec()
}

/// What a client saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A response: its status and body.
    Status(u16, String),
    /// No response: refused, reset or closed before a status line (never read by the
    /// service, e.g. still in the listen backlog when it stopped accepting).
    NoResponse(String),
    /// The client hung up mid-upload on purpose.
    HungUp,
}

/// `POST path` with `body` on a new connection; with `cut`, sends that many body bytes
/// (of a declared full length) and hangs up.
pub async fn post(addr: SocketAddr, path: &str, body: &[u8], cut: Option<usize>) -> Outcome {
    let mut s = match TcpStream::connect(addr).await {
        Ok(s) => s,
        Err(e) => return Outcome::NoResponse(format!("connect: {e}")),
    };
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: test\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let (a, b) = body.split_at(cut.unwrap_or(body.len() / 2).min(body.len()));
    let sent = async {
        s.write_all(head.as_bytes()).await?;
        s.write_all(a).await?;
        // The server sees the upload arrive in two parts.
        tokio::task::yield_now().await;
        if cut.is_none() {
            s.write_all(b).await?;
        }
        std::io::Result::Ok(())
    };
    if let Err(e) = sent.await {
        // The server may answer early (a refusal) and close: read what it said.
        if cut.is_some() {
            return Outcome::HungUp;
        }
        return read_response(&mut s)
            .await
            .unwrap_or(Outcome::NoResponse(format!("send: {e}")));
    }
    if cut.is_some() {
        return Outcome::HungUp;
    }
    read_response(&mut s)
        .await
        .unwrap_or_else(|| Outcome::NoResponse("no status line".into()))
}

/// `GET path`: the body of a 200, or `None`.
pub async fn get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    let head = format!("GET {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n");
    s.write_all(head.as_bytes()).await.ok()?;
    match read_response(&mut s).await? {
        Outcome::Status(200, body) => Some(body),
        _ => None,
    }
}

async fn read_response(s: &mut TcpStream) -> Option<Outcome> {
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf).await;
    let text = String::from_utf8_lossy(&buf);
    let status = text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some(Outcome::Status(status, body))
}

/// What each request was and what it got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Good,
    Malformed,
    HangUp,
}

/// The kind of request number `i`: one in ten malformed, one in twenty cut mid-upload.
pub fn kind_of(i: usize) -> Kind {
    match (i % 10, i % 20) {
        (_, 7) => Kind::HangUp,
        (3, _) => Kind::Malformed,
        _ => Kind::Good,
    }
}

/// One finished request.
#[derive(Clone, Debug)]
pub struct Record {
    pub kind: Kind,
    pub started: Instant,
    pub ended: Instant,
    pub outcome: Outcome,
}

/// Sends `n` requests to `path`, `concurrency` at a time, of the kinds [`kind_of`] picks;
/// `on_done(completed)` runs after each (the caller's hook for a mid-load signal).
pub async fn load(
    addr: SocketAddr,
    path: &'static str,
    n: usize,
    concurrency: usize,
    good: Arc<Vec<u8>>,
    on_done: Arc<dyn Fn(usize) + Send + Sync>,
) -> Vec<Record> {
    load_mix(addr, path, n, concurrency, good, kind_of, on_done).await
}

/// [`load`] with another mix of kinds.
pub async fn load_mix(
    addr: SocketAddr,
    path: &'static str,
    n: usize,
    concurrency: usize,
    good: Arc<Vec<u8>>,
    kind_of: fn(usize) -> Kind,
    on_done: Arc<dyn Fn(usize) + Send + Sync>,
) -> Vec<Record> {
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let records = Arc::new(Mutex::new(Vec::with_capacity(n)));
    let bad = Arc::new(malformed());
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (next, done, records) = (next.clone(), done.clone(), records.clone());
        let (good, bad, on_done) = (good.clone(), bad.clone(), on_done.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return;
                }
                let kind = kind_of(i);
                let started = Instant::now();
                let outcome = match kind {
                    Kind::Good => post(addr, path, &good, None).await,
                    Kind::Malformed => post(addr, path, &bad, None).await,
                    Kind::HangUp => post(addr, path, &good, Some(good.len() / 3)).await,
                };
                let ended = Instant::now();
                records.lock().unwrap().push(Record {
                    kind,
                    started,
                    ended,
                    outcome,
                });
                on_done(done.fetch_add(1, Ordering::Relaxed) + 1);
            }
        }));
    }
    for w in workers {
        w.await.expect("load worker");
    }
    std::mem::take(&mut *records.lock().unwrap())
}

/// A field of `/proc/PID/status` in its own unit (kB for memory), 0 if missing.
pub fn status_field(pid: u32, field: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Open fds of process `pid`.
pub fn fds_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Processes whose parent is `pid`, or whose command line mentions `needle`.
pub fn processes_of(pid: u32, needle: &str) -> Vec<(u32, String)> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
    {
        let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
        let ppid = stat
            .rfind(')')
            .and_then(|i| stat[i + 2..].split_whitespace().nth(1));
        let cmd = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if ppid == Some(&pid.to_string()) || (!needle.is_empty() && cmd.contains(needle)) {
            v.push((p, cmd));
        }
    }
    v
}

/// Polls `f` every 20 ms until it is true or `timeout` passes; whether it became true.
pub fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
