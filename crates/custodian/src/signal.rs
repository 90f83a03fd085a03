//! Opt-in SIGINT/SIGTERM handling: the first signal starts a graceful shutdown, the
//! second forces it. The handler never exits the process: the program observes
//! [`Supervisor::cancelled`] and awaits [`Supervisor::wait_for_shutdown`].

use std::sync::{Arc, Weak};

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Operation, Result};
use crate::inner::Inner;
use crate::supervisor::Supervisor;

impl Supervisor {
    /// Listens for SIGINT and SIGTERM: the first one starts [`shutdown`](Self::shutdown)
    /// as a task, the second one [`force`](Self::force)s it. Nothing is installed unless
    /// this is called (or [`Builder::handle_signals`](crate::Builder::handle_signals) is
    /// set).
    ///
    /// Once Tokio listens for a signal, its default action (terminating the process) is
    /// gone for the life of the process: the program must end itself, typically after
    /// [`wait_for_shutdown`](Self::wait_for_shutdown) returns. This holds *after*
    /// shutdown too: the listener ends with the shutdown, but Tokio keeps swallowing
    /// SIGINT and SIGTERM, so a program that goes on running after its supervisor has
    /// shut down no longer dies of them. It must watch for them itself (for example
    /// with its own `tokio::signal` listener) or exit.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] with [`Operation::InstallSignalHandlers`] if a handler cannot be
    /// registered (for example when the runtime has no I/O driver).
    ///
    /// ```no_run
    /// # #[tokio::main] async fn main() -> custodian::Result<()> {
    /// let sup = custodian::Supervisor::builder().start()?;
    /// sup.install_signal_handlers()?;
    /// sup.cancelled().await; // a server would stop accepting here
    /// let report = sup.wait_for_shutdown().await;
    /// println!("{report}");
    /// # Ok(()) }
    /// ```
    pub fn install_signal_handlers(&self) -> Result<()> {
        let _enter = self.inner.handle.enter();
        let listen = |kind: SignalKind| {
            signal(kind).map_err(|e| Error::io(Operation::InstallSignalHandlers, "signal", e))
        };
        let int = listen(SignalKind::interrupt())?;
        let term = listen(SignalKind::terminate())?;
        let done = self.inner.done.clone();
        self.inner
            .handle
            .spawn(listen_loop(Arc::downgrade(&self.inner), int, term, done));
        Ok(())
    }
}

/// Holds only a weak reference between signals, so that it never keeps the supervisor
/// alive; ends when shutdown (or emergency clean-up) is done.
async fn listen_loop(
    inner: Weak<Inner>,
    mut int: Signal,
    mut term: Signal,
    done: CancellationToken,
) {
    let mut seen = 0u32;
    loop {
        let name = tokio::select! {
            () = done.cancelled() => return,
            s = int.recv() => s.map(|()| "SIGINT"),
            s = term.recv() => s.map(|()| "SIGTERM"),
        };
        let (Some(name), Some(inner)) = (name, inner.upgrade()) else {
            return;
        };
        seen += 1;
        if seen == 1 {
            tracing::info!(signal = name, "signal: starting graceful shutdown");
            let sup = Supervisor { inner };
            drop(tokio::spawn(async move { sup.shutdown().await }));
        } else {
            tracing::warn!(signal = name, "second signal: forcing shutdown");
            inner.force();
        }
    }
}
