//! The entry point of the kind: `Scope::command` (the root scope's shortcut,
//! `Supervisor::command`, is in `supervisor/shortcuts.rs`).

use std::ffi::OsStr;
use std::panic::Location;

use super::command::Command;
use crate::scope::Scope;

impl Scope {
    /// A managed child process to start in this scope: stopped (with its whole process
    /// group) when its guard is dropped or closed, or when the scope ends.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// sup.scope("job", async |s| {
    ///     let child = s.command("sleep").arg("1000").spawn()?;
    ///     assert!(child.id().is_some());
    ///     Ok::<_, tokio_custodian::Error>(())
    /// })
    /// .await??; // the sleep is stopped and reaped before `scope` returns
    /// assert_eq!(sup.stats().live(), 0);
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    #[track_caller]
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        Command::new(self.clone(), program.as_ref(), Location::caller())
    }
}
