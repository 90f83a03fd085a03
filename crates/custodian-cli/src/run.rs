//! `custodian run [OPTIONS] -- CMD [ARGS...]`: a supervised runner.
//!
//! CMD runs as a managed child (its own process group) with `TMPDIR` set to a managed
//! temp dir inside the supervisor's private root. SIGINT, SIGTERM and SIGHUP to the
//! runner are forwarded to the group; if the group's leader has not exited `--grace`
//! later, the group gets SIGKILL. `--timeout` sends SIGTERM, then SIGKILL `--kill-after`
//! later (the grace when not given). Exit codes follow coreutils `timeout`.
//!
//! Signals reach the group only while its leader is unreaped (the select below polls the
//! wait first, and only a finished wait reaps), so a group id is never reused under us.
//! Descendants that left the group (`setsid`, double fork) are adopted by the runner as
//! child subreaper and stopped once CMD has ended (`adopt.rs`). With `--state-dir`, the
//! supervisor journals the run (its temp root, CMD, and `CUSTODIAN_JOURNAL` in every
//! descendant's environment), so `custodian sweep` cleans up after a SIGKILLed runner.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use rustix::process::{Pid, Signal};
use serde::Serialize;
use tokio::signal::unix::{SignalKind, signal};
use tokio_custodian::Supervisor;

/// Options of `custodian run`.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// After a forwarded signal, how long the group has to exit before SIGKILL.
    #[arg(long, default_value = "10s", value_parser = crate::parse_duration)]
    grace: Duration,
    /// Send SIGTERM to the group after this long (exit 124 unless --preserve-status).
    #[arg(long, value_parser = crate::parse_duration)]
    timeout: Option<Duration>,
    /// After the timeout's SIGTERM, how long before SIGKILL (default: the grace).
    #[arg(long, value_parser = crate::parse_duration, requires = "timeout")]
    kill_after: Option<Duration>,
    /// Exit with CMD's status even when it timed out.
    #[arg(long)]
    preserve_status: bool,
    /// Print a report of the run when it ends.
    #[arg(long, value_enum)]
    report: Option<ReportFormat>,
    /// Same as `--report json`.
    #[arg(long)]
    json: bool,
    /// Write the report to this file instead of standard error.
    #[arg(long, value_name = "PATH")]
    report_file: Option<PathBuf>,
    /// Journal the run in this state directory (created 0700 if missing), so that
    /// `custodian sweep --state-dir DIR` stops CMD's whole tree and removes its private
    /// TMPDIR if the runner itself is killed (SIGKILL, OOM). Starting also sweeps what
    /// dead runners left there.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<OsString>,
}

/// How the report is printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ReportFormat {
    Text,
    Json,
}

/// How CMD was stopped, when it did not end on its own.
#[derive(Debug, Serialize)]
struct Stop {
    /// `SIGINT`, `SIGTERM`, `SIGHUP` (forwarded) or `timeout`.
    trigger: String,
    /// The group's leader exited within the grace after the first signal.
    term_honoured: bool,
    /// The grace ran out and the group got SIGKILL.
    kill_needed: bool,
}

/// The report of one run, in the spirit of a Kubernetes `terminated` status.
#[derive(Debug, Serialize)]
struct RunReport {
    command: Vec<String>,
    pid: Option<u32>,
    exit_code: Option<i32>,
    signal: Option<i32>,
    /// `completed`, `error` (non-zero exit), `signalled`, `stopped`, `timed_out`,
    /// `not_found`, `not_executable` or `failed` (custodian itself).
    reason: &'static str,
    /// What `custodian run` exits with.
    custodian_exit: u8,
    duration_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop: Option<Stop>,
    tmpdir: Option<PathBuf>,
    temp_bytes_removed: u64,
    /// Descendants that had left CMD's group, adopted, stopped and reaped by the runner.
    processes_adopted: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

fn sig_name(sig: Signal) -> &'static str {
    match sig {
        Signal::INT => "SIGINT",
        Signal::HUP => "SIGHUP",
        _ => "SIGTERM",
    }
}

