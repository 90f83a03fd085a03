//! `custodian run [OPTIONS] [--] CMD [ARGS...]`: a supervised runner, and a container
//! entrypoint.
//!
//! CMD runs as a managed child (its own process group) with `TMPDIR` set to a managed
//! temp dir inside the supervisor's private root. Every signal that would kill the runner
//! is forwarded to the group (`signals.rs`); after SIGINT, SIGTERM, SIGHUP or SIGQUIT, if
//! the group's leader has not exited `--grace` later, the group gets SIGKILL. `--timeout`
//! sends SIGTERM, then SIGKILL `--kill-after` later (the grace when not given). Exit
//! codes follow coreutils `timeout`. On a terminal, CMD's group is made the foreground
//! group while it runs (`tty.rs`).
//!
//! Signals reach the group only while its leader is unreaped (the select below polls the
//! wait first, and only a finished wait reaps), so a group id is never reused under us.
//! Descendants that left the group (`setsid`, double fork) are adopted by the runner as
//! child subreaper (or as PID 1), reaped as they exit, and stopped once CMD has ended
//! (`adopt.rs`). With `--state-dir`, the supervisor journals the run (its temp root, CMD,
//! its cgroup in the cgroup tier, and otherwise, or with the watcher, the owner marker
//! `CUSTODIAN_OWNER` in every descendant's environment), so `custodian sweep` cleans up
//! after a SIGKILLed runner.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use clap::Args;
use rustix::process::Signal;
use tokio::signal::unix::{SignalKind, signal};
use tokio_custodian::{Containment, ContainmentTier, Supervisor};

use crate::job::Job;
use crate::run_report::{ReportFormat, RunReport, Sink, Stop};
use crate::signals::STOPPING;
use crate::tty::Terminal;

/// Options of `custodian run`.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// After SIGINT, SIGTERM, SIGHUP or SIGQUIT is forwarded, how long the group has to
    /// exit before SIGKILL (e.g. `10s`, `500ms`, `1m30s`).
    #[arg(long, default_value = "10s", value_parser = crate::parse_duration)]
    grace: Duration,
    /// Send SIGTERM to the group after this long (exit 124 unless --preserve-status);
    /// `0` disables the timeout, as in coreutils.
    #[arg(long, value_parser = crate::parse_duration)]
    timeout: Option<Duration>,
    /// After the timeout's SIGTERM, how long before SIGKILL (default: the grace).
    #[arg(long, value_parser = crate::parse_duration, requires = "timeout")]
    kill_after: Option<Duration>,
    /// Exit with CMD's status even when it timed out.
    #[arg(long)]
    preserve_status: bool,
    /// Print a report of the run when it ends (text when only --report-file is given).
    #[arg(long, value_enum)]
    report: Option<ReportFormat>,
    /// Same as `--report json`.
    #[arg(long)]
    json: bool,
    /// Write the report to this file instead of standard error; `-` is standard output
    /// (after everything CMD wrote there). Opened before CMD starts.
    #[arg(long, value_name = "PATH")]
    report_file: Option<PathBuf>,
    /// Journal the run in this state directory (created 0700 if missing), so that
    /// `custodian sweep --state-dir DIR` stops CMD's whole tree and removes its private
    /// TMPDIR if the runner itself is killed (SIGKILL, OOM). Starting also sweeps what
    /// dead runners left there.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// With --state-dir, do not start the watcher: a process that, if the runner is
    /// killed, stops CMD's tree and removes its TMPDIR at once instead of at the next
    /// `custodian sweep`.
    #[arg(long)]
    no_watcher: bool,
    /// How CMD's tree is contained: `auto` puts it in a cgroup v2 of its own where one is
    /// delegated (its release ends with `cgroup.kill`, which ends every descendant whatever
    /// it did: `setsid`, double fork, a cleared environment), else in its process group;
    /// `required` fails (exit 125) without a cgroup; `never` uses the process group only.
    #[arg(long, value_enum, default_value = "auto")]
    containment: ContainmentArg,
    /// The command and its arguments. `--` before it is optional: the first argument
    /// that is not an option starts CMD, and everything after it is CMD's.
    #[arg(required = true, num_args = 1.., trailing_var_arg = true, value_name = "CMD")]
    command: Vec<OsString>,
}

/// `--containment`: the library's [`Containment`], as a command-line value.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum ContainmentArg {
    Auto,
    Required,
    Never,
}

