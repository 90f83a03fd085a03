//! The HTTP service example under load, stopped with SIGTERM mid-load (issue 13).
//!
//! The `http-service` bin (examples/09_http_service.rs) runs as a real process with its own
//! `TMPDIR`. A Rust client in this test sends 2,000+ uploads, 32 at a time: good WAVs,
//! malformed ones, and clients that hang up mid-upload. After a first load the service
//! must be back to its baseline (fds, no temp entry, no child, `/stats` consistent with
//! nothing live and nothing leaked); during a second load it gets SIGTERM, and every
//! request the service had taken must end with its real answer — no request cut off by
//! the shutdown — it must exit within its grace, and leave nothing behind.

mod http_load;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use http_load::{Kind, Outcome, Record, eventually, fds_of, processes_of};

const CONCURRENCY: usize = 32;
/// The service's `GRACE`, and a margin for a loaded machine.
const EXIT_WITHIN: Duration = Duration::from_secs(10 + 5);

/// Checks one answer against the request's kind; `Err` says what is wrong.
fn check(r: &Record, temp_root: &str) -> Result<(), String> {
    match (&r.kind, &r.outcome) {
        (Kind::Good, Outcome::Status(200, body)) if body.contains("\"frames\":4000") => Ok(()),
        (Kind::Malformed, Outcome::Status(422, body)) => {
            // The client-safe message names the problem, never the private temp root.
            match body.contains("malformed") && !body.contains(temp_root) && !body.contains("/tmp")
            {
                true => Ok(()),
                false => Err(format!("422 body leaks a path or says nothing: {body}")),
            }
        }
        (Kind::HangUp, Outcome::HungUp) => Ok(()),
        (k, o) => Err(format!("{k:?} got {o:?}")),
    }
}

