//! The stop's order and timing, against a mock OS on paused time (each signal and reap is
//! recorded with the paused clock's reading), and one real-kernel test of the Linux 5.3
//! fallback. The real-process behaviour is also covered by `tests/process_*.rs`. The mock
//! OS is in `tests/mock.rs`.

mod mock;

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;

use rustix::io::Errno;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{ChildCore, KILL_WAIT};
use mock::Call::{self, Group, Process, Reap};
use mock::{KILL, Mock, TERM};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn killed_by(status: ExitStatus) -> Option<i32> {
    status.signal()
}

/// The end of every stop: one group sweep, then the reap, then nothing.
fn assert_sweep_then_reap_last(calls: &[(Duration, Call)]) {
    let n = calls.len();
    assert!(n >= 2, "{calls:?}");
    assert_eq!(calls[n - 2].1, Group(KILL), "the sweep: {calls:?}");
    assert_eq!(calls[n - 1].1, Reap, "the reap comes last: {calls:?}");
    assert_eq!(
        calls[n - 2].0,
        calls[n - 1].0,
        "the sweep is right before the reap"
    );
}

/// After the reap nothing reaches the OS any more: no signal (the ids may be reused),
/// no second reap; every call answers from the recorded status.
fn assert_quiet_after_reap(mock: &Mock, core: &ChildCore<Mock>) {
    let before = mock.calls();
    let status = core.status().expect("reaped");
    core.signal(KILL).unwrap();
    core.signal(TERM).unwrap();
    assert!(core.try_exited().unwrap());
    assert_eq!(core.reap().unwrap(), status);
    core.kill_now().unwrap();
    assert_eq!(mock.calls(), before, "a call after the reap");
}

#[tokio::test(start_paused = true)]
async fn term_first_then_kill_exactly_at_the_end_of_the_grace() {
    let mock = Mock::new().with(|w| w.members = 1);
    let cut = CancellationToken::new();
    let core = mock.core(&cut);
    let status = core.stop(Duration::from_secs(10), false).await.unwrap();
    assert_eq!(killed_by(status), Some(9));
    let grace = Duration::from_secs(10);
    assert_eq!(
        mock.calls(),
        [
            (ms(0), Group(TERM)),
            (ms(0), Process(TERM)),
            (grace, Group(KILL)),
            (grace, Process(KILL)),
            (grace, Group(KILL)),
            (grace, Reap),
        ]
    );
    assert_quiet_after_reap(&mock, &core);
}

#[tokio::test(start_paused = true)]
async fn a_leader_that_exits_on_term_gets_no_kill_only_the_final_sweep() {
    let mock = Mock::new().with(|w| w.leader_obeys_term = true);
    let cut = CancellationToken::new();
    let core = mock.core(&cut);
    let status = core.stop(Duration::from_secs(10), false).await.unwrap();
    assert_eq!(killed_by(status), Some(15));
    assert_eq!(
        mock.calls(),
        [
            (ms(0), Group(TERM)),
            (ms(0), Process(TERM)),
            (ms(0), Group(KILL)),
            (ms(0), Reap),
        ]
    );
    assert_quiet_after_reap(&mock, &core);
}

