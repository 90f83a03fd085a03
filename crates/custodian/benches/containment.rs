//! The containment tiers' pairs (issue 19), with the driver of `pairs.rs` (`time` rounds
//! and callgrind `count`s, see `harness/mod.rs`):
//!
//! - `cgroup_spawn`: spawn + wait + close of `true`, the cgroup tier against process
//!   groups only;
//! - `cgroup_release_50`: `close()` of a child whose shell started 50 `sleep`s in its
//!   group (all answer SIGTERM), cgroup tier against group + `/proc` scan (the spawn and
//!   the wait for the 50 are set-up, not timed; under callgrind they are counted, on the
//!   supervisor's side only);
//! - `cgroup_recover_100`: one `recover()` of 100 dead owners of the cgroup tier (each
//!   SIGKILLed with a child and a `setsid` escapee running in its cgroup), against the
//!   raw kill of the same 100 cgroups (`cgroup.kill`, wait for `populated 0`, `rmdir`,
//!   no proof and no journal).
//!
//! Needs root and a writable cgroup2 (the cgroup tier). Run:
//! `cargo bench -p tokio-custodian --bench containment -- time 7 [PAIR...]`; for the
//! counts, see `docs/benchmarks.md` (a `count` run exits without teardown: `cleanup DIR`
//! recovers what the owners of a run under `DIR` left).

#![allow(missing_docs)]

#[macro_use]
#[path = "harness/mod.rs"]
mod harness;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use harness::{Batch, Pair, Unit, exit_if_counting};
use tokio::io::AsyncBufReadExt;
use tokio_custodian::{Containment, Recovery, Supervisor};

const NAMES: &[&str] = &["cgroup_spawn", "cgroup_release_50", "cgroup_recover_100"];
const OWNERS: usize = 100;

