//! Many children released by one scope's end share one group scan, which skips their
//! exited leaders (`resource/process/core/census.rs`): what still runs in a group whose
//! leader exited must still be found, and get its SIGTERM and its grace, not a bare
//! SIGKILL.

use std::time::{Duration, Instant};

use custodian_suite::{group_members, pid_exists, scratch_dir, serial_process_test};
use tokio_custodian::Supervisor;

#[test]
fn a_batch_release_gives_the_members_of_exited_leaders_their_grace() {
    serial_process_test(async || {
        let scratch = scratch_dir("batch-release");
        let done = scratch.join("done");
        let sup = Supervisor::builder().start().unwrap();
        let t = Instant::now();
        let (pgids, keep) = sup
            .scope("batch", async |s| {
                let mut guards = Vec::new();
                for _ in 0..40 {
                    guards.push(s.command("sleep").arg("1000").spawn().unwrap());
                }
                // The leader dies at SIGTERM; the member in its group takes 300 ms to
                // finish, then says so (SIGKILL would leave no file).
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
                let pgid = forked.process_group();
                let until = Instant::now() + Duration::from_secs(10);
                while group_members(&[pgid]).len() < 3 {
                    assert!(Instant::now() < until, "the member never started");
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                guards.push(forked);
                let pgids: Vec<u32> = guards.iter().map(|g| g.process_group()).collect();
                (pgids, guards) // released by the scope's end
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
            took < Duration::from_secs(9),
            "waited out the grace: {took:?}"
        );
        assert!(
            group_members(&pgids).is_empty(),
            "a group outlived its stop"
        );
        assert!(
            pgids.iter().all(|&p| !pid_exists(p)),
            "a leader left unreaped"
        );
        drop(keep);
        sup.shutdown().await;
        pgids
    });
}
