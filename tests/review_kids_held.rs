//! Review of the batched child release (`core/census.rs`): what held. A child that
//! stopped itself (`SIGSTOP`) keeps its SIGTERM pending and its stop's "exiting" token
//! for its whole grace; the others released with it must not wait for it beyond that,
//! a member of an exited leader's group must still get its grace, and everything must
//! be gone and reaped once the scope returns.

use std::time::{Duration, Instant};

use custodian_suite::{group_members, pid_exists, scratch_dir, serial_process_test};
use tokio_custodian::Supervisor;

#[test]
fn a_stopped_child_in_a_batch_delays_nobody_past_its_grace_and_all_are_reaped() {
    serial_process_test(async || {
        let scratch = scratch_dir("review-kids-held");
        let done = scratch.join("done");
        let sup = Supervisor::builder().start().unwrap();
        let t = Instant::now();
        let pgids = sup
            .scope("held", async |s| {
                let mut guards = Vec::new();
                for _ in 0..30 {
                    guards.push(s.command("sleep").arg("1000").spawn().unwrap());
                }
                // Stops itself: SIGTERM stays pending until the SIGKILL after 1 s.
                let stopped = s
                    .command("sh")
                    .arg("-c")
                    .arg("kill -STOP $$; exec sleep 1000")
                    .grace(Duration::from_secs(1))
                    .spawn()
                    .unwrap();
                let stopped_pid = stopped.process_group();
                // The leader dies at SIGTERM; its group's member takes 300 ms, then
                // says so (a SIGKILL would leave no file).
                let member = format!(
                    "trap 'sleep 0.3; echo ok > {}; exit 0' TERM; while :; do sleep 0.05; done",
                    done.display()
                );
                let forked = s
                    .command("sh")
                    .arg("-c")
                    .arg(format!("sh -c \"{member}\" & exec sleep 1000"))
                    .grace(Duration::from_secs(10))
                    .spawn()
                    .unwrap();
                let until = Instant::now() + Duration::from_secs(10);
                while group_members(&[forked.process_group()]).len() < 3
                    || std::fs::read_to_string(format!("/proc/{stopped_pid}/stat"))
                        .map_or(true, |st| !st.contains(") T "))
                {
                    assert!(Instant::now() < until, "the children never got ready");
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                guards.push(stopped);
                guards.push(forked);
                guards
                    .iter()
                    .map(|g| g.process_group())
                    .collect::<Vec<u32>>()
            })
            .await
            .unwrap();
        let took = t.elapsed();
        let said = std::fs::read_to_string(&done).unwrap_or_default();
        std::fs::remove_dir_all(&scratch).unwrap();
        assert_eq!(
            said, "ok\n",
            "the member was killed before its grace was over"
        );
        assert!(
            took >= Duration::from_millis(900),
            "the stopped child got no grace"
        );
        assert!(took < Duration::from_secs(6), "waited too long: {took:?}");
        assert!(
            group_members(&pgids).is_empty(),
            "a group outlived its stop"
        );
        assert!(
            pgids.iter().all(|&p| !pid_exists(p)),
            "a leader left unreaped"
        );
        sup.shutdown().await;
        pgids
    });
}
