//! The stop's order and timing, against a mock OS on paused time (each signal and reap is
//! recorded with the paused clock's reading), and one real-kernel test of the Linux 5.3
//! fallback. The real-process behaviour is also covered by `tests/process_*.rs`.

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rustix::io::Errno;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{ChildCore, KILL_WAIT, ProcessOs};
use crate::sys::process::Sig;

/// The mock child's pid (and group id); never signalled for real.
const PID: u32 = 4242;

/// One OS call that changes something, as the mock recorded it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Call {
    Group(Sig),
    Process(Sig),
    Reap,
}

use Call::{Group, Process, Reap};

const TERM: Sig = Sig::TERM;
const KILL: Sig = Sig::KILL;

/// A child and its group, as the mock kernel sees them.
struct World {
    start: Instant,
    calls: Vec<(Duration, Call)>,
    /// The leader's exit signal once it has exited.
    exited: Option<Sig>,
    reaped: bool,
    /// The leader exits on SIGTERM (it always does on SIGKILL).
    leader_obeys_term: bool,
    /// Other running members of the group; they exit on SIGKILL.
    members: usize,
    members_obey_term: bool,
    /// Members survive SIGKILL too (`EPERM`, stuck in the kernel).
    members_survive_kill: bool,
    /// Every group signal fails with this.
    group_fails: Option<Errno>,
    /// Without an exit event the exit is polled, as without a pidfd.
    has_event: bool,
    /// Fires when the leader exits.
    event: Arc<watch::Sender<bool>>,
}

/// A mock [`ProcessOs`]: a shared [`World`], cloned into the core and kept by the test.
#[derive(Clone)]
struct Mock(Arc<Mutex<World>>);

impl Mock {
    fn new() -> Self {
        Mock(Arc::new(Mutex::new(World {
            start: Instant::now(),
            calls: Vec::new(),
            exited: None,
            reaped: false,
            leader_obeys_term: false,
            members: 0,
            members_obey_term: false,
            members_survive_kill: false,
            group_fails: None,
            has_event: true,
            event: Arc::new(watch::Sender::new(false)),
        })))
    }

    fn with(self, f: impl FnOnce(&mut World)) -> Self {
        f(&mut self.world());
        self
    }

    fn world(&self) -> MutexGuard<'_, World> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn core(&self, cut: &CancellationToken) -> Arc<ChildCore<Mock>> {
        ChildCore::with_os(self.clone(), (), PID, cut.clone())
    }

    fn calls(&self) -> Vec<(Duration, Call)> {
        self.world().calls.clone()
    }

    /// The leader exits (from outside: a crash, its own end).
    fn exit_leader(&self, sig: Sig) {
        self.world().exit(sig);
    }

    fn members_exit(&self) {
        self.world().members = 0;
    }
}

impl World {
    fn record(&mut self, call: Call) {
        let at = Instant::now().saturating_duration_since(self.start);
        self.calls.push((at, call));
    }

    fn exit(&mut self, sig: Sig) {
        if self.exited.is_none() {
            self.exited = Some(sig);
            self.event.send_replace(true);
        }
    }

    fn deliver_to_leader(&mut self, sig: Sig) {
        if sig == KILL || self.leader_obeys_term {
            self.exit(sig);
        }
    }
}

impl ProcessOs for Mock {
    type Child = ();
    type ExitEvent = watch::Sender<bool>;
    type Scan = ();

    fn has_exited(&self, (): &(), _pid: u32) -> io::Result<bool> {
        let w = self.world();
        if w.reaped {
            return Err(Errno::CHILD.into());
        }
        Ok(w.exited.is_some())
    }

    fn signal_process(&self, (): &(), _pid: u32, sig: Sig) -> io::Result<()> {
        let mut w = self.world();
        w.record(Process(sig));
        w.deliver_to_leader(sig);
        Ok(())
    }

    fn signal_group(&self, _pid: u32, sig: Sig) -> io::Result<()> {
        let mut w = self.world();
        w.record(Group(sig));
        if let Some(e) = w.group_fails {
            return Err(e.into());
        }
        w.deliver_to_leader(sig);
        if (sig == KILL && !w.members_survive_kill) || w.members_obey_term {
            w.members = 0;
        }
        Ok(())
    }

    fn try_reap(&self, (): &mut ()) -> io::Result<Option<ExitStatus>> {
        let mut w = self.world();
        w.record(Reap);
        if w.reaped {
            return Err(Errno::CHILD.into());
        }
        let Some(sig) = w.exited else {
            return Ok(None);
        };
        w.reaped = true;
        Ok(Some(ExitStatus::from_raw(sig.as_raw())))
    }

    fn exit_event(&self, (): &()) -> Option<Arc<watch::Sender<bool>>> {
        let w = self.world();
        w.has_event.then(|| w.event.clone())
    }

    async fn exit_event_fired(
        &self,
        event: &watch::Sender<bool>,
        exited: impl FnOnce() -> io::Result<bool> + Send,
    ) -> io::Result<bool> {
        let mut rx = event.subscribe();
        // The sender lives as long as `event`: this only ends when it fires.
        rx.wait_for(|&fired| fired)
            .await
            .map_err(io::Error::other)?;
        exited()
    }

    fn group_scan(&self, _pid: u32) {}

    async fn group_running(&self, (): ()) -> io::Result<((), io::Result<bool>)> {
        Ok(((), Ok(self.world().members > 0)))
    }

    async fn survivors(&self, _pid: u32) -> io::Result<Vec<crate::sys::escalate::Left>> {
        let n = self.world().members;
        Ok((0..n)
            .map(|i| crate::sys::escalate::Left {
                pid: 1000 + u32::try_from(i).unwrap(),
                start: 0,
                group: 0,
                why: crate::sys::escalate::LeftWhy::Running,
            })
            .collect())
    }
}

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
