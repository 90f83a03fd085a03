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
//!
//! `release_of_50_descendants` times `close()` of a child that started 50 `sleep`s in
//! its group (all answer SIGTERM): the process-group tier stops them with the group's
//! TERM and scans `/proc` until the group is empty; the cgroup tier does the same and
//! then reads `populated`, kills what is left and removes the cgroup.

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

async fn release_50(sup: &Supervisor) -> Duration {
    let child = sup
        .command("sh")
        .args(["-c", "for i in $(seq 50); do sleep 1000 & done; wait"])
        .spawn()
        .unwrap();
    let pgid = child.process_group().to_string();
    // All 50 started (in the group): counted in /proc.
    loop {
        let n = std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| {
                std::fs::read_to_string(e.path().join("stat")).is_ok_and(|st| {
                    st.rfind(')').is_some_and(|i| {
                        st[i + 2..].split_whitespace().nth(2) == Some(pgid.as_str())
                    })
                })
            })
            .count();
        if n >= 51 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let t = Instant::now();
    child.close().await.unwrap();
    t.elapsed()
}

#[test]
#[ignore = "a measurement: run with --ignored --nocapture"]
fn release_of_50_descendants() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let group = Supervisor::builder().start().unwrap();
        let cgroup = Supervisor::builder()
            .containment(Containment::Auto)
            .start()
            .unwrap();
        if !cgroup.stats().containment.is_cgroup() {
            eprintln!("skipped: no writable cgroup2");
            return;
        }
        let (mut g, mut c) = (Vec::new(), Vec::new());
        for _ in 0..15 {
            g.push(release_50(&group).await);
            c.push(release_50(&cgroup).await);
        }
        let (g, c) = (median(g), median(c));
        println!(
            "close() of a child with 50 descendants, median of 15: process group {g:?}, \
             cgroup {c:?}, ratio {:.2}",
            c.as_secs_f64() / g.as_secs_f64()
        );
        assert!(group.shutdown().await.is_clean());
        assert!(cgroup.shutdown().await.is_clean());
    });
}
