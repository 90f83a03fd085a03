//! Looking into a running program from outside: `custodian inspect`.
//!
//! A supervisor started with `Builder::inspect(true)` answers read-only snapshots on a
//! unix socket (mode 0600, in its state dir or temp root; only the same uid or root is
//! answered): live resources with their scope, age, creation site and path, quota use
//! and waiters, child processes, clean-ups, its state and containment tier.
//!
//! This program holds two temp files, a child and a third temp file waiting for its
//! quota, then runs itself again as a client (another process): the client finds the
//! socket by pid (through the owner's fds), reads one snapshot, prints the table that
//! `custodian inspect PID` prints, and checks that each resource is named. From a shell,
//! `custodian inspect PID --json` or `--watch` does the same.
//!
//! Run it with `cargo run --example 11_inspect`.

use std::time::Duration;

use tokio_custodian::{Quota, ResourceKind, Supervisor};

fn client(pid: u32) {
    let sockets = tokio_custodian::inspect_sockets_of(pid).expect("the owner's fds");
    let seen = tokio_custodian::inspect(&sockets[0]).expect("a snapshot");
    println!("{seen}");
    let label = |l: &str| seen.live.iter().find(|r| r.label == l).map(|r| r.kind);
    assert_eq!(label("upload"), Some(ResourceKind::TempFile));
    assert_eq!(label("thumbnail"), Some(ResourceKind::TempFile));
    assert_eq!(label("encoder"), Some(ResourceKind::Child));
    assert_eq!(seen.stats.quotas[0].waiting, 1, "the waiting acquisition");
    assert!(seen.children.iter().any(|c| c.cmdline == "sleep 60"));
}

#[tokio::main]
async fn main() {
    if let Some(pid) = std::env::args().nth(1) {
        return client(pid.parse().unwrap());
    }
    let sup = Supervisor::builder()
        .inspect(true)
        .quota(Quota::live(ResourceKind::TempFile, 2))
        .start()
        .unwrap();
    sup.scope("request", async |s| {
        let _a = s.temp().label("upload").file().await?;
        let _b = s.temp().label("thumbnail").file().await?;
        let _c = s.command("sleep").arg("60").label("encoder").spawn()?;
        // Another owner (a task of its own, in the root scope) waits for the quota.
        let waiter = sup.clone();
        let waiting = tokio::spawn(async move { waiter.temp().label("preview").file().await });
        while sup.quotas()[0].waiting == 0 {
            assert!(!waiting.is_finished(), "the third acquisition did not wait");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let me = std::process::id().to_string();
        let exe = std::env::current_exe().unwrap();
        let status = tokio::process::Command::new(exe)
            .arg(me)
            .status()
            .await
            .unwrap();
        assert!(status.success(), "the client failed");
        waiting.abort();
        Ok::<_, tokio_custodian::Error>(())
    })
    .await
    .unwrap()
    .unwrap();
    assert!(sup.shutdown().await.is_clean());
}
