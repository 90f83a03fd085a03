//! A child's quota room: taken before the fork, so that a refused spawn starts nothing,
//! and waited for by the asynchronous forms (`spawn_when_room`, `output`, `status`).

use crate::error::{Error, Operation, Result};
use crate::kind::ResourceKind;
use crate::registry::Permits;
use crate::resource::ManagedChild;

use super::Command;

impl Command {
    /// The child's quota permits now, or `Error::QuotaExceeded` (`None` without quotas
    /// that count children).
    pub(super) fn room_now(&self) -> Result<Option<Permits>> {
        let (op, kind) = (Operation::Spawn, ResourceKind::Child);
        let inner = self.scope.inner();
        inner.admit(&self.scope.shared, op)?;
        match inner.quotas.as_ref().filter(|q| q.applies(kind)) {
            Some(q) => Ok(Some(q.try_take(kind, op)?)),
            None => Ok(None),
        }
    }

    /// Like [`spawn`](Self::spawn), but first waits for room in the
    /// [`Quota`](crate::Quota)s that count children (`Quota::live(ResourceKind::Child, n)`,
    /// `Quota::fds`), first come first served, instead of failing with
    /// [`Error::QuotaExceeded`](crate::Error::QuotaExceeded). Without such quotas it is
    /// `spawn`.
    ///
    /// # Errors
    ///
    /// As [`spawn`](Self::spawn); [`Error::SpawnRefused`](crate::Error::SpawnRefused)
    /// if shutdown cancels the root while it waits.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropped while it waits, it takes nothing and starts nothing; the
    /// spawn itself does not await.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// use tokio_custodian::{Quota, ResourceKind};
    /// let sup = tokio_custodian::Supervisor::builder()
    ///     .quota(Quota::live(ResourceKind::Child, 1))
    ///     .start()?;
    /// let mut first = sup.command("sleep").arg("0.05").spawn()?;
    /// let s = sup.clone();
    /// let second = tokio::spawn(async move { s.command("true").spawn_when_room().await });
    /// first.wait().await?;
    /// drop(first); // reaped: room for the second
    /// second.await.unwrap()?.wait().await?;
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub async fn spawn_when_room(self) -> Result<ManagedChild> {
        let (op, kind) = (Operation::Spawn, ResourceKind::Child);
        let inner = self.scope.inner().clone();
        let named = |e: Error| e.naming_program(&self.program);
        inner.admit(&self.scope.shared, op).map_err(named)?;
        let permits = match inner.quotas.as_ref().filter(|q| q.applies(kind)) {
            Some(q) => match q.take_if_room(kind) {
                Some(p) => Some(p),
                None => Some(
                    q.take(kind, op, inner.root_token.clone())
                        .await
                        .map_err(named)?,
                ),
            },
            None => None,
        };
        self.spawn_with(permits)
    }
}
