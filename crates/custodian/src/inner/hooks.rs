//! The list of shutdown hooks, kept with the supervisor's state so that a registration
//! and shutdown's taking of the list are decided under one lock. Running them is
//! shutdown's business (the `hook` module, layer 7).

use std::future::Future;
use std::panic::Location;
use std::pin::Pin;
use std::sync::PoisonError;
use std::time::Duration;

use crate::error::{Error, Operation, Result};
use crate::kind::CancelReason;

use super::Inner;

type HookFn = Box<dyn FnOnce(CancelReason) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// One registered shutdown hook.
pub(crate) struct Hook {
    pub(crate) name: Box<str>,
    pub(crate) budget: Duration,
    pub(crate) site: &'static Location<'static>,
    pub(crate) run: HookFn,
}

impl Inner {
    /// Adds a hook, unless shutdown has begun.
    pub(crate) fn add_hook<F, Fut>(
        &self,
        name: &str,
        budget: Duration,
        site: &'static Location<'static>,
        hook: F,
    ) -> Result<()>
    where
        F: FnOnce(CancelReason) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let mut hooks = self.hooks.lock().unwrap_or_else(PoisonError::into_inner);
        // Checked under the lock that shutdown takes the hooks with: a hook is either
        // run or refused.
        if self.is_shutting_down() {
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

    /// Takes every hook, in registration order (shutdown runs them).
    pub(crate) fn take_hooks(&self) -> Vec<Hook> {
        std::mem::take(&mut *self.hooks.lock().unwrap_or_else(PoisonError::into_inner))
    }
}
