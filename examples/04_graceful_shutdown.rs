//! Graceful shutdown on SIGTERM: a small "server" under a supervisor that listens for
//! signals.
//!
//! A worker scope spools requests into temp files until it is cancelled; a scoped task
//! flushes a counter on its way out; a shutdown hook says goodbye within its budget.
//! After a moment the program sends itself SIGTERM (as a service manager would), which
//! starts the supervisor's graceful shutdown: the root is cancelled, the hook runs, the
//! worker and the task wind down, whatever is still registered is released, and the temp
//! root is removed. A second SIGTERM would force it. The program then prints the report
//! as a table and as JSON, and checks that nothing is left.
//!
//! Run it with `cargo run --example 04_graceful_shutdown`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio_custodian::Supervisor;

#[tokio::main]
async fn main() -> tokio_custodian::Result<()> {
    let sup = Supervisor::builder()
        .grace(Duration::from_secs(2))
        .handle_signals(true) // opt-in: SIGINT/SIGTERM start (then force) shutdown
        .start()?;
    let root_dir = sup.temp_root().to_path_buf();

    sup.on_shutdown(
        "say goodbye",
        Duration::from_millis(500),
        |reason| async move {
            println!("hook: shutting down because: {reason}");
        },
    )?;

    // A worker: one temp file per "request", until shutdown cancels the scope.
    let served = Arc::new(AtomicU64::new(0));
    let counter = served.clone();
    let s = sup.clone();
    let worker = tokio::spawn(async move {
        s.scope("worker", async move |s| -> tokio_custodian::Result<()> {
            // A scoped task: tracked by shutdown, cancelled with the scope.
            let task_scope = s.clone();
            let c = counter.clone();
            s.spawn(async move {
                task_scope.cancelled().await;
                println!("task: flushing {} requests", c.load(Ordering::Relaxed));
            })?;
            loop {
                tokio::select! {
                    () = s.cancelled() => {
                        println!("worker: cancelled ({:?}), finishing", s.cancel_reason());
                        return Ok(());
                    }
                    () = tokio::time::sleep(Duration::from_millis(20)) => {
                        // Shutdown may begin between the tick and the acquisition: it
                        // refuses new work (`ShuttingDown`), which means "stop", not failure.
                        let mut spool = match s.temp_file().await {
                            Ok(f) => f,
                            Err(e) if e.is_cancellation() => {
                                println!("worker: refused by shutdown ({e}), finishing");
                                return Ok(());
                            }
                            Err(e) => return Err(e),
                        };
                        spool.write_all(b"request body").await.expect("write");
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        })
        .await
    });

    // Held until shutdown: the report lists it with its creation site.
    let _cache = sup.temp_dir().await?;

    // Play the service manager: SIGTERM to ourselves after a moment.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let me = rustix::process::getpid();
    rustix::process::kill_process(me, rustix::process::Signal::TERM).expect("send SIGTERM");

    // A server would pass this future to its graceful-shutdown hook.
    sup.cancelled().await;
    let report = sup.wait_for_shutdown().await;
    worker.await.expect("worker task")??;

    println!("\n{report}");
    println!("as JSON: {}", serde_json::to_string(&report).expect("json"));
    println!("\nserved {} requests", served.load(Ordering::Relaxed));
    assert!(!root_dir.exists(), "the temp root is gone");
    assert!(!report.forced && report.scopes_finished);
    Ok(())
}
