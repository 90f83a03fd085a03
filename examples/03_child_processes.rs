//! Managed child processes: run external tools under a supervisor so that none of them,
//! nor anything they fork, outlives its owner.
//!
//! Four workers run in one scope: an encoder whose output is collected, a stubborn one
//! that ignores SIGTERM (killed after its grace period), one that forks a background
//! grandchild, and one whose guard is forgotten. The scope's end stops and reaps all of
//! them; a deadline stops a hung tool; a missing program is a typed error. Afterwards the
//! program checks that no process of any of their groups is left and prints the stats.
//!
//! Run it with `cargo run --example 03_child_processes`.

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio_custodian::Supervisor;

/// Whether any running (not zombie) process is in group `pgid`.
fn group_alive(pgid: u32) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return false;
    };
    dir.filter_map(|e| e.ok()).any(|e| {
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
            return false;
        };
        let f: Vec<&str> = rest.split_whitespace().take(3).collect();
        f.len() == 3 && f[0] != "Z" && f[2] == pgid.to_string()
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sup = Supervisor::builder()
        .grace(Duration::from_secs(5))
        .start()?;

    let t = Instant::now();
    let groups = sup
        .scope("workers", async |s| -> tokio_custodian::Result<[u32; 3]> {
            // Collected output: runs to completion, then is released.
            let out = s
                .command("sh")
                .args(["-c", "echo encoded 48000 frames"])
                .label("encoder")
                .output()
                .await?;
            print!("encoder said: {}", String::from_utf8_lossy(&out.stdout));

            let stubborn = s
                .command("sh")
                .args(["-c", "trap '' TERM; sleep 1000"])
                .label("stubborn")
                .grace(Duration::from_millis(200))
                .spawn()?;
            let forker = s
                .command("sh")
                .args(["-c", "sleep 1000 & sleep 1000"])
                .label("forker")
                .stdout(Stdio::null())
                .spawn()?;
            let forgotten = s.command("sleep").arg("1000").label("forgotten").spawn()?;
            let groups = [&stubborn, &forker, &forgotten].map(|c| c.process_group());
            println!("live in scope: {}", s.live_count());
            std::mem::forget(forgotten); // still stopped at scope end, reported as a leak
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok(groups)
        })
        .await??;
    println!("scope ended after {:.0?}; every child reaped", t.elapsed());
    for g in groups {
        assert!(!group_alive(g), "group {g} still has processes");
    }

    // A hung tool with a deadline.
    let err = sup
        .command("sleep")
        .arg("1000")
        .deadline(Duration::from_millis(100))
        .status()
        .await
        .unwrap_err();
    println!("deadline: {err}");

    // A program that does not exist.
    let err = sup.command("no-such-transcoder").spawn().unwrap_err();
    println!("spawn error: {err}");

    for leak in sup.leaked() {
        println!("leak: {leak}");
    }
    let report = sup.shutdown().await;
    println!("\n{}", report.stats);
    Ok(())
}