/// What happened to the child, before exit codes are decided.
#[derive(Debug, Default)]
struct Ran {
    pid: Option<u32>,
    status: Option<ExitStatus>,
    stop: Option<Stop>,
    timed_out: bool,
    tmpdir: Option<PathBuf>,
    bytes: u64,
    adopted: usize,
    spawn_error: Option<(u8, String)>,
}

/// Runs `custodian run`; returns the exit code.
pub(crate) async fn main(args: RunArgs) -> u8 {
    let started = Instant::now();
    let mut report = RunReport {
        command: args
            .command
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect(),
        pid: None,
        exit_code: None,
        signal: None,
        reason: "failed",
        custodian_exit: 125,
        duration_ms: 0.0,
        stop: None,
        tmpdir: None,
        temp_bytes_removed: 0,
        processes_adopted: 0,
        error: None,
    };
    match supervise(&args).await {
        Ok(ran) => decide(&args, ran, &mut report),
        Err(e) => report.error = Some(e),
    }
    report.duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    if let Some(e) = &report.error {
        eprintln!("custodian run: {e}");
    }
    let format = if args.json {
        Some(ReportFormat::Json)
    } else {
        args.report
    };
    let text = match format {
        None => None,
        Some(ReportFormat::Json) => serde_json::to_string_pretty(&report).ok(),
        Some(ReportFormat::Text) => Some(text_report(&report)),
    };
    if let Some(t) = text
        && let Err(e) = crate::write_report(args.report_file.as_ref(), &t)
    {
        eprintln!("custodian run: cannot write the report: {e}");
        return 125;
    }
    report.custodian_exit
}

