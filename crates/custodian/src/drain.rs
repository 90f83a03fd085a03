//! Shutdown's drain phase (layer 7, run by `shutdown` before it cancels anything): the
//! root scope refuses new work while the top-level scopes already running finish on
//! their own, for at most the drain's budget.
//!
//! - Nothing is cancelled during the drain: scopes keep acquiring, nested scopes start,
//!   children spawn. Only the root scope refuses (`Error::Draining`, counted).
//! - It ends at the first of: every top-level scope ended, the budget, `cut` (the
//!   shutdown's grace deadline, which the drain is part of, or a forced request).
//! - Without a budget (or forced before it began) it does not run and reports nothing;
//!   `Supervisor::draining` then fires with `begin_shutdown`.

use std::time::{Duration, Instant};

use crate::inner::Inner;
use crate::report::DrainReport;

/// Runs the drain, if there is one, until `until` at the latest (its budget from now,
/// saturated by shutdown, which calls it before phase 1).
pub(crate) async fn run(inner: &Inner, until: tokio::time::Instant) -> Option<DrainReport> {
    let budget = inner.config.drain;
    if budget == Duration::ZERO || inner.is_forced() {
        return None;
    }
    let start = Instant::now();
    inner.drain.begin();
    // Counted after the flag is up: no new top-level scope gets past it after this
    // (a racing one was counted before its check, so it is counted here). From this
    // count on, each scope it includes counts itself finished as it ends.
    let scopes_at_start = inner.drain.count_top();
    tracing::info!(
        scopes = scopes_at_start,
        budget = ?budget,
        "shutdown: draining (new top-level scopes refused)"
    );
    // `cut` first: the scopes it cuts off end at once, and may all have ended by the
    // time this task wakes up; that is not a drain that completed.
    let ended = tokio::select! {
        biased;
        () = inner.cut.cancelled() => false,
        () = inner.drain.top_scopes_ended() => true,
        () = tokio::time::sleep_until(until) => false,
    };
    // Counted by the scopes themselves as they end: once `cut` fires, the scopes it
    // cuts off end at once, on other threads, and must not count as finished.
    let scopes_finished = inner.drain.end();
    // A scope counted just as the drain began may have been refused right after: it was
    // not running (it noted that before it left the count the wait waited for).
    let scopes_at_start = scopes_at_start.saturating_sub(inner.drain.refused_at_start());
    let report = DrainReport {
        budget,
        took: start.elapsed(),
        scopes_at_start,
        scopes_finished,
        ran_out: !ended,
        refused: inner.drain.refused_count(),
    };
    if report.ran_out {
        tracing::warn!(
            left = inner.drain.top_len(),
            took = ?report.took,
            "shutdown: drain ran out (budget, grace or forced); cancelling the scopes left"
        );
    }
    Some(report)
}
