//! The public handle's type. Declared here, next to the state it points to, so that
//! scopes and guards (the layers above this one) can hold and hand out a `Supervisor`;
//! every method of it lives in the `supervisor` module, the top layer.

use std::sync::Arc;

use super::Inner;

/// The owner of every resource acquired through it: a cheap, cloneable handle.
///
/// A supervisor owns a registry of live resources, a private temp root, a cancellation
/// tree of [scopes](crate::Scope), and counters. Start one per service with
/// [`Supervisor::builder`], acquire resources in scopes, and call
/// [`shutdown`](Self::shutdown) before the runtime stops.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
/// use tokio::io::AsyncWriteExt;
/// let sup = tokio_custodian::Supervisor::builder().start()?;
/// sup.scope("request", async |s| {
///     let mut t = s.temp_file().await?;
///     t.write_all(b"intermediate").await.unwrap();
///     Ok::<_, tokio_custodian::Error>(())
/// })
/// .await??;
/// let report = sup.shutdown().await;
/// assert!(report.is_clean());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Supervisor {
    pub(crate) inner: Arc<Inner>,
}
