//! `custodian demo`: the short-video factory under a supervisor, faults injected on
//! purpose, then the report (see `report.rs`) whose leftovers decide the exit code.
//!
//! Shape: one `factory` scope holds the output dir and runs every job as a nested scope
//! on its own task (so a cancelled factory cancels every job, and a Ctrl-C shutdown
//! releases what jobs held as `Cancelled`, not as leaks). The first SIGINT/SIGTERM starts
//! the supervisor's graceful shutdown, the second forces it (`Builder::handle_signals`).

mod job;
mod progress;
mod report;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use tokio::task::JoinSet;
use tokio_custodian::{Quota, Supervisor};

use self::job::{Fault, JobSpec};
use self::progress::{Progress, live_by_kind};
use self::report::{DemoReport, JobOutcome, Leftovers, Outside};
use crate::os;
use crate::wav::{self, Rng};

/// The demo supervisor's temp prefix: its root is the one entry it adds to the temp base.
const PREFIX: &str = "custodian-demo-";
/// Largest input read from `--inputs`.
const MAX_INPUT: u64 = 64 << 20;

/// Options of `custodian demo`.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// How many jobs (uploads) to run at once; faults go to the first ones.
    #[arg(long, default_value_t = 12, value_parser = clap::value_parser!(u16).range(1..=500))]
    jobs: u16,
    /// Take the uploads from the `.wav` files of DIR (in name order, repeated if there are
    /// fewer than the jobs) instead of generating them.
    #[arg(long, value_name = "DIR")]
    inputs: Option<PathBuf>,
    /// Faults to inject, comma-separated: panic, cancel, deadline, stubborn-child,
    /// forget, malformed, disk-full, temp-quota; or `all`, or `none`.
    #[arg(long, default_value = "all", value_name = "LIST")]
    faults: String,
    /// Seed for the generated inputs.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print the report as JSON on standard output.
    #[arg(long)]
    json: bool,
}

fn parse_faults(list: &str) -> Result<Vec<Fault>, String> {
    match list.trim() {
        "all" => Ok(Fault::ALL.to_vec()),
        "none" | "" => Ok(Vec::new()),
        l => l.split(',').map(|f| f.trim().parse()).collect(),
    }
}

