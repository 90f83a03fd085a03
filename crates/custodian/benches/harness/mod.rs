//! The driver shared by the pair binaries (`benches/pairs.rs`, tokio-custodian-audio's
//! `benches/pairs_audio.rs`): one pair is a managed side and one or more raw sides, each
//! a *batch* function that runs `n` operations and returns the time of the measured part.
//!
//! Two modes, chosen by the command line (`cargo bench` adds `--bench`, ignored):
//! - `time [ROUNDS] [PAIR...]`: interleaved rounds. Each round runs one batch of every
//!   side, in alternating order (managed first in even rounds, last in odd ones), so
//!   that the load of the shared machine hits both sides alike; prints, per raw side,
//!   the median of the per-round ratios managed/raw with their spread (p25–p75, min–max).
//! - `count PAIR SIDE N`: set up, warm up, run one batch of `N` operations of one side
//!   and exit at once, without teardown. Run under `valgrind --tool=callgrind` with `N`
//!   and with `0`: the difference of the two instruction counts is the cost of `N`
//!   operations alone (setup, warm-up, runtime start are the same in both runs).
//!   For a one-shot pair (shutdown, mass release) `N` is 0 or 1: the setup always runs,
//!   the measured operation only if `N` is 1.

#![allow(dead_code)]

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// Runs `n` operations; returns the time of the measured part.
pub(crate) type Batch = Box<dyn FnMut(u64) -> Pin<Box<dyn Future<Output = Duration>>>>;

/// A managed side and its raw counterparts.
pub(crate) struct Pair {
    pub(crate) name: &'static str,
    /// Operations per batch in `time` mode (1 for a one-shot pair).
    pub(crate) batch: u64,
    /// Warm-up operations before the counted batch in `count` mode.
    pub(crate) warm: u64,
    /// `(name, batch)`: the managed side first.
    pub(crate) sides: Vec<(&'static str, Batch)>,
    /// What a side's per-operation time is reported as (`"µs/op"`, `"ms"`).
    pub(crate) unit: Unit,
}

/// How a per-operation time is printed.
#[derive(Clone, Copy)]
pub(crate) enum Unit {
    Ns,
    Us,
    Ms,
}

impl Unit {
    fn show(self, d: f64) -> String {
        match self {
            Unit::Ns => format!("{:.0} ns", d * 1e9),
            Unit::Us => format!("{:.1} µs", d * 1e6),
            Unit::Ms => format!("{:.2} ms", d * 1e3),
        }
    }
}

/// A per-operation batch: `n` times `$body` (which may `.await`), with `$s` a clone of
/// `$state` taken once per batch so that no per-operation clone is measured.
macro_rules! per_op {
    ($state:expr, |$s:ident| $body:expr) => {{
        let state = $state;
        Box::new(move |n: u64| {
            #[allow(unused_variables)]
            let $s = state.clone();
            Box::pin(async move {
                let t = std::time::Instant::now();
                for _ in 0..n {
                    $body;
                }
                t.elapsed()
            })
                as std::pin::Pin<Box<dyn std::future::Future<Output = std::time::Duration>>>
        }) as $crate::harness::Batch
    }};
}

static COUNTING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// In `count` mode, exits at once: a one-shot side calls it right after its measured
/// operation, so that its teardown (dropping 10k guards, say) is not counted with it.
pub(crate) fn exit_if_counting() {
    if COUNTING.load(std::sync::atomic::Ordering::Relaxed) {
        std::process::exit(0);
    }
}

/// The multi-thread runtime every side runs on (two workers, like the CI machine).
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Parses the command line and runs `time` or `count` over the pairs `build` makes
/// (`build(name)`, `None` for an unknown name); `names` lists them all.
pub(crate) fn main(
    rt: &tokio::runtime::Runtime,
    names: &[&str],
    build: impl Fn(&str) -> Option<Pair>,
) {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    match args.first().map(String::as_str) {
        Some("count") => {
            COUNTING.store(true, std::sync::atomic::Ordering::Relaxed);
            let [_, pair, side, n] = &args[..] else {
                panic!("usage: count PAIR SIDE N");
            };
            let mut p = build(pair).unwrap_or_else(|| panic!("unknown pair {pair}"));
            let n: u64 = n.parse().expect("N");
            let f = &mut p
                .sides
                .iter_mut()
                .find(|(s, _)| s == side)
                .unwrap_or_else(|| panic!("{pair} has no side {side}"))
                .1;
            if p.warm > 0 {
                rt.block_on(f(p.warm));
            }
            rt.block_on(f(n));
            // No teardown: the runs with N and with 0 must differ by the N operations only.
            std::process::exit(0);
        }
        Some("list") => {
            for name in names {
                let p = build(name).unwrap();
                let sides: Vec<_> = p.sides.iter().map(|(s, _)| *s).collect();
                println!("{name} {} {}", p.batch, sides.join(","));
            }
        }
        Some("time") | None => {
            let rounds = args.get(1).and_then(|r| r.parse().ok()).unwrap_or(11usize);
            let chosen: Vec<&str> = if args.len() > 2 {
                args[2..].iter().map(String::as_str).collect()
            } else {
                names.to_vec()
            };
            for name in chosen {
                let p = build(name).unwrap_or_else(|| panic!("unknown pair {name}"));
                time(rt, p, rounds.max(1));
            }
        }
        Some(other) => panic!("unknown mode {other}: time, count or list"),
    }
}

fn time(rt: &tokio::runtime::Runtime, mut p: Pair, rounds: usize) {
    let k = p.sides.len();
    // One untimed batch of each side first: lazy statics, page cache, pool threads.
    for (_, f) in &mut p.sides {
        rt.block_on(f(p.batch));
    }
    let mut per_op = vec![Vec::with_capacity(rounds); k];
    for r in 0..rounds {
        let order: Vec<usize> = if r % 2 == 0 {
            (0..k).collect()
        } else {
            (0..k).rev().collect()
        };
        for i in order {
            let d = rt.block_on((p.sides[i].1)(p.batch));
            per_op[i].push(d.as_secs_f64() / p.batch as f64);
        }
    }
    let unit = p.unit;
    let med = |v: &[f64]| sorted(v)[v.len() / 2];
    let managed = &per_op[0];
    print!(
        "{:<24} {}: {}",
        p.name,
        p.sides[0].0,
        unit.show(med(managed))
    );
    for (i, (side, _)) in p.sides.iter().enumerate().skip(1) {
        let ratios: Vec<f64> = managed.iter().zip(&per_op[i]).map(|(m, r)| m / r).collect();
        let s = sorted(&ratios);
        let n = s.len();
        print!(
            " | vs {side} {}: {:.2}× (p25–p75 {:.2}–{:.2}, min–max {:.2}–{:.2})",
            unit.show(med(&per_op[i])),
            s[n / 2],
            s[n / 4],
            s[(3 * n) / 4].min(s[n - 1]),
            s[0],
            s[n - 1],
        );
    }
    if k == 1 {
        let s = sorted(managed);
        print!(
            " (min–max {}–{})",
            unit.show(s[0]),
            unit.show(s[s.len() - 1])
        );
    }
    println!(" [{rounds} rounds of {}]", p.batch);
}

fn sorted(v: &[f64]) -> Vec<f64> {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s
}
