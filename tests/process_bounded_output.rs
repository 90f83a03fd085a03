//! Output that cannot hang (issue 19): `Command::bounded_output` of
//! `sh -c 'setsid sleep N & sleep 0.2; echo hi'` — the escapee keeps stdout open (the
//! pause lets it leave the group before the shell exits: otherwise the reap's group
//! SIGKILL may still reach it) — returns within
//! the deadline plus the grace with `hi`, the cut flag and the holder named, in the
//! process-group tier; in the cgroup tier the holder dies at the reap, so nothing is cut.
//! A deadline that passes is reported, with the output written before it.

use std::time::{Duration, Instant};

use custodian_suite::{poll_until, serial, sleeps, zombie_children};
use tokio_custodian::{Containment, Supervisor};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn secs(n: u32) -> String {
    format!("{}", 300_000 + std::process::id() * 10 + n)
}

const GRACE: Duration = Duration::from_millis(300);

#[test]
fn an_escapee_holding_stdout_cuts_the_read_after_the_grace() {
    let _serial = serial();
    rt().block_on(async {
        let sup = Supervisor::builder().start().unwrap();
        let n = secs(1);
        let t = Instant::now();
        let out = sup
            .command("sh")
            .args(["-c", &format!("setsid sleep {n} & sleep 0.2; echo hi")])
            .deadline(Duration::from_millis(300))
            .grace(GRACE)
            .bounded_output()
            .await
            .unwrap();
        let took = t.elapsed();
        assert_eq!(out.stdout, b"hi\n");
        assert!(out.status.success() && !out.timed_out);
        assert!(out.cut, "not cut: {out:?}");
        let escapee = sleeps(&n);
        assert_eq!(escapee.len(), 1);
        assert!(out.holders.contains(&escapee[0]), "{out:?} vs {escapee:?}");
        // The deadline plus the grace, and some slack for a loaded machine.
        assert!(
            took < Duration::from_millis(300) + GRACE + Duration::from_secs(1),
            "{took:?}"
        );
        // Test clean-up of the escapee the report named (the group tier cannot reach it).
        let _ = std::process::Command::new("kill")
            .arg(escapee[0].to_string())
            .status();
        assert!(poll_until(Duration::from_secs(5), || sleeps(&n).is_empty()));
        assert!(sup.shutdown().await.is_clean());
    });
}

#[test]
fn in_the_cgroup_tier_the_holder_dies_and_nothing_is_cut() {
    let _serial = serial();
    rt().block_on(async {
        let sup = Supervisor::builder()
            .containment(Containment::Auto)
            .start()
            .unwrap();
        if !sup.stats().containment.is_cgroup() {
            eprintln!("skipped: no writable cgroup2");
            return;
        }
        let n = secs(2);
        let out = sup
            .command("sh")
            .args(["-c", &format!("setsid sleep {n} & sleep 0.2; echo hi")])
            .grace(GRACE)
            .bounded_output()
            .await
            .unwrap();
        assert_eq!((&out.stdout[..], out.cut), (&b"hi\n"[..], false), "{out:?}");
        assert!(sleeps(&n).is_empty());
        assert!(sup.shutdown().await.is_clean());
    });
}

#[test]
fn a_deadline_that_passes_keeps_what_was_written() {
    let _serial = serial();
    rt().block_on(async {
        let sup = Supervisor::builder().start().unwrap();
        let n = secs(3);
        let t = Instant::now();
        let out = sup
            .command("sh")
            .args(["-c", &format!("echo a; echo b >&2; exec sleep {n}")])
            .deadline(Duration::from_millis(300))
            .grace(GRACE)
            .bounded_output()
            .await
            .unwrap();
        assert!(out.timed_out && !out.status.success(), "{out:?}");
        assert_eq!(
            (&out.stdout[..], &out.stderr[..]),
            (&b"a\n"[..], &b"b\n"[..])
        );
        assert!(!out.cut, "{out:?}");
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        assert!(sleeps(&n).is_empty());
        assert_eq!(zombie_children(), Vec::<u32>::new());
        assert!(sup.shutdown().await.is_clean());
    });
}

/// The control: the unbounded `output()` waits for the escapee (what the bound fixes).
#[test]
fn without_the_bound_output_waits_for_the_escapee() {
    let _serial = serial();
    rt().block_on(async {
        let sup = Supervisor::builder().start().unwrap();
        let n = secs(4);
        let out = sup
            .command("sh")
            .args(["-c", &format!("setsid sleep {n} & sleep 0.2; echo hi")])
            .grace(GRACE)
            .output();
        let waited = tokio::time::timeout(Duration::from_secs(1), out).await;
        assert!(waited.is_err(), "output() returned: {waited:?}");
        for pid in sleeps(&n) {
            let _ = std::process::Command::new("kill")
                .arg(pid.to_string())
                .status();
        }
        assert!(poll_until(Duration::from_secs(5), || sleeps(&n).is_empty()));
        sup.shutdown().await;
    });
}
