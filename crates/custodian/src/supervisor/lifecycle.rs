//! The supervisor's lifecycle: shutdown (graceful, forced, awaited), shutdown hooks,
//! signal handling and emergency clean-up. Each method forwards to the module that does
//! the work (`shutdown`, `inner::hooks`, `signal`, `emergency`).

use std::future::Future;
use std::panic::Location;
use std::time::Duration;

use tokio_util::sync::WaitForCancellationFutureOwned;

use crate::emergency::{EmergencyCleanup, PanicCleanup};
use crate::error::Result;
use crate::kind::CancelReason;
use crate::report::ShutdownReport;
use crate::shutdown::shutdown_once;

use super::Supervisor;

impl Supervisor {
    /// Completes when shutdown cancels the root scope (and so every scope): when
    /// shutdown begins, or, with a [drain](crate::Builder::drain), when the drain ends.
    /// To stop a server accepting before its requests are cancelled, hand it
    /// [`draining`](Self::draining) instead (the same instant without a drain).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future only stops waiting.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let stop = sup.cancelled();
    /// sup.shutdown().await;
    /// stop.await;
    /// # Ok(()) }
    /// ```
    pub fn cancelled(&self) -> WaitForCancellationFutureOwned {
        self.inner.root_token.clone().cancelled_owned()
    }

    /// Whether shutdown has begun: its drain (new top-level scopes refused), or, after
    /// it or without one, the phase where every new acquisition is refused.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// assert!(!sup.is_shutting_down());
    /// sup.shutdown().await;
    /// assert!(sup.is_shutting_down());
    /// # Ok(()) }
    /// ```
    pub fn is_shutting_down(&self) -> bool {
        self.inner.is_shutting_down() || self.inner.drain.is_draining()
    }