fn stats_ok(json: &serde_json::Value) -> Result<(), String> {
    let kinds = json["kinds"].as_object().ok_or("no kinds")?;
    for (name, k) in kinds {
        let released: u64 = k["released"]
            .as_object()
            .ok_or("no released")?
            .values()
            .map(|v| v.as_u64().unwrap_or(0))
            .sum();
        let (created, live) = (
            k["created"].as_u64().unwrap_or(0),
            k["live"].as_u64().unwrap_or(0),
        );
        let leaked = k["released"]["scope_end"].as_u64().unwrap_or(0)
            + k["released"]["shutdown"].as_u64().unwrap_or(0);
        if created != released + live || live != 0 || leaked != 0 || k["failures"] != 0 {
            return Err(format!("{name}: {k}"));
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_then_sigterm_mid_load_leaves_nothing() {
    let t0 = Instant::now();
    let tmp = custodian_suite::scratch_dir("http-service");
    let mut svc = http_load::start(&tmp);
    let (pid, addr, root) = (svc.child.pid(), svc.addr, svc.temp_root.clone());
    let good = Arc::new(http_load::wav(4000));
    let nothing = Arc::new(|_| {});

    // Warm up (the runtime's and the pool's first fds), then take the baseline.
    let warm = http_load::load(addr, "/ingest", 40, 8, good.clone(), nothing.clone()).await;
    warm.iter().for_each(|r| check(r, &root).unwrap());
    let idle =
        || custodian_suite::entries(root.as_ref()).is_empty() && processes_of(pid, "").is_empty();
    assert!(
        eventually(Duration::from_secs(10), idle),
        "warm-up left entries or children"
    );
    let baseline = fds_of(pid);

    // 1. A first load: every answer right, then back to the baseline.
    let first = http_load::load(addr, "/ingest", 1000, CONCURRENCY, good.clone(), nothing).await;
    let wrong: Vec<String> = first.iter().filter_map(|r| check(r, &root).err()).collect();
    assert!(
        wrong.is_empty(),
        "{} wrong answers, first: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
    assert!(
        eventually(Duration::from_secs(10), || fds_of(pid) <= baseline
            && idle()),
        "after the load: {} fds (baseline {baseline}), temp entries {:?}, children {:?}",
        fds_of(pid),
        custodian_suite::entries(root.as_ref()),
        processes_of(pid, "")
    );
    let stats: serde_json::Value =
        serde_json::from_str(&http_load::get(addr, "/stats").await.expect("stats")).unwrap();
    assert_eq!(
        (stats["consistent"].as_bool(), stats["live"].as_u64()),
        (Some(true), Some(0)),
        "{stats}"
    );
    stats_ok(&stats["stats"]).unwrap();
    // Backpressure held the uploads (16 spool at once for 32 clients): some waited, none
    // was refused, and nothing is held now.
    let quotas = stats["stats"]["quotas"].as_array().expect("quotas");
    let sum = |f: &str| quotas.iter().map(|q| q[f].as_u64().unwrap()).sum::<u64>();
    assert_eq!(
        (sum("refused"), sum("in_use"), sum("waiting")),
        (0, 0, 0),
        "{stats}"
    );
    assert!(sum("waited") > 0, "no acquisition waited: {stats}");
    // Every request reached its handler: 850 good ones ran a child; the 100 malformed
    // and 50 hung-up ones released their spool file early, by drop or cancellation.
    let kinds = &stats["stats"]["kinds"];
    assert!(kinds["child"]["created"].as_u64() >= Some(850), "{stats}");
    let temp = &kinds["temp_file"];
    assert!(temp["created"].as_u64() >= Some(1040), "{stats}");
    let early = temp["released"]["drop"].as_u64().unwrap()
        + temp["released"]["cancelled"].as_u64().unwrap();
    assert!(early >= 150, "{stats}");

    // 2. A second load, SIGTERM after 400 answers.
    let sent = Arc::new(std::sync::Mutex::new(None::<Instant>));
    let (signalled, s2) = (Arc::new(AtomicBool::new(false)), sent.clone());
    let sig = signalled.clone();
    let on_done = Arc::new(move |n: usize| {
        if n >= 400 && !sig.swap(true, Ordering::AcqRel) {
            let p = rustix::process::Pid::from_raw(pid as i32).expect("a pid");
            rustix::process::kill_process(p, rustix::process::Signal::TERM).expect("SIGTERM");
            *s2.lock().unwrap() = Some(Instant::now());
        }
    });
    let second = http_load::load(addr, "/ingest", 1000, CONCURRENCY, good, on_done).await;
    let term = sent.lock().unwrap().expect("SIGTERM was sent");
    let status = tokio::task::block_in_place(|| svc.child.wait_exit(EXIT_WITHIN));
    let exited_after = term.elapsed();
    let status = status.unwrap_or_else(|| {
        svc.child.kill();
        panic!("the service did not exit within {EXIT_WITHIN:?} of SIGTERM")
    });
    let stderr = svc.child.drain(Duration::from_secs(5));
    assert!(status.success(), "exit {status}; stderr:\n{stderr}");

    // Every request ends with its real answer, except one the service never took, which
    // ends after the SIGTERM: refused before its work began (503 `refused`: its handler
    // ran after the drain began, before axum stopped reading) or never read (no response:
    // still in the listen backlog, or sent after the listener closed).
    let (mut real, mut refused, mut unread, mut bad) = (0, 0, 0, Vec::new());
    for r in &second {
        match (&r.outcome, check(r, &root)) {
            (_, Ok(())) => real += 1,
            (Outcome::Status(503, b), _) if b.contains("\"refused\"") && r.ended >= term => {
                refused += 1
            }
            (Outcome::NoResponse(_), _) if r.ended >= term => unread += 1,
            (_, Err(e)) => bad.push(match r.started.checked_duration_since(term) {
                Some(d) => format!("{e} (started {d:?} after SIGTERM)"),
                None => format!("{e} (started {:?} before SIGTERM)", term - r.started),
            }),
        }
    }
    let after = second
        .iter()
        .filter(|r| r.ended >= term && check(r, &root).is_ok())
        .count();
    eprintln!(
        "second load: {real} real answers ({after} ended after SIGTERM), {refused} refused, {unread} unread; \
         exit {exited_after:?} after SIGTERM; whole test {:?}",
        t0.elapsed()
    );
    assert!(
        bad.is_empty(),
        "{} requests not answered for real: {:?}\nstdout:\n{}\nstderr:\n{stderr}",
        bad.len(),
        &bad[..bad.len().min(8)],
        svc.child.seen.join("\n")
    );
    // The service drained: the scopes running at SIGTERM all finished by themselves.
    let drain = svc
        .child
        .seen
        .iter()
        .find_map(|l| l.strip_prefix("drain: "));
    let words: Vec<&str> = drain
        .expect("a drain in the report")
        .split_whitespace()
        .collect();
    let (finished, running) = (words[0], words[2]);
    assert!(finished == running && running != "0", "drain: {words:?}");

    // Nothing left: the temp base (the private root and the raw spool files live there),
    // no child of the service or process naming its temp dir, no zombie, stats clean.
    let left = || {
        custodian_suite::entries(&tmp).is_empty()
            && processes_of(pid, tmp.to_str().unwrap()).is_empty()
    };
    assert!(
        eventually(Duration::from_secs(5), left),
        "left: {:?} {:?}",
        custodian_suite::entries(&tmp),
        processes_of(pid, tmp.to_str().unwrap())
    );
    assert!(custodian_suite::zombie_children().is_empty(), "zombies");
    let last = svc
        .child
        .seen
        .iter()
        .find_map(|l| l.strip_prefix("final stats: "))
        .expect("final stats line");
    stats_ok(&serde_json::from_str(last).unwrap()).unwrap();
    let _ = std::fs::remove_dir(&tmp);
}

/// A truncated upload (its header declares 48,000 frames, 14,978 arrived) is a 422 that
/// says so and names no path; a whole one is a 200; nothing is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_upload_is_a_422() {
    let tmp = custodian_suite::scratch_dir("http-truncated");
    let mut svc = http_load::start(&tmp);
    let (addr, root) = (svc.addr, svc.temp_root.clone());
    let mut cut = http_load::wav(48_000);
    cut.truncate(44 + 2 * 14_978);
    match http_load::post(addr, "/ingest", &cut, None).await {
        Outcome::Status(422, body) => {
            assert!(
                body.contains("truncated")
                    && body.contains("48000")
                    && body.contains("14978")
                    && !body.contains(&root),
                "{body}"
            );
        }
        o => panic!("a truncated upload got {o:?}"),
    }
    let whole = http_load::post(addr, "/ingest", &http_load::wav(14_978), None).await;
    assert!(
        matches!(&whole, Outcome::Status(200, b) if b.contains("\"frames\":14978")),
        "{whole:?}"
    );
    let pid = rustix::process::Pid::from_raw(svc.child.pid() as i32).expect("a pid");
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
    let status = tokio::task::block_in_place(|| svc.child.wait_exit(EXIT_WITHIN));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    // The printed report names the signal that began the shutdown.
    let stderr = svc.child.drain(Duration::from_secs(5));
    let seen = svc.child.seen.join("\n");
    assert!(seen.contains("began by SIGTERM"), "{seen}\n{stderr}");
    assert!(
        eventually(Duration::from_secs(5), || custodian_suite::entries(&tmp)
            .is_empty()),
        "left: {:?}",
        custodian_suite::entries(&tmp)
    );
    let _ = std::fs::remove_dir(&tmp);
}