impl From<ContainmentArg> for Containment {
    fn from(a: ContainmentArg) -> Self {
        match a {
            ContainmentArg::Auto => Containment::Auto,
            ContainmentArg::Required => Containment::Required,
            ContainmentArg::Never => Containment::Never,
        }
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
    containment: Option<ContainmentTier>,
}

/// Runs `custodian run`; returns the exit code.
pub(crate) async fn main(args: RunArgs) -> u8 {
    let started = Instant::now();
    let command = args.command.iter();
    let mut report = RunReport::new(command.map(|a| a.to_string_lossy().into_owned()).collect());
    let format = match (args.json, args.report, &args.report_file) {
        (true, ..) => Some(ReportFormat::Json),
        (false, Some(f), _) => Some(f),
        (false, None, Some(_)) => Some(ReportFormat::Text),
        (false, None, None) => None,
    };
    // Before CMD starts: a report that cannot be written is a usage error, not news
    // after the run.
    let sink = match format.map(|_| Sink::open(args.report_file.as_deref())) {
        None => None,
        Some(Ok(sink)) => Some(sink),
        Some(Err(e)) => {
            eprintln!("custodian run: {e}");
            return 125;
        }
    };
    match supervise(&args).await {
        Ok(ran) => decide(&args, ran, &mut report),
        Err(e) => report.error = Some(e),
    }
    report.duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    if let Some(e) = &report.error {
        eprintln!("custodian run: {e}");
    }
    let text = match format {
        None => None,
        Some(ReportFormat::Json) => serde_json::to_string_pretty(&report).ok(),
        Some(ReportFormat::Text) => Some(crate::run_report::text(&report)),
    };
    if let (Some(t), Some(sink)) = (text, sink)
        && let Err(e) = sink.write(&t)
    {
        eprintln!("custodian run: {e}");
        return 125;
    }
    report.custodian_exit
}

/// Exit code and reason, as coreutils `timeout` has them.
fn decide(args: &RunArgs, ran: Ran, r: &mut RunReport) {
    use std::os::unix::process::ExitStatusExt;
    r.pid = ran.pid;
    r.tmpdir = ran.tmpdir;
    r.temp_bytes_removed = ran.bytes;
    r.processes_adopted = ran.adopted;
    r.containment = ran.containment;
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
    let mut sigs = crate::signals::listen().map_err(|e| format!("listen for signals: {e}"))?;
    let mut chld = signal(SignalKind::child()).map_err(|e| format!("listen for SIGCHLD: {e}"))?;
    crate::adopt::become_subreaper().map_err(|e| format!("become child subreaper: {e}"))?;
    let terminal = Terminal::on_stdin();
    let mut builder = Supervisor::builder()
        .grace(args.grace.saturating_add(Duration::from_secs(1)))
        .containment(args.containment.into())
        .inspect(true); // `custodian inspect PID` answers for a run
    if let Some(dir) = &args.state_dir {
        builder = builder.state_dir(dir).watcher(!args.no_watcher);
    }
    let sup = builder.start().map_err(|e| e.to_string())?;
    // The watcher is the runner's child too: never reaped or stopped as adopted.
    let watcher = sup.stats().watcher.pid;
    let containment = sup.stats().containment;
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
            let job = Job::new(terminal.as_ref(), &child);
            // `--timeout 0` disables the timeout, as in coreutils.
            let timeout = sleep_or_never(args.timeout.filter(|t| !t.is_zero()));
            let kill_at = sleep_or_never(None);
            tokio::pin!(timeout, kill_at);
            let mut first_signal: Option<(Instant, Duration)> = None;
            let status = loop {
                let got = tokio::select! {
                    biased;
                    st = child.wait() => break Some(st.map_err(|e| e.to_string())?),
                    () = &mut kill_at => break None,
                    _ = chld.recv() => {
                        // Reaps adopted orphans as they exit; CMD's leader is custodian's.
                        ran.adopted += crate::adopt::reap_exited(ran.pid, watcher);
                        job.changed();
                        continue;
                    }
                    Some(sig) = sigs.recv() => sig,
                    () = &mut timeout, if !ran.timed_out => {
                        ran.timed_out = true;
                        Signal::TERM
                    }
                };
                if got == Signal::CONT {
                    job.continued();
                }
                // The leader is unreaped here (its wait did not finish), so the group id
                // is still its own.
                job.signal(got);
                if !STOPPING.contains(&got) {
                    continue;
                }
                // As coreutils `timeout`: a stopped CMD gets the signal when continued.
                job.signal(Signal::CONT);
                if first_signal.is_none() {
                    let grace = match (ran.timed_out, args.kill_after) {
                        (true, Some(k)) => k,
                        _ => args.grace,
                    };
                    first_signal = Some((Instant::now(), grace));
                    ran.stop = Some(Stop {
                        trigger: if ran.timed_out {
                            "timeout".to_owned()
                        } else {
                            crate::signals::name(got)
                        },
                        term_honoured: false,
                        kill_needed: false,
                        ended_after_ms: 0.0,
                    });
                    kill_at.as_mut().reset(deadline(grace));
                }
            };
            let status = match status {
                Some(st) => st,
                None => {
                    if let Some(stop) = &mut ran.stop {
                        stop.kill_needed = true;
                    }
                    child.kill().await.map_err(|e| e.to_string())?
                }
            };
            if let (Some(stop), Some((at, grace))) = (&mut ran.stop, first_signal) {
                let after = at.elapsed();
                stop.ended_after_ms = after.as_secs_f64() * 1000.0;
                stop.term_honoured = !stop.kill_needed && after <= grace;
            }
            // CMD's leader ended: the runner's group gets the terminal back.
            drop(job);
            ran.status = Some(status);
            drop(child);
            let grace = args.grace;
            let adopted =
                tokio::task::spawn_blocking(move || crate::adopt::reap_adopted(grace, watcher));
            ran.adopted += adopted
                .await
                .map_err(|e| format!("reap adopted processes: {e}"))?;
            ran.bytes = crate::os::tree_bytes(tmp.path());
            tmp.close().await.map_err(|e| e.to_string())?;
            Ok::<_, String>(ran)
        })
        .await;
    let report = sup.shutdown().await;
    let mut ran = ran.map_err(|e| e.to_string())??;
    ran.containment = Some(containment);
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
