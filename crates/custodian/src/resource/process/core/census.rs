//! Group scans of children released together, coalesced: one pass over `/proc` answers
//! every group asked about before the pass started.
//!
//! A child's stop waits for its whole group to be gone, and there is no event for that:
//! `/proc` is read (see `crate::sys::process::GroupScan`). A pass reads every process's
//! `stat`, so 200 children released by one scope's end made 200 passes over all the
//! machine's processes; now the asks that arrive while a pass runs wait for the next one,
//! which answers all of them.
//!
//! Invariants:
//! - an ask is answered by the pass that took it, which *started after* it was made
//!   (the same freshness as a pass of its own), through the ask's own channel: never by
//!   another pass, which was not asked about its group (a later pass's "no member"
//!   would be a wrong "the group is gone");
//! - at most one pass runs at a time, on the blocking pool; it loops while asks came in
//!   during it, and `scanning` is cleared under the lock by whoever ends the loop;
//! - a run dropped unfinished (its runtime shut down before it ran, or a pass panicked)
//!   drops its asks' channels and clears `scanning`, so no later ask waits for a pass
//!   that never comes; the askers ask again (another runtime's shutdown must not fail
//!   this runtime's stops: a failed scan ends a stop's grace);
//! - a pass does not read the `stat` of an asked group's leader that its pidfd proves a
//!   zombie of ours (exited, unreaped: `waitid(P_PIDFD, WNOWAIT)`) both before and after
//!   the pass: a zombie never counts as running, and a pid unreaped throughout the pass
//!   names that zombie throughout. A scope's end asks about every child at once, with
//!   every leader a zombie: most of a pass's reads were theirs. A leader reaped meanwhile
//!   (its pid may name another process by now) is read after the pass;
//! - a pass waits, up to [`HOLD`], while children signalled together are still on their
//!   way out ([`Exiting`]: from the release's SIGTERM to the stop's first ask): a scope's
//!   end then makes one pass for its children rather than one for the first few to exit
//!   and another for the rest. The wait is bounded, so a child that ignores SIGTERM
//!   delays others' passes by at most `HOLD`.
//!
//! Lock order: only `STATE`, never held across a pass or an await.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Condvar, LazyLock, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rustix::process::{WaitId, WaitIdOptions};
use tokio::io::unix::AsyncFd;
use tokio::sync::oneshot;

use crate::sys::process::running_members;

/// A group leader's pidfd, as its child's stop holds it.
pub(crate) type Pidfd = Arc<AsyncFd<OwnedFd>>;

/// An ask: its group, its leader's pidfd if it has one, and where its pass sends the
/// group's running members.
struct Ask {
    pgid: u32,
    leader: Option<Pidfd>,
    tx: oneshot::Sender<io::Result<Vec<u32>>>,
}

#[derive(Default)]
struct State {
    /// Asks made since the last pass started.
    asked: Vec<Ask>,
    /// Passes started so far.
    started: u64,
    scanning: bool,
    /// Live [`Exiting`] tokens: stops whose children were signalled and have not asked.
    exiting: usize,
}

static STATE: LazyLock<Mutex<State>> = LazyLock::new(Mutex::default);
/// Told when `exiting` drops to zero.
static EXITED: Condvar = Condvar::new();

/// The longest a pass waits for children still on their way out (see the invariants):
/// no longer than a stop's own first pause between two scans.
const HOLD: Duration = Duration::from_millis(5);

/// A child signalled to stop, whose stop has not asked about its group yet: a pass
/// waits (up to [`HOLD`]) for its ask. Made when the release sends SIGTERM, consumed by
/// the stop's first ask, or dropped if the stop ends (or escalates) without one.
#[derive(Debug)]
pub(crate) struct Exiting(bool);

impl Exiting {
    pub(crate) fn new() -> Self {
        lock().exiting += 1;
        Exiting(true)
    }

    /// Counts this one out, under the caller's lock.
    fn end(&mut self, st: &mut State) {
        if std::mem::replace(&mut self.0, false) {
            st.exiting -= 1;
            if st.exiting == 0 {
                EXITED.notify_all();
            }
        }
    }
}