fn text_report(r: &RunReport) -> String {
    let how = match (r.exit_code, r.signal) {
        (Some(c), _) => format!("exited {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        (None, None) => "did not run".to_owned(),
    };
    let stop = r.stop.as_ref().map_or(String::new(), |s| {
        let k = if s.kill_needed {
            "SIGKILL needed"
        } else {
            "SIGTERM honoured"
        };
        format!(", stopped by {} ({k})", s.trigger)
    });
    format!(
        "custodian run: {} {how} ({}) after {:.0} ms{stop}; exit {}; {} temp bytes removed; {} processes adopted",
        r.command.first().map_or("", String::as_str),
        r.reason,
        r.duration_ms,
        r.custodian_exit,
        r.temp_bytes_removed,
        r.processes_adopted
    )
}

/// Exit code and reason, as coreutils `timeout` has them.
fn decide(args: &RunArgs, ran: Ran, r: &mut RunReport) {
    use std::os::unix::process::ExitStatusExt;
    r.pid = ran.pid;
    r.tmpdir = ran.tmpdir;
    r.temp_bytes_removed = ran.bytes;
    r.processes_adopted = ran.adopted;
    if let Some((code, e)) = ran.spawn_error {
        r.reason = match code {
            127 => "not_found",
            126 => "not_executable",
            _ => "failed",
        };
        (r.custodian_exit, r.error) = (code, Some(e));
        return;
    }
    let Some(status) = ran.status else { return };
    let kill_needed = ran.stop.as_ref().is_some_and(|s| s.kill_needed);
    r.stop = ran.stop;
    r.exit_code = status.code();
    r.signal = status.signal();
    let own = match (status.code(), status.signal()) {
        (Some(c), _) => u8::try_from(c).unwrap_or(1),
        (None, Some(s)) => u8::try_from(128 + s).unwrap_or(255),
        (None, None) => 125,
    };
    (r.reason, r.custodian_exit) = if ran.timed_out && !args.preserve_status {
        // coreutils: 124, or 137 when SIGKILL was needed.
        ("timed_out", if kill_needed { 137 } else { 124 })
    } else if r.stop.is_some() {
        ("stopped", own)
    } else if status.signal().is_some() {
        ("signalled", own)
    } else if own == 0 {
        ("completed", 0)
    } else {
        ("error", own)
    };
}

/// Starts the supervisor, runs CMD in a scope, and shuts down.
async fn supervise(args: &RunArgs) -> Result<Ran, String> {
    // Listen before spawning, so that a signal sent right after CMD starts is forwarded.
    let listen = |k: SignalKind| signal(k).map_err(|e| format!("listen for signals: {e}"));
    let mut sigs = [
        (Signal::INT, listen(SignalKind::interrupt())?),
        (Signal::TERM, listen(SignalKind::terminate())?),
        (Signal::HUP, listen(SignalKind::hangup())?),
    ];
    crate::adopt::become_subreaper().map_err(|e| format!("become child subreaper: {e}"))?;
    let mut builder =
        Supervisor::builder().grace(args.grace.saturating_add(Duration::from_secs(1)));
    if let Some(dir) = &args.state_dir {
        builder = builder.state_dir(dir);
    }
    let sup = builder.start().map_err(|e| e.to_string())?;
    let ran = sup
        .scope("run", async |s| {
            let mut ran = Ran::default();
            let tmp = s.temp().prefix("tmpdir-").label("TMPDIR").dir().await;
            let tmp = tmp.map_err(|e| e.to_string())?;
            ran.tmpdir = Some(tmp.path().to_path_buf());
            let (prog, rest) = args.command.split_first().ok_or("no command")?;
            let spawned = s
                .command(prog)
                .args(rest)
                .env("TMPDIR", tmp.path())
                .grace(args.grace)
                .label("CMD")
                .spawn();
            let mut child = match spawned {
                Ok(c) => c,
                Err(e) => {
                    let code = match e.io_kind() {
                        Some(std::io::ErrorKind::NotFound) => 127,
                        Some(_) => 126,
                        None => 125,
                    };
                    ran.spawn_error = Some((code, e.to_string()));
                    return Ok(ran);
                }
            };
            ran.pid = child.id();
            let group = Pid::from_raw(child.process_group() as i32);
            let timeout = sleep_or_never(args.timeout);
            let kill_at = sleep_or_never(None);
            tokio::pin!(timeout, kill_at);
            let status = loop {
                let [(_, int), (_, term), (_, hup)] = &mut sigs;
                let got = tokio::select! {
                    biased;
                    st = child.wait() => break Some(st.map_err(|e| e.to_string())?),
                    () = &mut kill_at => break None,
                    _ = int.recv() => Signal::INT,
                    _ = term.recv() => Signal::TERM,
                    _ = hup.recv() => Signal::HUP,
                    () = &mut timeout, if !ran.timed_out => {
                        ran.timed_out = true;
                        Signal::TERM
                    }
                };
                // The leader is unreaped here (its wait did not finish), so the group id
                // is still its own.
                if let Some(g) = group {
                    let _ = rustix::process::kill_process_group(g, got);
                }
                if ran.stop.is_none() {
                    let trigger = if ran.timed_out {
                        "timeout"
                    } else {
                        sig_name(got)
                    };
                    ran.stop = Some(Stop {
                        trigger: trigger.to_owned(),
                        term_honoured: false,
                        kill_needed: false,
                    });
                    let grace = match (ran.timed_out, args.kill_after) {
                        (true, Some(k)) => k,
                        _ => args.grace,
                    };
                    kill_at.as_mut().reset(deadline(grace));
                }
            };
            let status = match status {
                Some(st) => {
                    if let Some(stop) = &mut ran.stop {
                        stop.term_honoured = true;
                    }
                    st
                }
                None => {
                    if let Some(stop) = &mut ran.stop {
                        stop.kill_needed = true;
                    }
                    child.kill().await.map_err(|e| e.to_string())?
                }
            };
            ran.status = Some(status);
            drop(child);
            let grace = args.grace;
            let adopted = tokio::task::spawn_blocking(move || crate::adopt::reap_adopted(grace));
            ran.adopted = adopted
                .await
                .map_err(|e| format!("reap adopted processes: {e}"))?;
            ran.bytes = crate::os::tree_bytes(tmp.path());
            tmp.close().await.map_err(|e| e.to_string())?;
            Ok::<_, String>(ran)
        })
        .await;
    let report = sup.shutdown().await;
    let ran = ran.map_err(|e| e.to_string())??;
    if !report.is_clean() {
        return Err(format!("resources were left behind:\n{report}"));
    }
    Ok(ran)
}

fn deadline(after: Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    // Saturate: a grace too long to represent means "a century".
    now.checked_add(after)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 86400))
}

fn sleep_or_never(after: Option<Duration>) -> tokio::time::Sleep {
    tokio::time::sleep_until(deadline(after.unwrap_or(Duration::MAX)))
}
