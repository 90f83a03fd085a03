//! Shutdown hooks: async closures run by shutdown in reverse registration order, each
//! as its own task within its own budget. A hook that overruns is aborted and reported;
//! a forced shutdown skips the hooks that have not started and aborts the running one.

use std::time::Instant;

use crate::error::panic_message;
use crate::inner::Inner;
use crate::kind::CancelReason;
use crate::report::{HookOutcome, HookReport};

/// Runs every hook, last registered first. Called by shutdown after `begin_shutdown`.
pub(crate) async fn run_hooks(inner: &Inner) -> Vec<HookReport> {
    let hooks = inner.take_hooks();
    let mut out = Vec::with_capacity(hooks.len());
    for hook in hooks.into_iter().rev() {
        let start = Instant::now();
        let outcome = if inner.cut.is_cancelled() {
            HookOutcome::Skipped
        } else {
            let reason = inner.root_scope.reason().unwrap_or(CancelReason::Shutdown);
            let span = tracing::info_span!("shutdown_hook", name = &*hook.name);
            let mut task = inner
                .handle
                .spawn(tracing::Instrument::instrument((hook.run)(reason), span));
            let outcome = tokio::select! {
                r = &mut task => match r {
                    Ok(()) => HookOutcome::Completed,
                    Err(e) if e.is_panic() => HookOutcome::Panicked(panic_message(e.into_panic())),
                    Err(_) => HookOutcome::Cut,
                },
                () = tokio::time::sleep(hook.budget) => HookOutcome::Overran,
                () = inner.cut.cancelled() => HookOutcome::Cut,
            };
            task.abort();
            outcome
        };
        if !matches!(outcome, HookOutcome::Completed) {
            tracing::warn!(hook = &*hook.name, budget = ?hook.budget, %outcome, "shutdown hook did not complete");
        }
        out.push(HookReport {
            name: hook.name.into(),
            budget: hook.budget,
            took: start.elapsed(),
            outcome,
            site: hook.site.into(),
        });
    }
    out
}
