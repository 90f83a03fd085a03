//! The crash journal seen from the handle: its path, `start`'s sweep, and sweeps on demand.

use std::path::Path;

use crate::error::{Error, Operation, Result};
use crate::journal::SweepReport;

use super::Supervisor;

impl Supervisor {
    /// This supervisor's crash journal, if a [state dir](crate::Builder::state_dir) is set.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// assert!(sup.journal_path().is_none());
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn journal_path(&self) -> Option<&Path> {
        self.inner.journal.as_ref().map(|j| j.path())
    }

    /// What `start`'s sweep of the state dir did, once it has finished (an empty report
    /// without a state dir). See [`Builder::state_dir`](crate::Builder::state_dir).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the sweep runs on its own; dropping this future only stops waiting.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// assert_eq!(sup.swept_at_start().await.found, 0);
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub async fn swept_at_start(&self) -> SweepReport {
        let mut rx = self.inner.swept_at_start.clone();
        match rx.wait_for(Option::is_some).await {
            Ok(r) => r.clone().unwrap_or_default(),
            // The sweep was dropped unrun (the runtime is shutting down).
            Err(_) => SweepReport::default(),
        }
    }

    /// Sweeps the state dir now, as [`tokio_custodian::sweep`](crate::sweep) does, on the
    /// blocking pool: reaps what dead owners left there. This supervisor's own journal
    /// is locked, and its owner alive, so it is never touched.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] with [`Operation::Sweep`] if no state dir is set (`NotFound`), or as
    /// [`tokio_custodian::sweep`](crate::sweep).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the sweep runs on the blocking pool to its end; dropping the future
    /// loses only the report.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let dir = std::env::temp_dir().join(format!("custodian-sweep-doc-{}", std::process::id()));
    /// let sup = tokio_custodian::Supervisor::builder().state_dir(&dir).start()?;
    /// let report = sup.sweep().await?;
    /// assert_eq!(report.found, 1); // its own journal, left alone
    /// assert!(report.dead_owners.is_empty());
    /// # sup.shutdown().await; drop(sup); std::fs::remove_dir(&dir).unwrap(); Ok(()) }
    /// ```
    pub async fn sweep(&self) -> Result<SweepReport> {
        let Some(dir) = self
            .journal_path()
            .and_then(Path::parent)
            .map(Path::to_path_buf)
        else {
            return Err(Error::io(
                Operation::Sweep,
                "",
                std::io::Error::new(std::io::ErrorKind::NotFound, "no state dir is set"),
            ));
        };
        let swept = self
            .inner
            .handle
            .spawn_blocking(move || {
                crate::recovery::sweep_journals(&dir, crate::DEFAULT_CHILD_GRACE)
            })
            .await;
        swept.map_err(|e| Error::io(Operation::Sweep, "", std::io::Error::other(e)))?
    }
}
