//! What the cgroup containment tier costs a spawn (issue 19): spawn + wait + close of
//! `true` through `ManagedChild`, the cgroup tier against the process-group tier, in
//! interleaved rounds of one process, medians printed. A measurement, not a check (the
//! machine is shared): run it with
//!
//! ```text
//! cargo test --release -p custodian-suite --test containment_cost -- --ignored --nocapture
//! ```
//!
//! Then again with a 512 MiB heap touched, since the tier's `pre_exec` makes std fork
//! instead of `posix_spawn`, and a fork costs in proportion to the parent's memory.

use std::time::{Duration, Instant};

use tokio_custodian::{Containment, Supervisor};

const ROUNDS: usize = 300;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

async fn once(sup: &Supervisor) -> Duration {
    let t = Instant::now();
    let mut child = sup.command("true").spawn().unwrap();
    assert!(child.wait().await.unwrap().success());
    child.close().await.unwrap();
    t.elapsed()
}

async fn rounds(label: &str) {
    let group = Supervisor::builder().start().unwrap();
    let cgroup = Supervisor::builder()
        .containment(Containment::Auto)
        .start()
        .unwrap();
    if !cgroup.stats().containment.is_cgroup() {
        eprintln!("skipped: no writable cgroup2");
        return;
    }
    // Warm up both.
    for _ in 0..20 {
        once(&group).await;
        once(&cgroup).await;
    }
    let (mut g, mut c) = (Vec::new(), Vec::new());
    for i in 0..ROUNDS {
        // Alternate which goes first, so that neither always follows the other.
        if i % 2 == 0 {
            g.push(once(&group).await);
            c.push(once(&cgroup).await);
        } else {
            c.push(once(&cgroup).await);
            g.push(once(&group).await);
        }
    }
    let (g, c) = (median(g), median(c));
    println!(
        "{label}: spawn+wait+close of `true`, median of {ROUNDS}: process group {g:?}, \
         cgroup {c:?}, ratio {:.2}",
        c.as_secs_f64() / g.as_secs_f64()
    );
    assert!(group.shutdown().await.is_clean());
    assert!(cgroup.shutdown().await.is_clean());
}

#[test]
#[ignore = "a measurement: run with --ignored --nocapture"]
fn spawn_cost_of_the_cgroup_tier() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(rounds("small heap"));
    // A service's memory: 512 MiB, touched.
    let heap = vec![1u8; 512 << 20];
    rt.block_on(rounds("512 MiB heap"));
    assert_eq!(heap[heap.len() - 1], 1);
}