fn base() -> PathBuf {
    std::env::var_os("CUSTODIAN_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from)
}

/// A fresh private directory under `base()`.
fn fresh_dir(tag: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let d = base().join(format!(
        "custodian-containment-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&d).unwrap();
    let private = std::os::unix::fs::PermissionsExt::from_mode(0o700);
    std::fs::set_permissions(&d, private).unwrap();
    d
}

fn sup(rt: &tokio::runtime::Runtime, c: Containment) -> Supervisor {
    let s = rt.block_on(async {
        Supervisor::builder()
            .temp_base(std::env::temp_dir())
            .containment(c)
            .start()
            .unwrap()
    });
    if c == Containment::Required {
        assert!(s.stats().containment.is_cgroup());
    }
    s
}

fn batch<F, Fut>(f: F) -> Batch
where
    F: Fn(u64) -> Fut + 'static,
    Fut: Future<Output = Duration> + 'static,
{
    Box::new(move |n| Box::pin(f(n)))
}

fn build(rt: &tokio::runtime::Runtime, name: &str) -> Option<Pair> {
    let name: &'static str = NAMES.iter().find(|n| **n == name)?;
    let spawn = |s: Supervisor| {
        per_op!(s, |s| {
            let mut c = s.command("true").spawn().unwrap();
            assert!(c.wait().await.unwrap().success());
            c.close().await.unwrap();
        })
    };
    Some(match name {
        "cgroup_spawn" => Pair {
            name,
            batch: 20,
            warm: 6,
            sides: vec![
                ("cgroup", spawn(sup(rt, Containment::Required))),
                ("group", spawn(sup(rt, Containment::Never))),
            ],
            unit: Unit::Us,
        },
        "cgroup_release_50" => Pair {
            name,
            batch: 3,
            warm: 1,
            sides: vec![
                ("cgroup", release_50(sup(rt, Containment::Required))),
                ("group", release_50(sup(rt, Containment::Never))),
            ],
            unit: Unit::Ms,
        },
        "cgroup_recover_100" => Pair {
            name,
            batch: 1,
            warm: 0,
            sides: vec![
                ("recover", batch(|n| recover_100(n, false))),
                ("raw_kill", batch(|n| recover_100(n, true))),
            ],
            unit: Unit::Ms,
        },
        _ => return None,
    })
}

/// `n` times: a child that starts 50 `sleep`s in its group, then (timed) its `close()`.
fn release_50(s: Supervisor) -> Batch {
    batch(move |n| {
        let s = s.clone();
        async move {
            let mut took = Duration::ZERO;
            for _ in 0..n {
                let mut c = s
                    .command("sh")
                    .args([
                        "-c",
                        "for i in $(seq 50); do sleep 1000 & done; echo ready; exec sleep 1000",
                    ])
                    .stdout(Stdio::piped())
                    .spawn()
                    .unwrap();
                let out = c.take_stdout().unwrap();
                let mut line = String::new();
                tokio::io::BufReader::new(out)
                    .read_line(&mut line)
                    .await
                    .unwrap();
                assert_eq!(line, "ready\n");
                let t = Instant::now();
                c.close().await.unwrap();
                took += t.elapsed();
            }
            took
        }
    })
}

/// Starts `OWNERS` owners of the cgroup tier in a fresh state dir and SIGKILLs each once
/// its child runs; then (timed) recovers them, or kills their cgroups raw. Returns the
/// time of that part.
async fn recover_100(n: u64, raw: bool) -> Duration {
    let state = fresh_dir("state");
    let temp = fresh_dir("temp");
    let me = std::env::current_exe().unwrap();
    let mut cgroups = Vec::new();
    for _ in 0..OWNERS {
        let mut owner = Command::new(&me)
            .args(["owner".as_ref(), state.as_os_str(), temp.as_os_str()])
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(owner.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let cg = line.strip_prefix("ready ").expect("the owner is ready");
        cgroups.push(PathBuf::from(cg.trim_end()));
        owner.kill().unwrap();
        owner.wait().unwrap();
    }
    if n == 0 {
        // `count` mode, N = 0: the set-up only (`cleanup` recovers what it left).
        std::process::exit(0);
    }
    let t = Instant::now();
    if raw {
        for cg in &cgroups {
            kill_raw(cg);
        }
    } else {
        let report = Recovery::new()
            .state_dir(&state)
            .grace(Duration::from_secs(2))
            .run()
            .unwrap();
        let journals = report.journals.as_ref().unwrap();
        // More if an abandoned empty cgroup of an earlier process with one of the owners'
        // pids was there too (removed with them).
        assert!(journals.cgroups.len() >= OWNERS, "{report}");
    }
    let took = t.elapsed();
    exit_if_counting();
    // The raw side left the journals and roots (its cgroups are gone).
    let rest = Recovery::new().state_dir(&state).run().unwrap();
    assert!(rest.is_clean(), "{rest}");
    assert!(cgroups.iter().all(|c| !c.exists()));
    let _ = std::fs::remove_dir_all(&state);
    let _ = std::fs::remove_dir_all(&temp);
    took
}

/// `cgroup.kill`, a wait for `populated 0`, then the removal of its children and itself.
fn kill_raw(cg: &Path) {
    std::fs::write(cg.join("cgroup.kill"), "1").unwrap();
    while std::fs::read_to_string(cg.join("cgroup.events"))
        .unwrap()
        .contains("populated 1")
    {
        std::thread::sleep(Duration::from_micros(200));
    }
    for e in std::fs::read_dir(cg).unwrap().flatten() {
        if e.file_type().unwrap().is_dir() {
            std::fs::remove_dir(e.path()).unwrap();
        }
    }
    std::fs::remove_dir(cg).unwrap();
}

/// `owner STATE TEMP`: a supervisor of the cgroup tier journalling in STATE, with one
/// child that starts an escapee (`setsid`); prints `ready <its cgroup>`, then waits to
/// be killed.
fn owner(state: &str, temp: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let sup = Supervisor::builder()
            .state_dir(state)
            .temp_base(temp)
            .sweep_at_start(false)
            .reap_abandoned(false)
            .containment(Containment::Required)
            .start()
            .unwrap();
        let c = sup
            .command("sh")
            .args([
                "-c",
                "setsid sleep 1000 </dev/null >/dev/null & exec sleep 1000",
            ])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let cg = match sup.stats().containment {
            tokio_custodian::ContainmentTier::Cgroup { path } => path,
            other => panic!("{other}"),
        };
        let mut out = std::io::stdout();
        writeln!(out, "ready {}", cg.display()).unwrap();
        out.flush().unwrap();
        std::future::pending::<()>().await;
        drop(c);
    });
}

/// `cleanup DIR`: recovers every state dir a `count` run left under DIR.
fn cleanup(dir: &str) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let name = e.file_name();
        if name.to_string_lossy().contains("-state-") {
            let r = Recovery::new().state_dir(e.path()).run().unwrap();
            println!("{r}");
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("owner") => return owner(&args[1], &args[2]),
        Some("cleanup") => return cleanup(&args[1]),
        _ => {}
    }
    let rt = harness::runtime();
    harness::main(&rt, NAMES, |name| build(&rt, name));
}
