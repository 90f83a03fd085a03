//! Opt-in SIGINT/SIGTERM handling: the first signal starts a graceful shutdown, the
//! second forces it. The handler never exits the process: the program observes
//! [`Supervisor::cancelled`](crate::Supervisor::cancelled) and awaits [`Supervisor::wait_for_shutdown`](crate::Supervisor::wait_for_shutdown).

use std::sync::{Arc, Weak};

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Operation, Result};
use crate::inner::Inner;
use crate::report::ShutdownCause;
use crate::shutdown::shutdown_once_by;

/// Installs the listeners (see `Supervisor::install_signal_handlers`).
pub(crate) fn install(inner: &Arc<Inner>) -> Result<()> {
    let _enter = inner.handle.enter();
    let listen = |kind: SignalKind| {
        signal(kind).map_err(|e| Error::io(Operation::InstallSignalHandlers, "signal", e))
    };
    let int = listen(SignalKind::interrupt())?;
    let term = listen(SignalKind::terminate())?;
    let done = inner.done.clone();
    inner
        .handle
        .spawn(listen_loop(Arc::downgrade(inner), int, term, done));
    Ok(())
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
            // The report names the signal that began it (unless a call came first).
            let cause = ShutdownCause::Signal(name.to_owned());
            drop(tokio::spawn(async move {
                shutdown_once_by(&inner, cause).await
            }));
        } else {
            tracing::warn!(signal = name, "second signal: forcing shutdown");
            inner.force();
        }
    }
}