/// The uploads: generated speech, or the `.wav` files of `dir` (sorted, each capped).
fn inputs(args: &DemoArgs) -> Result<Vec<Vec<u8>>, String> {
    let Some(dir) = &args.inputs else {
        return Ok((0..u64::from(args.jobs))
            .map(|n| {
                let mut rng = Rng::new(args.seed.wrapping_add(n));
                let words = rng.range(4, 10) as u32;
                wav::speech(&mut rng, 16_000, words)
            })
            .collect());
    };
    let read = |p: &Path| -> Result<Vec<u8>, String> {
        let e = |e: std::io::Error| format!("read input {}: {e}", p.display());
        let len = std::fs::metadata(p).map_err(e)?.len();
        if len > MAX_INPUT {
            return Err(format!(
                "read input {}: {len} bytes, over {MAX_INPUT}",
                p.display()
            ));
        }
        std::fs::read(p).map_err(e)
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("read inputs dir {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x.eq_ignore_ascii_case("wav")))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(format!("read inputs dir {}: no .wav file", dir.display()));
    }
    let jobs = usize::from(args.jobs);
    let uploads: Vec<Vec<u8>> = files
        .iter()
        .take(jobs)
        .map(|p| read(p))
        .collect::<Result<_, _>>()?;
    // Fewer files than jobs: the uploads repeat.
    Ok(uploads.iter().cycle().take(jobs).cloned().collect())
}

fn outside(base: &Path) -> Outside {
    let kids = os::children();
    Outside {
        fds: os::open_fds(),
        children: kids.len(),
        zombies: kids.iter().filter(|(_, s)| *s == 'Z').count(),
        temp_entries: os::entries(base).len(),
    }
}

/// Runs `custodian demo`; returns the exit code.
pub(crate) async fn main(args: DemoArgs) -> u8 {
    let faults = match parse_faults(&args.faults) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("custodian demo: {e}");
            return 2;
        }
    };
    let inputs = match inputs(&args) {
        Ok(i) => Arc::new(i),
        Err(e) => {
            // A usage or input error (2), not "something was left over" (1).
            eprintln!("custodian demo: {e}");
            return 2;
        }
    };
    // The injected panic is part of the demo: one line, not a backtrace hint.
    std::panic::set_hook(Box::new(|info| eprintln!("(injected) panic: {info}")));
    let base = std::env::temp_dir();
    let ours_before: Vec<String> = os::entries(&base)
        .into_iter()
        .filter(|e| e.starts_with(PREFIX))
        .collect();
    let before = outside(&base);
    let fds_before = os::fd_targets();
    let started = Instant::now();
    let sup = match Supervisor::builder()
        .temp_prefix(PREFIX)
        .grace(Duration::from_secs(3))
        .handle_signals(true)
        .inspect(true) // `custodian inspect PID` while it runs
        .quota(Quota::temp_bytes(job::TEMP_QUOTA))
        .start()
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("custodian demo: {e}");
            return 125;
        }
    };
    let temp_root = sup.temp_root().to_path_buf();
    let jobs = inputs.len();
    let progress = Arc::new(Progress::new(jobs));
    progress.note(&format!(
        "custodian demo: {jobs} jobs, temp root {}",
        temp_root.display()
    ));
    if jobs < faults.len() {
        progress.note(&format!(
            "only {jobs} jobs: the last faults are not injected"
        ));
    }
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let factory = {
        let (outcomes, progress, sup2) = (outcomes.clone(), progress.clone(), sup.clone());
        let faults = faults.clone();
        sup.scope("factory", async move |fs| {
            let out = fs.temp().prefix("outputs-").label("outputs").dir().await?;
            let sox = os::on_path("sox");
            let mut set = JoinSet::new();
            let mut meta = std::collections::HashMap::new();
            for n in 0..jobs {
                let fault = faults.get(n).copied();
                let spec = JobSpec {
                    n,
                    fault,
                    input: inputs[n].clone(),
                    out: out.path().to_path_buf(),
                    sox,
                };
                let limit = match fault {
                    Some(Fault::Deadline) => Duration::from_secs(1),
                    _ => Duration::from_secs(30),
                };
                let body = fs.scope(&format!("job-{n}"), async move |s| job::run(s, spec).await);
                let t0 = Instant::now();
                let h = set.spawn(async move {
                    match tokio::time::timeout(limit, body).await {
                        Err(_) => Err(format!(
                            "deadline of {limit:?} exceeded: its future was dropped"
                        )),
                        Ok(Err(e)) => Err(e.to_string()),
                        Ok(Ok(r)) => r,
                    }
                });
                meta.insert(h.id(), (n, fault, t0));
            }
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            let mut told = false;
            loop {
                let done = tokio::select! {
                    d = set.join_next_with_id() => d,
                    _ = tick.tick() => {
                        progress.tick(&live_by_kind(&sup2));
                        if sup2.is_shutting_down() && !told {
                            told = true;
                            progress.note("interrupted: graceful shutdown (Ctrl-C again to force)");
                        }
                        continue;
                    }
                };
                let Some(done) = done else { break };
                let (id, r) = match done {
                    Ok((id, r)) => (id, r),
                    Err(e) => (e.id(), Err(panic_text(e))),
                };
                let Some(&(n, fault, t0)) = meta.get(&id) else {
                    continue;
                };
                let o = JobOutcome {
                    job: n,
                    fault: fault.map(|f| f.to_string()),
                    ok: r.is_ok(),
                    detail: r.unwrap_or_else(|e| e),
                    ms: t0.elapsed().as_millis() as u64,
                };
                let line = format!(
                    "job {n:>2} {}: {}",
                    if o.ok { "ok" } else { "failed" },
                    o.detail
                );
                progress.job_done(&line, &live_by_kind(&sup2));
                if let Ok(mut v) = outcomes.lock() {
                    v.push(o);
                }
            }
            out.close().await
        })
    };
    if let Ok(Err(e)) | Err(e) = factory.await {
        progress.note(&format!("factory: {e}"));
    }
    progress.finish();
    let interrupted = sup.is_shutting_down();
    let shutdown = sup.shutdown().await;
    drop(sup);
    // A clean-up handed to the blocking pool may close its fd just after shutdown
    // returns: give the count a moment to settle (a real leak stays).
    let settle = Instant::now() + Duration::from_secs(2);
    while os::open_fds() > before.fds && Instant::now() < settle {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let after = outside(&base);
    let extra_fds: Vec<String> = os::fd_targets()
        .into_iter()
        .filter(|fd| !fds_before.contains(fd))
        .map(|(n, t)| format!("{n} -> {t}"))
        .collect();
    let ours_after = os::entries(&base)
        .into_iter()
        .filter(|e| e.starts_with(PREFIX));
    let mut jobs_out = std::mem::take(&mut *outcomes.lock().unwrap_or_else(|e| e.into_inner()));
    jobs_out.sort_by_key(|j| j.job);
    let leftovers = Leftovers {
        live_resources: shutdown.stats.live(),
        fds: after.fds.saturating_sub(before.fds),
        children: after.children,
        temp_root_exists: usize::from(temp_root.exists()),
        temp_entries: ours_after.filter(|e| !ours_before.contains(e)).count(),
        failed_cleanups: shutdown.failures.len() + usize::from(shutdown.temp_root_error.is_some()),
    };
    let clean = leftovers.total() == 0;
    let report = DemoReport {
        seed: args.seed,
        faults: faults.iter().take(jobs).map(|f| f.to_string()).collect(),
        jobs: jobs_out,
        interrupted,
        wall_ms: started.elapsed().as_millis() as u64,
        kinds: report::kinds(&shutdown),
        leaks: shutdown.leaks.clone(),
        failures: shutdown.failures.clone(),
        before,
        after,
        temp_root,
        extra_fds,
        leftovers,
        clean,
        shutdown,
    };
    if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(j) => println!("{j}"),
            Err(e) => eprintln!("custodian demo: cannot write JSON: {e}"),
        }
    } else {
        print!("{}", report.text());
    }
    match (clean, interrupted) {
        (false, _) => 1,
        (true, true) => 130,
        (true, false) => 0,
    }
}

fn panic_text(e: tokio::task::JoinError) -> String {
    if !e.is_panic() {
        return format!("task ended: {e}");
    }
    let p = e.into_panic();
    let msg = p
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "?".to_owned());
    format!("panicked: {msg}; its scope released what it held")
}
