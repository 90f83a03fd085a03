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
//! - a pass dropped unrun (its runtime shut down) drops its asks' channels (they fail)
//!   and clears `scanning`, so no later ask waits for a pass that never comes.
//!
//! Lock order: only `STATE`, never held across a pass or an await.

use std::io;
use std::sync::{LazyLock, Mutex, MutexGuard, PoisonError};

use tokio::sync::oneshot;

use crate::sys::process::running_members;

/// An ask: its group, and where its pass sends the group's running members.
type Ask = (u32, oneshot::Sender<io::Result<Vec<u32>>>);

#[derive(Default)]
struct State {
    /// Asks made since the last pass started.
    asked: Vec<Ask>,
    /// Passes started so far.
    started: u64,
    scanning: bool,
}

static STATE: LazyLock<Mutex<State>> = LazyLock::new(Mutex::default);

fn lock() -> MutexGuard<'static, State> {
    // A list of asks, a counter and a flag, consistent at every unlock.
    STATE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The running members of group `pgid` (empty: none runs), from a pass over `/proc`
/// that started after this call. Must run inside a Tokio runtime.
///
/// Cancel safe: dropping the future only stops waiting (the pass's answer is dropped).
pub(crate) async fn running(pgid: u32) -> io::Result<Vec<u32>> {
    let (tx, rx) = oneshot::channel();
    let start = {
        let mut st = lock();
        st.asked.push((pgid, tx));
        !std::mem::replace(&mut st.scanning, true)
    };
    if start {
        let run = PassRun { ran: false };
        drop(tokio::task::spawn_blocking(move || run.run()));
    }
    rx.await.map_err(|_| {
        io::Error::new(
            io::ErrorKind::Interrupted,
            "the group scan was dropped unrun",
        )
    })?
}

/// The passes, run on the blocking pool until no ask is left.
struct PassRun {
    ran: bool,
}

impl PassRun {
    fn run(mut self) {
        self.ran = true;
        loop {
            let asked = {
                let mut st = lock();
                if st.asked.is_empty() {
                    st.scanning = false;
                    return;
                }
                st.started += 1;
                std::mem::take(&mut st.asked)
            };
            let pgids: Vec<u32> = asked.iter().map(|(pgid, _)| *pgid).collect();
            let found = running_members(&pgids);
            for (pgid, tx) in asked {
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

impl Drop for PassRun {
    /// Dropped unrun (its runtime shut down): fail its asks, let the next ask start one.
    fn drop(&mut self) {
        if self.ran {
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_asks_share_passes_and_each_gets_its_own_group() {
        let mut live = sleeper();
        let mut dead: Vec<_> = (0..20).map(|_| sleeper()).collect();
        for c in &mut dead {
            c.kill().unwrap();
            c.wait().unwrap();
        }
        let before = lock().started;
        let asks = dead
            .iter()
            .map(|c| tokio::spawn(running(c.id())))
            .collect::<Vec<_>>();
        let alive = running(live.id()).await.unwrap();
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
            running(live.id()).await.unwrap().is_empty(),
            "fresh after the kill"
        );
    }
}