impl Drop for Exiting {
    fn drop(&mut self) {
        if self.0 {
            self.end(&mut lock());
        }
    }
}

fn lock() -> MutexGuard<'static, State> {
    // A list of asks, a counter and a flag, consistent at every unlock.
    STATE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The running members of group `pgid` (empty: none runs), from a pass over `/proc`
/// that started after this call; `leader` is the pidfd of the group's leader (pid
/// `pgid`), if it has one. Must run inside a Tokio runtime.
///
/// Cancel safe: dropping the future only stops waiting (the pass's answer is dropped).
pub(crate) async fn running(
    pgid: u32,
    leader: Option<&Pidfd>,
    mut exiting: Option<Exiting>,
) -> io::Result<Vec<u32>> {
    // A run dropped unfinished (another runtime shut down under it, or a pass panicked)
    // drops the asks it held: ask again, with a run on this runtime if none is going. A
    // few times only: this runtime may be the one shutting down.
    for _ in 0..3 {
        if let Ok(answer) = ask(pgid, leader.cloned(), exiting.take()).await {
            return answer;
        }
    }
    Err(io::Error::new(
        io::ErrorKind::Interrupted,
        "the group scan was dropped unrun",
    ))
}

/// One ask: `Err` if the run that held it was dropped unfinished.
async fn ask(
    pgid: u32,
    leader: Option<Pidfd>,
    exiting: Option<Exiting>,
) -> Result<io::Result<Vec<u32>>, oneshot::error::RecvError> {
    let (tx, rx) = oneshot::channel();
    let start = {
        let mut st = lock();
        st.asked.push(Ask { pgid, leader, tx });
        // Under the same lock as the push: a pass woken by this never misses the ask.
        if let Some(mut e) = exiting {
            e.end(&mut st);
        }
        !std::mem::replace(&mut st.scanning, true)
    };
    if start {
        let run = PassRun { finished: false };
        drop(tokio::task::spawn_blocking(move || run.run()));
    }
    rx.await
}

/// The passes, run on the blocking pool until no ask is left.
struct PassRun {
    /// Set when the loop ends normally; otherwise `Drop` clears `scanning`.
    finished: bool,
}

