//! The child-subreaper opt-in seen from the handle: its counters, and the task that scans
//! for adopted processes on SIGCHLD and on a timer (see `crate::reaper`).

use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

use super::Supervisor;
use crate::reaper::Reaper;
use crate::stats::AdoptionStats;

/// How often the scan runs without a SIGCHLD: an orphan re-parented to us sends none
/// until it exits, and only a live one can be proven by its marker.
const SCAN_EVERY: Duration = Duration::from_millis(500);

impl Supervisor {
    /// What the child-subreaper opt-in ([`Builder::child_subreaper`](crate::Builder::child_subreaper))
    /// adopted, stopped and reaped so far; all zero without it.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// assert_eq!(sup.adopted(), tokio_custodian::AdoptionStats::default());
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn adopted(&self) -> AdoptionStats {
        self.inner
            .reaper
            .as_ref()
            .map(|r| r.stats())
            .unwrap_or_default()
    }
}

/// Starts the scan task: on each SIGCHLD (coalesced) and every [`SCAN_EVERY`], one scan
/// on the blocking pool, then the stop of strays (adopted after their managed child was
/// released). It holds the reaper weakly and ends with the supervisor (`done`).
pub(super) fn drive(
    reaper: &Arc<Reaper>,
    handle: &Handle,
    done: CancellationToken,
) -> crate::Result<()> {
    let weak = Arc::downgrade(reaper);
    // Without a signal driver (a runtime built without I/O), the timer alone.
    let mut sigchld = {
        let _rt = handle.enter();
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child()).ok()
    };
    drop(handle.spawn(async move {
        let mut tick = tokio::time::interval(SCAN_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let child_exited = async {
                match &mut sigchld {
                    Some(s) => drop(s.recv().await),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = done.cancelled() => return,
                () = child_exited => {}
                _ = tick.tick() => {}
            }
            let Some(r) = weak.upgrade() else { return };
            let scanned = tokio::task::spawn_blocking(move || {
                for (seq, grace) in r.scan()? {
                    r.stop(Some(seq), grace, None)?;
                }
                std::io::Result::Ok(())
            })
            .await;
            match scanned {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "child subreaper: scan failed"),
                Err(_) => return, // the runtime is shutting down
            }
        }
    }));
    Ok(())
}
