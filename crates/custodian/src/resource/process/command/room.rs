//! A child's quota room: taken before the fork, so that a refused spawn starts nothing,
//! and waited for by the asynchronous forms (`spawn_when_room`, `output`, `status`).
//!
//! In `Quota::fds` a spawn takes what it holds at its peak, before the fork: the child's
//! share (`quota::CHILD_FDS`: its pidfd, tokio's, the fds of its stop's `/proc` scan),
//! the exec error pipe std opens when it forks, and two per stdio stream set (a pipe).
//! Once forked, it returns the pipe's child ends and the error pipe, and keeps the
//! child's share plus one per pipe the guard holds.

use crate::error::{Error, Operation, Result};
use crate::inner::{Inner, Need, quota_owner};
use crate::kind::ResourceKind;
use crate::quota::{CHILD_FDS, SPAWN_FDS};
use crate::registry::Permits;
use crate::resource::ManagedChild;

use super::Command;

impl Command {
    /// What a spawn of this command needs, at its peak.
    pub(super) fn need(&self) -> Need {
        let streams = self.stdio.count_ones();
        Need {
            kind: ResourceKind::Child,
            fds: Some(CHILD_FDS + SPAWN_FDS + 2 * streams),
        }
    }

    /// Returns what the spawn needed only for a moment: it keeps `CHILD_FDS` and one fd
    /// per pipe its guard holds (`kept`).
    pub(super) fn settle_room(
        inner: &Inner,
        permits: Option<&mut Permits>,
        peak: u32,
        kept: usize,
    ) {
        let (Some(p), Some(rule)) = (permits, inner.quotas.as_ref().and_then(|q| q.fds_rule()))
        else {
            return;
        };
        let keep = CHILD_FDS + u32::try_from(kept).unwrap_or(3);
        p.shrink(rule, peak.saturating_sub(keep));
    }

    /// The child's quota permits now, or `Error::QuotaExceeded` (`None` without quotas
    /// that count children).
    pub(super) fn room_now(&self) -> Result<Option<Permits>> {
        let (op, kind) = (Operation::Spawn, ResourceKind::Child);
        let inner = self.scope.inner();
        inner.admit(&self.scope.shared, op)?;
        match inner.quotas.as_ref().filter(|q| q.applies(kind)) {
            Some(q) => Ok(Some(q.try_take(
                self.need(),
                op,
                quota_owner(&self.scope.shared),
            )?)),
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
    /// if shutdown cancels the root while it waits, [`Error::Cancelled`](crate::Error::Cancelled)
    /// if its scope is cancelled meanwhile, and
    /// [`Error::QuotaExceeded`](crate::Error::QuotaExceeded) if waiting would close a
    /// wait-for cycle (its request holds room and every holder of the room it needs is
    /// itself waiting: see [`Builder::quota`](crate::Builder::quota)).
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
        let shared = &self.scope.shared;
        let permits = match inner.quotas.as_ref().filter(|q| q.applies(kind)) {
            Some(q) => match q.take_if_room(self.need(), quota_owner(shared)) {
                Some(p) => Some(p),
                None => Some(
                    q.take(self.need(), op, shared, inner.root_token.clone())
                        .await
                        .map_err(named)?,
                ),
            },
            None => None,
        };
        self.spawn_with(permits)
    }
}