    /// Completes when the supervisor stops taking new work: when the drain begins
    /// (see [`Builder::drain`](crate::Builder::drain)), when shutdown begins if there
    /// is no drain, or when it is [forced](Self::force) (at once if that has already
    /// happened). Made for a server's graceful
    /// shutdown, which stops accepting connections and lets requests in flight finish:
    /// `axum::serve(listener, app).with_graceful_shutdown(sup.draining())`. Unlike
    /// [`cancelled`](Self::cancelled), which fires only once the drain is over and
    /// every scope is being cancelled.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future only stops waiting. It holds no reference to the
    /// supervisor.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// use std::time::Duration;
    /// let sup = tokio_custodian::Supervisor::builder().drain(Duration::from_secs(5)).start()?;
    /// let (done, finish) = tokio::sync::oneshot::channel::<()>();
    /// let s = sup.clone();
    /// let in_flight = tokio::spawn(async move {
    ///     s.scope("request", async |_| finish.await).await
    /// });
    /// tokio::task::yield_now().await; // the request's scope starts
    /// let stop_accepting = sup.draining();
    /// let s = sup.clone();
    /// let shutdown = tokio::spawn(async move { s.shutdown().await });
    /// stop_accepting.await;
    /// assert!(sup.is_draining());
    /// let refused = sup.scope("late request", async |_| ()).await.unwrap_err();
    /// assert!(matches!(refused, tokio_custodian::Error::Draining { .. }));
    /// done.send(()).unwrap(); // the request in flight finishes
    /// assert!(in_flight.await.unwrap().is_ok());
    /// assert_eq!(shutdown.await.unwrap().drain.unwrap().refused, 1);
    /// # Ok(()) }
    /// ```
    pub fn draining(&self) -> impl Future<Output = ()> + Send + 'static + use<> {
        self.inner.drain.begun.clone().cancelled_owned()
    }

    /// Whether the supervisor has stopped taking new work: the drain (or, without one,
    /// shutdown) has begun. Stays `true` for the rest of its life.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// assert!(!sup.is_draining());
    /// sup.shutdown().await;
    /// assert!(sup.is_draining());
    /// # Ok(()) }
    /// ```
    pub fn is_draining(&self) -> bool {
        self.inner.drain.is_draining()
    }

    /// Shuts down: refuses new acquisitions, cancels every scope, waits for them up to
    /// the grace period, releases whatever is still registered (reverse acquisition
    /// order), removes the temp root, and reports. Calling it again returns the same
    /// report. With a [watcher](crate::Builder::watcher), it then tells the watcher
    /// that everything was released and reaps it.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the shutdown runs as its own task, so dropping this future does not
    /// stop it, and a later call waits for the same run.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let t = sup.temp_file().await?;
    /// let report = sup.shutdown().await;
    /// assert_eq!(report.alive_at_shutdown.len(), 1);
    /// assert!(!sup.temp_root().exists());
    /// # drop(t); Ok(()) }
    /// ```
    pub async fn shutdown(&self) -> ShutdownReport {
        let report = shutdown_once(&self.inner).await;
        // Everything is released: the watcher (`Builder::watcher`) exits without acting,
        // and is reaped before this returns.
        crate::watcher::finish(&self.inner).await;
        report
    }

    /// Forces shutdown: a shutdown that is running stops waiting (hooks are cut, scopes
    /// are not waited for, what is left is released at once with
    /// [`reclaim_now`](crate::Reclaim::reclaim_now)), and one that starts later is
    /// forced from the start. Every scope is cancelled with
    /// [`CancelReason::ForcedShutdown`] and its body dropped without a grace period, and
    /// the root scope takes no new work ([`Error::Draining`](crate::Error::Draining);
    /// [`draining`](Self::draining) completes). Does not itself run the shutdown; see
    /// [`shutdown_now`](Self::shutdown_now).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// sup.force();
    /// let report = sup.shutdown().await;
    /// assert!(report.forced);
    /// assert_eq!(report.reason, tokio_custodian::CancelReason::ForcedShutdown);
    /// # Ok(()) }
    /// ```
    pub fn force(&self) {
        self.inner.force();
    }

    /// A forced shutdown: [`force`](Self::force), then [`shutdown`](Self::shutdown).
    ///
    /// # Cancel safety
    ///
    /// As [`shutdown`](Self::shutdown).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// use std::time::Duration;
    /// let sup = tokio_custodian::Supervisor::builder().grace(Duration::from_secs(60)).start()?;
    /// let s = sup.clone();
    /// let stuck = tokio::spawn(async move {
    ///     s.scope("stuck", async |_| std::future::pending::<()>().await).await
    /// });
    /// tokio::task::yield_now().await;
    /// let report = sup.shutdown_now().await; // does not wait 60 s
    /// assert!(report.took < Duration::from_secs(30));
    /// assert!(stuck.await.unwrap().is_err());
    /// # Ok(()) }
    /// ```
    pub async fn shutdown_now(&self) -> ShutdownReport {
        self.force();
        self.shutdown().await
    }

    /// Completes with the report once a shutdown started elsewhere (for example by a
    /// signal, see [`install_signal_handlers`](Self::install_signal_handlers)) has
    /// finished. Does not start one.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let s = sup.clone();
    /// tokio::spawn(async move { s.shutdown().await });
    /// let report = sup.wait_for_shutdown().await;
    /// assert!(report.is_clean());
    /// # Ok(()) }
    /// ```
    pub async fn wait_for_shutdown(&self) -> ShutdownReport {
        self.inner.done.cancelled().await;
        self.shutdown().await
    }

    /// Registers a shutdown hook: `hook(reason)` runs during
    /// [`shutdown`](Self::shutdown), after every scope has been cancelled and before
    /// shutdown waits for them, as its own task. Hooks run one after another, the last
    /// registered first; each may take up to `budget`, after which it is aborted and
    /// reported as [`HookOutcome::Overran`](crate::HookOutcome::Overran). A forced shutdown skips hooks.
    ///
    /// The hook should not hold a [`Supervisor`] clone (that would keep the supervisor
    /// alive until shutdown runs); it receives the reason instead.
    ///
    /// # Errors
    ///
    /// [`Error::ShuttingDown`](crate::Error::ShuttingDown) if shutdown has begun.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// use std::time::Duration;
    /// use tokio_custodian::{CancelReason, HookOutcome};
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
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
        self.inner.add_hook(name, budget, Location::caller(), hook)
    }

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
    /// [`Error::Io`](crate::Error::Io) with [`Operation::InstallSignalHandlers`](crate::Operation::InstallSignalHandlers) if a handler cannot be
    /// registered (for example when the runtime has no I/O driver).
    ///
    /// ```no_run
    /// # #[tokio::main] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// sup.install_signal_handlers()?;
    /// sup.cancelled().await; // a server would stop accepting here
    /// let report = sup.wait_for_shutdown().await;
    /// println!("{report}");
    /// # Ok(()) }
    /// ```
    pub fn install_signal_handlers(&self) -> Result<()> {
        crate::signal::install(&self.inner)
    }

    /// Releases everything still registered *now*, synchronously and without a runtime
    /// ([`Reclaim::reclaim_now`](crate::Reclaim::reclaim_now) on each entry, newest
    /// first), removes the temp root, and refuses new acquisitions. Safe to call more
    /// than once, and from any thread; later calls find nothing left to do.
    ///
    /// This is the last resort (a panic hook, a fatal error path). It blocks the calling
    /// thread for as long as the removals take; prefer [`shutdown`](Self::shutdown).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let t = sup.temp_file().await?;
    /// let done = sup.emergency_cleanup();
    /// assert_eq!((done.released, done.failed, done.temp_root_removed), (1, 0, true));
    /// assert!(!t.path().exists() && !sup.temp_root().exists());
    /// assert_eq!(sup.emergency_cleanup().released, 0); // idempotent
    /// # Ok(()) }
    /// ```
    pub fn emergency_cleanup(&self) -> EmergencyCleanup {
        crate::emergency::run(&self.inner)
    }

    /// Installs a process-wide panic hook that runs
    /// [`emergency_cleanup`](Self::emergency_cleanup) (see [`PanicCleanup`] for when),
    /// then the hook that was installed before. Nothing is installed unless this is
    /// called. The hook holds only a weak reference: it never keeps the supervisor alive,
    /// and does nothing once the supervisor is gone. Installing it twice is harmless.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// use tokio_custodian::PanicCleanup;
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// sup.install_panic_hook(PanicCleanup::OnAnyPanic);
    /// let t = sup.temp_file().await?;
    /// let path = t.path().to_path_buf();
    /// std::thread::spawn(|| panic!("fatal")).join().unwrap_err();
    /// assert!(!path.exists() && sup.is_shutting_down());
    /// # Ok(()) }
    /// ```
    pub fn install_panic_hook(&self, when: PanicCleanup) {
        crate::emergency::install_panic_hook(&self.inner, when);
    }
}
