//! Shutdown hooks: async closures run by shutdown in reverse registration order, each
//! as its own task within its own budget. A hook that overruns is aborted and reported;
//! a forced shutdown skips the hooks that have not started and aborts the running one.

use std::fmt;
use std::future::Future;
use std::panic::Location;
use std::pin::Pin;
use std::sync::PoisonError;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Operation, Result};
use crate::inner::Inner;
use crate::kind::CancelReason;
use crate::leak::{Site, duration_ms};
use crate::supervisor::Supervisor;

type HookFn = Box<dyn FnOnce(CancelReason) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

pub(crate) struct Hook {
    name: Box<str>,
    budget: Duration,
    site: &'static Location<'static>,
    run: HookFn,
}

/// How a shutdown hook ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum HookOutcome {
    /// It finished within its budget.
    Completed,
    /// It was still running when its budget ran out, and was aborted.
    Overran,
    /// It panicked (the message, if it was a string).
    Panicked(String),
    /// A forced shutdown aborted it while it ran.
    Cut,
    /// A forced shutdown skipped it: it never ran.
    Skipped,
}

/// One shutdown hook's run, as listed in the
/// [`ShutdownReport`](crate::ShutdownReport).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HookReport {
    /// The name it was registered with.
    pub name: String,
    /// Its budget.
    #[serde(with = "duration_ms")]
    pub budget: Duration,
    /// How long it ran.
    #[serde(with = "duration_ms")]
    pub took: Duration,
    /// How it ended.
    pub outcome: HookOutcome,
    /// Where it was registered.
    pub site: Site,
}

impl fmt::Display for HookOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HookOutcome::Completed => f.write_str("completed"),
            HookOutcome::Overran => f.write_str("OVERRAN, aborted"),
            HookOutcome::Panicked(m) => write!(f, "PANICKED: {m}"),
            HookOutcome::Cut => f.write_str("cut by forced shutdown"),
            HookOutcome::Skipped => f.write_str("skipped (forced)"),
        }
    }
}

impl Supervisor {
    /// Registers a shutdown hook: `hook(reason)` runs during
    /// [`shutdown`](Self::shutdown), after every scope has been cancelled and before
    /// shutdown waits for them, as its own task. Hooks run one after another, the last
    /// registered first; each may take up to `budget`, after which it is aborted and
    /// reported as [`HookOutcome::Overran`]. A forced shutdown skips hooks.
    ///
    /// The hook should not hold a [`Supervisor`] clone (that would keep the supervisor
    /// alive until shutdown runs); it receives the reason instead.
    ///
    /// # Errors
    ///
    /// [`Error::ShuttingDown`] if shutdown has begun.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> custodian::Result<()> {
    /// use std::time::Duration;
    /// use custodian::{CancelReason, HookOutcome};
    /// let sup = custodian::Supervisor::builder().start()?;
    /// sup.on_shutdown("flush", Duration::from_secs(1), |reason| async move {
    ///     assert_eq!(reason, CancelReason::Shutdown);
    /// })?;
    /// let report = sup.shutdown().await;
    /// assert_eq!(report.hooks[0].outcome, HookOutcome::Completed);
    /// # Ok(()) }
    /// ```
    #[track_caller]
    pub fn on_shutdown<F, Fut>(&self, name: &str, budget: Duration, hook: F) -> Result<()>
    where
        F: FnOnce(CancelReason) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let site = Location::caller();
        let mut hooks = self
            .inner
            .hooks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Checked under the lock that shutdown takes the hooks with: a hook is either
        // run or refused.
        if self.inner.is_shutting_down() {
            return Err(Error::ShuttingDown {
                op: Operation::RegisterHook,
            });
        }
        hooks.push(Hook {
            name: name.into(),
            budget,
            site,
            run: Box::new(move |reason| Box::pin(hook(reason))),
        });
        Ok(())
    }
}

/// Runs every hook, last registered first. Called by shutdown after `begin_shutdown`.
pub(crate) async fn run_hooks(inner: &Inner) -> Vec<HookReport> {
    let hooks = std::mem::take(&mut *inner.hooks.lock().unwrap_or_else(PoisonError::into_inner));
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

pub(crate) fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic".to_owned())
}
