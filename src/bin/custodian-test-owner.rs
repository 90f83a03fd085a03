//! A small owner process for custodian's shutdown tests: `custodian-test-owner SCENARIO`.
//!
//! It starts a supervisor, acquires temp files and dirs as the scenario says, prints
//! `ROOT <temp root>`, `PID <pid>` and `READY`, then waits (for a signal, or does what the
//! scenario says). Lines the tests read: `HOOK_STARTED`, `HOOK_REASON <r>`,
//! `SCOPE_REASON <r>`, `REPORT <json>`, `BEFORE <n>` and `LEFT <n>` (whether the temp
//! root exists before and after). The `children-*` and `audio-term` scenarios (in
//! `custodian-test-owner/children.rs`) hold managed child processes too.

use std::io::Write;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio_custodian::{PanicCleanup, Supervisor};

#[path = "custodian-test-owner/children.rs"]
mod children;

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn main() {
    let scenario = std::env::args().nth(1).unwrap_or_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    match scenario.as_str() {
        "drop-runtime" => drop_runtime(rt),
        "panic-unwind" => rt.block_on(panic_unwind()),
        "panic-hook" => rt.block_on(panic_hook()),
        "children-term" => rt.block_on(children::signalled(false)),
        "children-term-twice" => rt.block_on(children::signalled(true)),
        "children-panic-hook" => rt.block_on(children::panic_hook()),
        "children-drop-runtime" => children::drop_runtime(rt),
        "children-drop-exit" => rt.block_on(children::drop_then_exit()),
        "audio-term" => rt.block_on(children::audio()),
        other => rt.block_on(signalled(other)),
    }
}

async fn start(grace: Duration) -> Supervisor {
    let sup = Supervisor::builder()
        .grace(grace)
        .handle_signals(true)
        .start()
        .expect("supervisor");
    say(&format!("ROOT {}", sup.temp_root().display()));
    say(&format!("PID {}", std::process::id()));
    sup
}

/// Some temp files and a dir with content in the root scope, held until shutdown.
async fn acquire(sup: &Supervisor) -> Vec<Box<dyn Send>> {
    let mut f = sup.temp_file().await.expect("temp file");
    f.write_all(b"payload").await.expect("write");
    let d = sup.temp_dir().await.expect("temp dir");
    std::fs::create_dir_all(d.path().join("a/b")).expect("mkdir");
    std::fs::write(d.path().join("a/b/c"), b"x").expect("write");
    vec![Box::new(f), Box::new(d)]
}

/// Waits for SIGTERM/SIGINT; prints the report as JSON.
async fn signalled(scenario: &str) {
    let grace = match scenario {
        "stubborn" => Duration::from_millis(500),
        "term-twice" => Duration::from_secs(30),
        _ => Duration::from_secs(3),
    };
    let sup = start(grace).await;
    let held = acquire(&sup).await;
    let s = sup.clone();
    let (entered, worker_in) = tokio::sync::oneshot::channel();
    let worker = tokio::spawn(async move {
        s.scope("worker", async |s| -> tokio_custodian::Result<()> {
            let _t = s.temp_file().await?;
            let task_scope = s.clone();
            let _task = s.spawn(async move { task_scope.cancelled().await })?;
            let _ = entered.send(());
            s.cancelled().await;
            let r = s
                .cancel_reason()
                .map(|r| format!("{r:?}"))
                .unwrap_or_default();
            say(&format!("SCOPE_REASON {r}"));
            Ok(())
        })
        .await
    });
    sup.on_shutdown("flush", Duration::from_secs(1), |reason| async move {
        say(&format!("HOOK_REASON {reason:?}"));
    })
    .expect("hook");
    if matches!(scenario, "slow-hook" | "term-twice") {
        let budget = if scenario == "slow-hook" { 200 } else { 30_000 };
        sup.on_shutdown("slow", Duration::from_millis(budget), |_| async {
            say("HOOK_STARTED");
            tokio::time::sleep(Duration::from_secs(60)).await;
        })
        .expect("hook");
    }
    if matches!(scenario, "stubborn" | "term-twice") {
        let s = sup.clone();
        let (entered, stubborn_in) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            s.root()
                .scope_with_grace("stubborn", Duration::from_secs(60), async |s| {
                    let t = s.temp_file().await.expect("temp file");
                    std::mem::forget(t); // only a sweep can release it
                    let _ = entered.send(());
                    std::future::pending::<()>().await // ignores cancellation
                })
                .await
        });
        stubborn_in.await.expect("stubborn scope entered");
    }
    // Signalled only once every scope is running, so that each one sees the shutdown.
    worker_in.await.expect("worker scope entered");
    say("READY");
    let report = sup.wait_for_shutdown().await;
    drop(held);
    let _ = worker.await;
    eprintln!("{report}");
    say(&format!(
        "REPORT {}",
        serde_json::to_string(&report).expect("json")
    ));
}

/// Resources, a stuck scope, a forgotten guard; then the runtime is dropped without
/// `shutdown()`, then the last supervisor handle.
fn drop_runtime(rt: tokio::runtime::Runtime) {
    let sup = rt.block_on(async {
        let sup = Supervisor::builder().start().expect("supervisor");
        say(&format!("ROOT {}", sup.temp_root().display()));
        std::mem::forget(acquire(&sup).await);
        let s = sup.clone();
        tokio::spawn(async move {
            s.scope("stuck", async |s| {
                let _d = s.temp_dir().await;
                std::future::pending::<()>().await
            })
            .await
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        sup
    });
    let root = sup.temp_root().to_path_buf();
    say(&format!("BEFORE {}", usize::from(root.is_dir())));
    say("READY");
    drop(rt);
    drop(sup);
    say(&format!("LEFT {}", usize::from(root.exists())));
}

/// A panic unwinds out of `block_on` while the supervisor holds resources: its `Drop`
/// cleans up. The `OnAbort` hook is installed and must stay quiet in an unwinding build.
async fn panic_unwind() {
    let sup = Supervisor::builder().start().expect("supervisor");
    sup.install_panic_hook(PanicCleanup::OnAbort);
    say(&format!("ROOT {}", sup.temp_root().display()));
    let _held = acquire(&sup).await;
    say(&format!("BEFORE {}", usize::from(sup.temp_root().is_dir())));
    say("READY");
    panic!("owner panics while holding temp files");
}

/// A panic on another thread runs the hook, which cleans up and chains the previous
/// hook; then the process aborts (no destructor runs), as with `panic = "abort"`.
async fn panic_hook() {
    let sup = Supervisor::builder().start().expect("supervisor");
    std::panic::set_hook(Box::new(|_| eprintln!("PREVIOUS_HOOK_RAN")));
    sup.install_panic_hook(PanicCleanup::OnAnyPanic);
    sup.install_panic_hook(PanicCleanup::OnAnyPanic); // twice: harmless
    say(&format!("ROOT {}", sup.temp_root().display()));
    let _held = acquire(&sup).await;
    say(&format!("BEFORE {}", usize::from(sup.temp_root().is_dir())));
    say("READY");
    let _ = std::thread::spawn(|| panic!("fatal in worker")).join();
    std::process::abort();
}
