//! Resource ids: the one identity every layer uses for a registered resource.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The identity of one registered resource, unique within its supervisor.
///
/// Ids increase with acquisition order, so sorting by id gives acquisition order.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
/// let sup = tokio_custodian::Supervisor::builder().start()?;
/// let t = sup.temp_file().await?;
/// assert_eq!(sup.live()[0].id(), t.id());
/// assert_eq!(t.id().to_string(), format!("#{}", t.id().get()));
/// # drop(t); sup.shutdown().await; Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ResourceId(u64);

impl ResourceId {
    /// The id numbered `n` (the registry hands them out in order).
    pub(crate) fn new(n: u64) -> Self {
        ResourceId(n)
    }

    /// The number behind the id.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let a = sup.temp_file().await?;
    /// let b = sup.temp_file().await?;
    /// assert!(a.id().get() < b.id().get());
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}
