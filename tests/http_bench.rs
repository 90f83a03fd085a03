//! Throughput, p99 latency and RSS of the HTTP service example, managed (`/ingest`)
//! against the raw handler doing the same work without custodian (`/raw/ingest`), in
//! interleaved rounds of one run (issue 13). Two processes of the same release binary, one
//! per route, so that each one's RSS is its own. Ignored by default; the documented
//! command (docs/benchmarks.md, "Service (issue 13)"):
//!
//! `cargo test --release -p custodian-suite --test http_bench -- --ignored --nocapture`

mod http_load;

use std::sync::Arc;
use std::time::{Duration, Instant};

use http_load::{Kind, Outcome, status_field};

/// Rounds and requests per round (`HTTP_BENCH_SIZE=ROUNDS,per_round` overrides them).
fn size() -> (usize, usize) {
    let s = std::env::var("HTTP_BENCH_SIZE").unwrap_or_default();
    match s.split_once(',').map(|(a, b)| (a.parse(), b.parse())) {
        Some((Ok(r), Ok(n))) => (r, n),
        _ => (8, 1000),
    }
}
const CONCURRENCY: usize = 32;

/// Good uploads only, so both sides do the full work on every request.
fn all_good(_: usize) -> Kind {
    Kind::Good
}

/// (requests per second, p50, p99) of one run.
async fn run(
    addr: std::net::SocketAddr,
    path: &'static str,
    n: usize,
    wav: &Arc<Vec<u8>>,
) -> (f64, Duration, Duration) {
    let t = Instant::now();
    let recs = http_load::load_mix(
        addr,
        path,
        n,
        CONCURRENCY,
        wav.clone(),
        all_good,
        Arc::new(|_| {}),
    )
    .await;
    let took = t.elapsed();
    let mut lat: Vec<Duration> = recs.iter().map(|r| r.ended - r.started).collect();
    let bad = recs
        .iter()
        .filter(|r| !matches!(r.outcome, Outcome::Status(200, _)))
        .count();
    assert_eq!(bad, 0, "{path}: {bad} requests failed");
    lat.sort();
    (n as f64 / took.as_secs_f64(), lat[n / 2], lat[n * 99 / 100])
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run it in release, see the module doc"]
async fn managed_against_raw() {
    let (tm, tr) = (
        custodian_suite::scratch_dir("bench-managed"),
        custodian_suite::scratch_dir("bench-raw"),
    );
    let (mut managed, mut raw) = (http_load::start(&tm), http_load::start(&tr));
    let wav = Arc::new(http_load::wav(16_000)); // 1 s of 16 kHz mono, 32 kB
    run(managed.addr, "/ingest", 200, &wav).await;
    run(raw.addr, "/raw/ingest", 200, &wav).await;
    let (rounds, per_round) = size();
    let (mut tput, mut p99, mut p50) = (Vec::new(), Vec::new(), Vec::new());
    println!("round  managed req/s  p50  p99   |  raw req/s  p50  p99");
    for round in 0..rounds {
        // Alternate which side goes first, so that neither always runs on a warmer machine.
        let (m, r) = if round % 2 == 0 {
            let m = run(managed.addr, "/ingest", per_round, &wav).await;
            (m, run(raw.addr, "/raw/ingest", per_round, &wav).await)
        } else {
            let r = run(raw.addr, "/raw/ingest", per_round, &wav).await;
            (run(managed.addr, "/ingest", per_round, &wav).await, r)
        };
        println!(
            "{round:>5}  {:>8.0} {:>6.1?} {:>6.1?} | {:>8.0} {:>6.1?} {:>6.1?}",
            m.0, m.1, m.2, r.0, r.1, r.2
        );
        tput.push(m.0 / r.0);
        p50.push(m.1.as_secs_f64() / r.1.as_secs_f64());
        p99.push(m.2.as_secs_f64() / r.2.as_secs_f64());
    }
    let spread = |v: &[f64]| {
        (
            v.iter().copied().fold(f64::MAX, f64::min),
            v.iter().copied().fold(0.0, f64::max),
        )
    };
    println!(
        "throughput managed/raw: median {:.3}, range {:.3?}",
        median(tput.clone()),
        spread(&tput)
    );
    println!(
        "p50 managed/raw: median {:.3}, range {:.3?}",
        median(p50.clone()),
        spread(&p50)
    );
    println!(
        "p99 managed/raw: median {:.3}, range {:.3?}",
        median(p99.clone()),
        spread(&p99)
    );
    let n = 200 + rounds * per_round;
    for (name, svc) in [("managed", &managed), ("raw", &raw)] {
        let pid = svc.child.pid();
        println!(
            "{name}: after {n} requests RSS {} kB (anon {} kB, file {} kB; peak {} kB), {} threads, {} fds",
            status_field(pid, "VmRSS"),
            status_field(pid, "RssAnon"),
            status_field(pid, "RssFile"),
            status_field(pid, "VmHWM"),
            status_field(pid, "Threads"),
            http_load::fds_of(pid)
        );
    }
    for (svc, dir) in [(&mut managed, tm), (&mut raw, tr)] {
        rustix::process::kill_process(
            rustix::process::Pid::from_raw(svc.child.pid() as i32).unwrap(),
            rustix::process::Signal::TERM,
        )
        .unwrap();
        assert!(
            svc.child
                .wait_exit(Duration::from_secs(15))
                .is_some_and(|s| s.success())
        );
        assert!(
            custodian_suite::entries(&dir).is_empty(),
            "left in {}",
            dir.display()
        );
        let _ = std::fs::remove_dir(&dir);
    }
}