#[tokio::test(start_paused = true)]
async fn a_leader_that_exits_during_the_grace_is_reaped_then_without_kill() {
    let mock = Mock::new();
    let cut = CancellationToken::new();
    let core = mock.core(&cut);
    let exits = mock.clone();
    tokio::spawn(async move {
        tokio::time::sleep(ms(2500)).await;
        exits.exit_leader(TERM);
    });
    core.stop(Duration::from_secs(10), false).await.unwrap();
    assert_eq!(
        mock.calls(),
        [
            (ms(0), Group(TERM)),
            (ms(0), Process(TERM)),
            (ms(2500), Group(KILL)),
            (ms(2500), Reap),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn without_an_exit_event_the_exit_is_polled_within_ten_milliseconds() {
    let mock = Mock::new().with(|w| w.has_event = false);
    let cut = CancellationToken::new();
    let core = mock.core(&cut);
    let exits = mock.clone();
    tokio::spawn(async move {
        tokio::time::sleep(ms(2503)).await;
        exits.exit_leader(TERM);
    });
    core.stop(Duration::from_secs(10), false).await.unwrap();
    let calls = mock.calls();
    assert_sweep_then_reap_last(&calls);
    let reaped = calls.last().unwrap().0;
    assert!(reaped >= ms(2503) && reaped <= ms(2513), "{calls:?}");
    assert!(!calls.contains(&(reaped, Process(KILL))), "{calls:?}");
}

#[tokio::test(start_paused = true)]
async fn a_cut_mid_grace_sends_kill_at_once() {
    let mock = Mock::new();
    let cut = CancellationToken::new();
    let core = mock.core(&cut);
    let cutter = cut.clone();
    tokio::spawn(async move {
        tokio::time::sleep(ms(1200)).await;
        cutter.cancel();
    });
    core.stop(Duration::from_secs(3600), false).await.unwrap();
    assert_eq!(
        mock.calls(),
        [
            (ms(0), Group(TERM)),
            (ms(0), Process(TERM)),
            (ms(1200), Group(KILL)),
            (ms(1200), Process(KILL)),
            (ms(1200), Group(KILL)),
            (ms(1200), Reap),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_cut_before_the_stop_leaves_no_grace_at_all() {
    let mock = Mock::new();
    let cut = CancellationToken::new();
    cut.cancel();
    let core = mock.core(&cut);
    core.stop(Duration::from_secs(10), false).await.unwrap();
    assert_eq!(
        mock.calls(),
        [
            (ms(0), Group(TERM)),
            (ms(0), Process(TERM)),
            (ms(0), Group(KILL)),
            (ms(0), Process(KILL)),
            (ms(0), Group(KILL)),
            (ms(0), Reap),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_leader_that_exited_first_has_its_group_termed_waited_for_then_killed() {
    let mock = Mock::new().with(|w| w.members = 2);
    mock.exit_leader(TERM);
    let cut = CancellationToken::new();
    let core = mock.core(&cut);
    let status = core.stop(Duration::from_secs(1), false).await.unwrap();
    // The leader's own exit, not the group's SIGKILL.
    assert_eq!(killed_by(status), Some(15));
    // Only group signals: the exited leader is not signalled by pid.
    assert_eq!(
        mock.calls(),
        [
            (ms(0), Group(TERM)),
            (ms(1000), Group(KILL)),
            (ms(1000), Group(KILL)),
            (ms(1000), Reap),
        ]
    );
    assert_quiet_after_reap(&mock, &core);
}

#[tokio::test(start_paused = true)]
async fn a_group_that_empties_within_the_grace_is_reaped_then_without_kill() {
    let mock = Mock::new().with(|w| w.members = 1);
    mock.exit_leader(TERM);
    let cut = CancellationToken::new();
    let core = mock.core(&cut);
    let leaves = mock.clone();
    tokio::spawn(async move {
        tokio::time::sleep(ms(300)).await;
        leaves.members_exit();
    });
    core.stop(Duration::from_secs(10), false).await.unwrap();
    let calls = mock.calls();
    assert_eq!(calls[0], (ms(0), Group(TERM)));
    assert_eq!(calls.len(), 3, "no SIGKILL but the sweep: {calls:?}");
    assert_sweep_then_reap_last(&calls);
    // Seen at the next scan: they are at most 50 ms apart.
    let reaped = calls[2].0;
    assert!(reaped >= ms(300) && reaped <= ms(350), "{calls:?}");
}

#[tokio::test(start_paused = true)]
async fn a_failing_group_signal_still_ends_in_a_reap() {
    let mock = Mock::new().with(|w| w.group_fails = Some(Errno::PERM));
    let cut = CancellationToken::new();
    let core = mock.core(&cut);
    let err = core.stop(ms(500), false).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
    // Reaped all the same: no zombie, and the error is reported.
    assert_eq!(core.status().and_then(killed_by), Some(9));
    assert_eq!(
        mock.calls(),
        [
            (ms(0), Group(TERM)),
            (ms(0), Process(TERM)),
            (ms(500), Group(KILL)),
            (ms(500), Process(KILL)),
            (ms(500), Group(KILL)),
            (ms(500), Reap),
        ]
    );
    assert_quiet_after_reap(&mock, &core);
}

#[tokio::test(start_paused = true)]
async fn a_term_already_sent_is_not_sent_again() {
    let mock = Mock::new();
    let cut = CancellationToken::new();
    let core = mock.core(&cut);
    core.stop(ms(700), true).await.unwrap();
    let calls: Vec<_> = mock.calls();
    assert!(
        !calls
            .iter()
            .any(|&(_, c)| c == Group(TERM) || c == Process(TERM))
    );
    assert_eq!(calls[0], (ms(700), Group(KILL)));
    assert_sweep_then_reap_last(&calls);
}

#[tokio::test(start_paused = true)]
async fn a_grace_past_the_clock_never_ends_by_itself() {
    let mock = Mock::new();
    let cut = CancellationToken::new();
    let core = mock.core(&cut);
    let exits = mock.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(100 * 365 * 86_400)).await;
        exits.exit_leader(TERM);
    });
    core.stop(Duration::MAX, false).await.unwrap();
    let calls = mock.calls();
    assert_eq!(calls.len(), 4, "no SIGKILL but the sweep: {calls:?}");
    assert_sweep_then_reap_last(&calls);
}

#[test]
fn kill_now_kills_sweeps_and_reaps_without_a_runtime() {
    // `tokio::time::Instant` outside a runtime reads the real clock.
    let mock = Mock::new();
    let core = mock.core(&CancellationToken::new());
    core.kill_now().unwrap();
    let calls: Vec<_> = mock.calls().into_iter().map(|(_, c)| c).collect();
    assert_eq!(calls, [Group(KILL), Process(KILL), Group(KILL), Reap]);
    assert_quiet_after_reap(&mock, &core);
}

/// Linux 5.3 has pidfds but `waitid(P_PIDFD)` fails there with `EINVAL`: every wait,
/// stop and reap must still work, through `P_PID`.
#[test]
fn children_are_waited_for_stopped_and_reaped_without_waitid_p_pidfd() {
    use crate::sys::process::SIMULATE_LINUX_5_3;
    // The runtime runs every task on this thread, where the simulation is on.
    SIMULATE_LINUX_5_3.set(true);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let sup = crate::Supervisor::builder().start().unwrap();
        let mut quick = sup.command("sh").args(["-c", "exit 3"]).spawn().unwrap();
        assert_eq!(quick.wait().await.unwrap().code(), Some(3));
        drop(quick);
        let mut slow = sup.command("sleep").arg("1000").spawn().unwrap();
        assert_eq!(slow.try_wait().unwrap(), None);
        assert_eq!(slow.close().await.unwrap().signal(), Some(15));
        let dropped = sup.command("sleep").arg("1000").spawn().unwrap();
        drop(dropped);
        let report = sup.shutdown().await;
        assert!(report.is_clean(), "{report}");
        assert!(report.cleanups_finished);
    });
    SIMULATE_LINUX_5_3.set(false);
}

#[tokio::test(start_paused = true)]
async fn members_that_survive_sigkill_are_named_and_the_leader_is_still_reaped() {
    // Before: the stop returned the leader's status, and the survivors went unreported.
    let mock = Mock::new().with(|w| {
        w.members = 2;
        w.members_survive_kill = true;
    });
    let cut = CancellationToken::new();
    let core = mock.core(&cut);
    let t0 = Instant::now();
    let err = core.stop(Duration::from_secs(10), false).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    let msg = err.to_string();
    assert!(
        msg.starts_with("2 processes of the child survived SIGKILL")
            && msg.contains("pid 1000: still running after SIGKILL")
            && msg.contains("pid 1001"),
        "{msg}"
    );
    // The grace, then the SIGKILL round's wait: bounded.
    assert_eq!(t0.elapsed(), Duration::from_secs(10) + KILL_WAIT);
    assert_eq!(killed_by(core.status().expect("reaped")), Some(9));
    assert_quiet_after_reap(&mock, &core);
}
