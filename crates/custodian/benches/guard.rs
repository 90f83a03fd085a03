//! The hot paths that `.ci/perf_guard.sh` holds to an instruction budget under callgrind:
//! registration, scope enter + exit, file open + drop, temp file create + drop.
//!
//! Single-threaded where custodian lets it be: a current-thread runtime (the file open
//! and the temp file still make their one hop to the blocking pool, as in a service).
//! `guard count OP N` starts a supervisor, warms `OP` up, runs it `N` times and exits at
//! once without teardown; the script runs it with `N` and with `0` and divides the
//! difference by `N`. `guard list` prints the operations, their `N` and how many runs
//! the script takes the least of.
//!
//! Run: `.ci/perf_guard.sh` (check against `.ci/perf_budget.txt`) or
//! `.ci/perf_guard.sh --update` (re-measure and write the budgets).

#![allow(missing_docs)]

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use tokio_custodian::{Cleanup, Reclaim, ResourceKind, Supervisor};

/// The operations, how many of each a counted run makes (enough that the fixed costs
/// of a run cancel out; few enough for CI's minute), and how many runs the script takes
/// the least of. Registration and scope run on one thread and count the same in every
/// run; file open and temp file hand work to a blocking-pool thread, and how the two
/// threads interleave under valgrind moves malloc's and the locks' paths by a few %.
const OPS: &[(&str, u64, u32)] = &[
    ("registration", 2_000, 1),
    ("scope", 1_000, 1),
    ("file_open", 500, 3),
    ("temp_file", 500, 3),
];

/// Warm-up operations before the counted ones (pool threads, lazy statics, the
/// registry's first growth).
const WARM: u64 = 64;

struct Nothing;

impl Reclaim for Nothing {
    fn reclaim(self: Box<Self>) -> Cleanup {
        Cleanup::Done(Ok(()))
    }
}

fn base() -> PathBuf {
    std::env::var_os("CUSTODIAN_BENCH_DIR").map_or_else(
        || {
            let shm = PathBuf::from("/dev/shm");
            if shm.is_dir() {
                shm
            } else {
                std::env::temp_dir()
            }
        },
        PathBuf::from,
    )
}

async fn run(sup: &Supervisor, op: &str, n: u64) {
    let root = sup.root();
    for _ in 0..n {
        match op {
            "registration" => drop(black_box(
                root.register(ResourceKind::Lock, "guard", None, Nothing)
                    .unwrap(),
            )),
            "scope" => {
                black_box(sup.scope("guard", async |_s| black_box(1)).await.unwrap());
            }
            "file_open" => drop(black_box(sup.open("/dev/null").await.unwrap())),
            "temp_file" => drop(black_box(sup.temp_file().await.unwrap())),
            other => panic!("unknown operation {other}"),
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["list"] => {
            for (op, n, runs) in OPS {
                println!("{op} {n} {runs}");
            }
        }
        ["count", op, n] => {
            assert!(OPS.iter().any(|(o, ..)| *o == op), "unknown operation {op}");
            let n: u64 = n.parse().expect("N");
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let sup = rt.block_on(async {
                // Left out: the periodic leak scan (a timer's ticks follow the wall time,
                // which callgrind stretches) and the start's sweep of abandoned roots (a
                // background task whose cost follows the machine's /proc).
                let sup = Supervisor::builder()
                    .temp_base(base())
                    .leak_scan_interval(Duration::from_secs(3_600))
                    .reap_abandoned(false)
                    .start()
                    .unwrap();
                run(&sup, op, WARM).await;
                sup
            });
            rt.block_on(run(&sup, op, n));
            // No teardown: the runs with N and with 0 differ by the N operations only.
            std::process::exit(0);
        }
        _ => panic!("usage: guard list | guard count OP N"),
    }
}