impl PassRun {
    fn run(mut self) {
        loop {
            let asked = {
                let mut st = lock();
                let until = Instant::now().checked_add(HOLD);
                while st.exiting > 0
                    && let Some(left) = until.and_then(|u| u.checked_duration_since(Instant::now()))
                    && !left.is_zero()
                {
                    st = EXITED
                        .wait_timeout(st, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
                if st.asked.is_empty() {
                    st.scanning = false;
                    self.finished = true;
                    return;
                }
                st.started += 1;
                std::mem::take(&mut st.asked)
            };
            let pgids: Vec<u32> = asked.iter().map(|a| a.pgid).collect();
            #[cfg(test)]
            assert!(!pgids.contains(&tests::PANIC_PGID), "a pass panics (test)");
            let found = pass(&pgids, &asked);
            for Ask { pgid, tx, .. } in asked {
                let answer = match &found {
                    Ok(found) => Ok(found.get(&pgid).cloned().unwrap_or_default()),
                    Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
                };
                // The asker may have stopped waiting: nothing to tell.
                let _ = tx.send(answer);
            }
        }
    }
}

/// One pass for `pgids`, without reading the leaders of `asked` proven zombies before
/// and after it (see the invariants).
fn pass(pgids: &[u32], asked: &[Ask]) -> io::Result<std::collections::HashMap<u32, Vec<u32>>> {
    let mut zombies: Vec<(u32, &Pidfd)> = asked
        .iter()
        .filter_map(|a| Some((a.pgid, a.leader.as_ref()?)))
        .filter(|(_, fd)| is_zombie(fd))
        .collect();
    zombies.sort_unstable_by_key(|z| z.0);
    zombies.dedup_by_key(|z| z.0);
    let skip = |p: u32| {
        let zombie = zombies.binary_search_by_key(&p, |z| z.0).is_ok();
        #[cfg(test)]
        tests::READ.with_borrow_mut(|r| r.as_mut().map(|r| (!zombie).then(|| r.push(p))));
        zombie
    };
    let mut found = running_members(pgids, skip)?;
    for (pid, fd) in zombies {
        if is_zombie(fd) {
            continue;
        }
        // Reaped during the pass: whatever has its pid now is read like the rest.
        if let Some(st) = crate::sys::procfs::stat(pid).filter(|st| !st.zombie)
            && pgids.contains(&st.pgid)
        {
            found.entry(st.pgid).or_default().push(pid);
        }
    }
    Ok(found)
}

/// Whether `fd`'s process is a zombie of ours: exited, not reaped. `false` where the
/// kernel has no `waitid(P_PIDFD)` (Linux 5.3): its `stat` is read then.
fn is_zombie(fd: &Pidfd) -> bool {
    let opts = WaitIdOptions::EXITED | WaitIdOptions::NOWAIT | WaitIdOptions::NOHANG;
    matches!(
        rustix::process::waitid(WaitId::PidFd(fd.get_ref().as_fd()), opts),
        Ok(Some(_))
    )
}

impl Drop for PassRun {
    /// Dropped unrun (its runtime shut down) or by a panic in a pass (its own asks'
    /// channels are dropped by the unwind): drop the waiting asks (their askers ask
    /// again) and let the next ask start a run. Left set, `scanning` would make every
    /// later ask of the process wait forever, and every stop wait out its whole grace.
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let asked = {
            let mut st = lock();
            st.scanning = false;
            std::mem::take(&mut st.asked)
        };
        // Dropped outside the lock: each drop wakes an asker.
        drop(asked);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;

    fn sleeper() -> std::process::Child {
        std::process::Command::new("sleep")
            .arg("1000")
            .process_group(0)
            .spawn()
            .unwrap()
    }

    std::thread_local! {
        /// The pids a pass on this thread read, while `Some`.
        pub(super) static READ: std::cell::RefCell<Option<Vec<u32>>> =
            const { std::cell::RefCell::new(None) };
    }

    fn pidfd(c: &std::process::Child) -> Pidfd {
        let fd = crate::sys::process::pidfd_open(c.id()).unwrap().unwrap();
        #[allow(deprecated)] // An `OwnedFd` moved in: see `LiveChild::new`.
        Arc::new(AsyncFd::new(fd).unwrap())
    }

    /// Children killed, their groups too (while the leaders are unreaped, the ids are
    /// theirs), and reaped, even when the test fails.
    struct Kids(Vec<std::process::Child>);

    impl Drop for Kids {
        fn drop(&mut self) {
            for c in &mut self.0 {
                let _ = crate::sys::process::signal_group(c.id(), crate::sys::process::Sig::KILL);
                let _ = c.kill();
            }
            for c in &mut self.0 {
                let _ = c.wait();
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pass_skips_zombie_leaders_yet_finds_what_runs_in_their_groups() {
        let _serial = SERIAL.lock().await;
        // 0..10: killed, unreaped: zombie leaders alone in their groups; 10: a leader
        // that exits and leaves a running member in its group; 11: a running leader.
        let mut kids = Kids((0..10).map(|_| sleeper()).collect());
        kids.0.push(
            std::process::Command::new("sh")
                .args(["-c", "sleep 1000 & echo $!"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .process_group(0)
                .spawn()
                .unwrap(),
        );
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(kids.0[10].stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let member: u32 = line.trim().parse().unwrap();
        kids.0.push(sleeper());
        for c in &mut kids.0[..10] {
            c.kill().unwrap();
        }
        let asked: Vec<_> = kids
            .0
            .iter()
            .map(|c| Ask {
                pgid: c.id(),
                leader: Some(pidfd(c)),
                tx: oneshot::channel().0,
            })
            .collect();
        let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !asked[..11]
            .iter()
            .all(|a| is_zombie(a.leader.as_ref().unwrap()))
        {
            assert!(
                std::time::Instant::now() < until,
                "the leaders never exited"
            );
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let pgids: Vec<u32> = asked.iter().map(|a| a.pgid).collect();
        READ.set(Some(Vec::new()));
        let found = pass(&pgids, &asked);
        let read = READ.take().unwrap();
        // Before: every process was read, the zombie leaders too.
        for c in &kids.0[..11] {
            assert!(!read.contains(&c.id()), "zombie {} read", c.id());
        }
        let (forked, live) = (kids.0[10].id(), kids.0[11].id());
        assert!(read.contains(&live), "a running leader is read");
        let found = found.unwrap();
        assert_eq!(found.get(&forked), Some(&vec![member]), "{found:?}");
        assert_eq!(found.get(&live), Some(&vec![live]), "{found:?}");
        assert_eq!(found.len(), 2, "zombies alone count as gone: {found:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pass_waits_a_little_for_children_still_exiting() {
        let _serial = SERIAL.lock().await;
        let mut dead = Kids((0..2).map(|_| sleeper()).collect());
        for c in &mut dead.0 {
            c.kill().unwrap();
        }
        let (a, b) = (dead.0[0].id(), dead.0[1].id());
        // Two children signalled together; the first asks, the second is still exiting.
        let (first_exiting, second_exiting) = (Exiting::new(), Exiting::new());
        let t = std::time::Instant::now();
        let first = tokio::spawn(running(a, None, Some(first_exiting)));
        tokio::time::sleep(Duration::from_millis(1)).await;
        let early = first.is_finished();
        // Before: the first ask's pass ran at once, and the second needed one more.
        if t.elapsed() < HOLD {
            assert!(!early, "a pass did not wait for a child still exiting");
        }
        assert!(
            running(b, None, Some(second_exiting))
                .await
                .unwrap()
                .is_empty()
        );
        assert!(first.await.unwrap().unwrap().is_empty());
        // A child that never asks (it ignores SIGTERM) holds others' passes up only
        // `HOLD` each.
        let stubborn = Exiting::new();
        let t = std::time::Instant::now();
        assert!(running(a, None, None).await.unwrap().is_empty());
        assert!(t.elapsed() >= HOLD, "{:?}", t.elapsed());
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        drop(stubborn);
    }

    /// An ask for this group makes its pass panic.
    pub(super) const PANIC_PGID: u32 = u32::MAX;

    /// The census is process-wide: a pass made to panic fails every ask it took.
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pass_that_panics_fails_its_asks_and_the_next_ask_gets_a_pass() {
        let _serial = SERIAL.lock().await;
        // Before: `scanning` stayed set after the panic, and every ask (this one's
        // second try included) waited forever.
        let bounded = |pgid| {
            tokio::time::timeout(
                std::time::Duration::from_secs(10),
                running(pgid, None, None),
            )
        };
        let asked = bounded(PANIC_PGID)
            .await
            .expect("no pass runs after a panic");
        assert!(asked.is_err(), "the panicking pass answered: {asked:?}");
        let next = bounded(std::process::id())
            .await
            .expect("no pass runs after a panic");
        assert!(next.is_ok(), "{next:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_asks_share_passes_and_each_gets_its_own_group() {
        let _serial = SERIAL.lock().await;
        let mut live = sleeper();
        let mut dead: Vec<_> = (0..20).map(|_| sleeper()).collect();
        for c in &mut dead {
            c.kill().unwrap();
            c.wait().unwrap();
        }
        let before = lock().started;
        let asks = dead
            .iter()
            .map(|c| tokio::spawn(running(c.id(), None, None)))
            .collect::<Vec<_>>();
        let alive = running(live.id(), None, None).await.unwrap();
        for a in asks {
            assert!(
                a.await.unwrap().unwrap().is_empty(),
                "a dead group has no member"
            );
        }
        assert_eq!(alive, [live.id()], "the live group's leader is its member");
        // 21 asks; passes run one at a time and each takes every ask made before it.
        let passes = lock().started - before;
        assert!(passes < 21, "{passes} passes for 21 asks: not shared");
        live.kill().unwrap();
        live.wait().unwrap();
        assert!(
            running(live.id(), None, None).await.unwrap().is_empty(),
            "fresh after the kill"
        );
    }
}
