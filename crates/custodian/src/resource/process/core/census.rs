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
//! - an ask is answered by a pass that *started after* it was made (the same freshness as
//!   a pass of its own): a pass takes the pgids asked so far when it starts, and an ask
//!   waits for the first pass numbered after the last one started when it asked;
//! - at most one pass runs at a time, on the blocking pool; it loops while asks came in
//!   during it, and `scanning` is cleared under the lock by whoever ends the loop;
//! - a pass dropped unrun (its runtime shut down) publishes an error for its asks and
//!   clears `scanning`, so no later ask waits for a pass that never comes.
//!
//! Lock order: only `STATE`, never held across a pass or an await.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError};

use tokio::sync::watch;

use crate::sys::process::running_members;

/// The running members of each group a pass was asked about that has any.
type Members = Arc<HashMap<u32, Vec<u32>>>;

/// The outcome of one pass: its number, and what it found (or its error, as kind and
/// message: `io::Error` is not `Clone`).
#[derive(Clone, Default)]
struct Pass {
    number: u64,
    found: Option<Result<Members, (io::ErrorKind, String)>>,
}

#[derive(Default)]
struct State {
    /// Groups asked about since the last pass started.
    asked: Vec<u32>,
    /// Passes started so far.
    started: u64,
    scanning: bool,
}

static STATE: LazyLock<Mutex<State>> = LazyLock::new(Mutex::default);
static DONE: LazyLock<watch::Sender<Pass>> = LazyLock::new(|| watch::Sender::new(Pass::default()));

fn lock() -> MutexGuard<'static, State> {
    // A list of ids and two counters, consistent at every unlock.
    STATE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The running members of group `pgid` (empty: none runs), from a pass over `/proc`
/// that started after this call. Must run inside a Tokio runtime.
///
/// Cancel safe: dropping the future only stops waiting.
pub(crate) async fn running(pgid: u32) -> io::Result<Vec<u32>> {
    let mut done = DONE.subscribe();
    let (want, start) = {
        let mut st = lock();
        st.asked.push(pgid);
        let start = !st.scanning;
        st.scanning = true;
        (st.started + 1, start)
    };
    if start {
        let run = PassRun { ran: false };
        drop(tokio::task::spawn_blocking(move || run.run()));
    }
    let pass = done
        .wait_for(|p| p.number >= want)
        .await
        .map_err(|_| io::Error::other("the group scan has stopped"))?
        .clone();
    match pass.found {
        Some(Ok(found)) => Ok(found.get(&pgid).cloned().unwrap_or_default()),
        Some(Err((kind, msg))) => Err(io::Error::new(kind, msg)),
        None => Err(io::Error::other("no group scan ran")),
    }
}

/// The passes, run on the blocking pool until no ask is left.
struct PassRun {
    ran: bool,
}

impl PassRun {
    fn run(mut self) {
        self.ran = true;
        loop {
            let (number, asked) = {
                let mut st = lock();
                if st.asked.is_empty() {
                    st.scanning = false;
                    return;
                }
                st.started += 1;
                (st.started, std::mem::take(&mut st.asked))
            };
            let found = running_members(&asked)
                .map(Arc::new)
                .map_err(|e| (e.kind(), e.to_string()));
            DONE.send_replace(Pass {
                number,
                found: Some(found),
            });
        }
    }
}

impl Drop for PassRun {
    /// Dropped unrun (its runtime shut down): fail its asks, let the next ask start one.
    fn drop(&mut self) {
        if self.ran {
            return;
        }
        let number = {
            let mut st = lock();
            st.scanning = false;
            st.asked.clear();
            st.started += 1;
            st.started
        };
        DONE.send_replace(Pass {
            number,
            found: Some(Err((
                io::ErrorKind::Interrupted,
                "the group scan was dropped unrun".into(),
            ))),
        });
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
