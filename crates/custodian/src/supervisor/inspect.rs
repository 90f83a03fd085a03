//! The inspect server's public face on the handle.

use std::path::Path;

use crate::inner::Supervisor;

impl Supervisor {
    /// The inspect socket, when [`Builder::inspect`](crate::Builder::inspect) is on.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let off = tokio_custodian::Supervisor::builder().start()?;
    /// assert!(off.inspect_socket().is_none());
    /// let on = tokio_custodian::Supervisor::builder().inspect(true).start()?;
    /// let name = on.inspect_socket().unwrap().file_name().unwrap().to_str().unwrap();
    /// assert!(name.starts_with("inspect-") && name.ends_with(".sock"));
    /// # off.shutdown().await; on.shutdown().await; Ok(()) }
    /// ```
    pub fn inspect_socket(&self) -> Option<&Path> {
        self.inner.inspect_socket.get().map(|p| p.as_path())
    }
}
