//! Review: the watcher is forked from a multi-threaded owner, and its sweep must not take
//! a lock that another thread of the owner held at the fork.
//!
//! `tracing`'s no-op default dispatcher in the watcher does not cover the *registration*
//! of a callsite the owner never hit (the sweep's "owner is dead" event, on a fresh state
//! dir): with more than one dispatcher in the process, `tracing-core` registers a new
//! callsite under a read lock of its global dispatcher list, which another thread holds
//! for writing whenever it makes a `Dispatch` (`tracing::subscriber::with_default`, a
//! per-thread or per-request subscriber). Forked at such a moment, the watcher blocked
//! for ever on its first event, *holding the journal's `flock`*: the SIGKILLed owner's
//! tree ran on, and every later `custodian sweep` or start sweep skipped the journal as
//! locked for as long as the stuck watcher lived.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tokio_custodian::Supervisor;

const OWNER: &str = "CUSTODIAN_REVIEW_WATCHER_TRACING_OWNER";

fn stat_field(pid: u32, n: usize) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    rest.split_whitespace().nth(n - 3).map(str::to_owned)
}

fn running(pid: u32) -> bool {
    stat_field(pid, 3).is_some_and(|s| s != "Z")
}

fn poll(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while !f() {
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

fn kill(pid: u32) {
    let p = rustix::process::Pid::from_raw(pid as i32).unwrap();
    let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
}

/// A subscriber that takes its time to register a callsite (as one that builds a filter
/// per callsite does): `tracing-core` calls it with its dispatcher list write-locked.
struct Slow;

impl tracing::Subscriber for Slow {
    fn register_callsite(
        &self,
        _: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        std::thread::sleep(Duration::from_micros(200));
        tracing::subscriber::Interest::never()
    }
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        false
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, _: &tracing::Event<'_>) {}
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// The owner: a global subscriber, and threads that make scoped dispatchers without
/// pause (each holds `tracing-core`'s dispatcher list for writing while it registers),
/// then a supervisor with a watcher and one child.
#[test]
#[ignore = "run by a_watcher_forked_while_a_dispatch_is_made_still_recovers_its_owner"]
fn owner() {
    let Some(state) = std::env::var_os(OWNER) else {
        return;
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::sink)
        .with_max_level(tracing::Level::INFO)
        .init();
    // Until the fork only: afterwards, the owner's own first events (each registers its
    // callsite under the list's read lock) must not starve behind two writers that
    // never let go (std's `RwLock` prefers writers; an owner hung there once, after
    // its fork).
    let forker = rustix::thread::gettid();
    let forked = move || {
        std::fs::read_to_string(format!(
            "/proc/self/task/{}/children",
            forker.as_raw_nonzero()
        ))
        .is_ok_and(|c| !c.trim().is_empty())
    };
    for _ in 0..2 {
        std::thread::spawn(move || {
            // `/proc` is read every 8 dispatchers: the lock stays held most of the time.
            while !forked() {
                for _ in 0..8 {
                    tracing::subscriber::with_default(Slow, || {});
                }
            }
        });
    }
    std::thread::sleep(Duration::from_millis(20));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let sup = Supervisor::builder()
            .state_dir(PathBuf::from(state))
            .watcher(true)
            .start()
            .unwrap();
        let child = sup.command("sleep").arg("300.00071").spawn().unwrap();
        println!("WATCHER {}", sup.stats().watcher.pid.unwrap());
        println!("CHILD {}", child.id().unwrap());
        std::future::pending::<()>().await;
    });
}

#[test]
fn a_watcher_forked_while_a_dispatch_is_made_still_recovers_its_owner() {
    for round in 0..8 {
        let state = std::env::temp_dir().join(format!(
            "review-watcher-tracing-{round}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&state);
        let mut owner = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "owner",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(OWNER, &state)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Read on a thread: an owner that hangs must fail the test, not block it.
        let (tx, rx) = std::sync::mpsc::channel();
        let stdout = owner.stdout.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let (mut watcher, mut child) = (None, None);
        while watcher.is_none() || child.is_none() {
            let Ok(l) = rx.recv_timeout(Duration::from_secs(60)) else {
                owner.kill().unwrap();
                owner.wait().unwrap();
                panic!("round {round}: the owner never said its watcher and child");
            };
            if let Some(i) = l.find("WATCHER ") {
                watcher = Some(l[i + 8..].trim().parse::<u32>().unwrap());
            } else if let Some(i) = l.find("CHILD ") {
                child = Some(l[i + 6..].trim().parse::<u32>().unwrap());
            }
        }
        let (watcher, child) = (watcher.unwrap(), child.unwrap());
        owner.kill().unwrap();
        owner.wait().unwrap();
        let gone = poll(Duration::from_secs(10), || {
            !running(child) && std::fs::read_dir(&state).unwrap().count() == 0
        });
        let stuck = running(watcher);
        kill(child);
        kill(watcher);
        let _ = std::fs::remove_dir_all(&state);
        assert!(
            gone,
            "round {round}: the child {child} still runs (or the journal is left), the \
             watcher {watcher} running: {stuck}"
        );
    }
}
