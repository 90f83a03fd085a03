//! [`Error::public`]: an error's text for the clients of a service, without paths.

use std::fmt;

use super::Error;

/// The display form of an [`Error`] meant for a service's clients (an HTTP body): the
/// operation and what went wrong, **never a path** (the private temp root's random name,
/// a file the client should not learn about) nor a resource's label. From
/// [`Error::public`].
///
/// | error | text |
/// |---|---|
/// | `Io`, `ResourceIo` | `{operation}: {io kind}` (`create temp file: no storage space`) |
/// | `Draining` | `{operation}: the service is draining; retry elsewhere` |
/// | `ShuttingDown` | `{operation}: the service is shutting down; retry elsewhere` |
/// | `QuotaExceeded` | `{operation}: busy ({quota} reached); retry later` |
/// | `Cancelled` | `cancelled ({reason})` |
/// | `ScopeClosed` | `{operation}: the request has ended` |
/// | `Resource` | `{operation}: {message}` (a decoder's message: `malformed WAV...`) |
/// | the others | `{operation}: internal error` |
///
/// ```
/// let err = tokio_custodian::Error::Draining { op: tokio_custodian::Operation::EnterScope };
/// assert_eq!(err.public().to_string(), "enter scope: the service is draining; retry elsewhere");
/// ```
#[derive(Debug, Clone, Copy)]
pub struct PublicError<'a>(&'a Error);

impl Error {
    /// This error as text for a service's clients: no path, no label (see
    /// [`PublicError`] for each variant's text). Log the full [`Display`](fmt::Display)
    /// form; send this one.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let missing = sup.temp_root().join("upload-42.wav");
    /// let err = sup.open(&missing).await.unwrap_err();
    /// assert!(err.to_string().contains(&*sup.temp_root().to_string_lossy()));
    /// assert_eq!(err.public().to_string(), "open file: entity not found");
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn public(&self) -> PublicError<'_> {
        PublicError(self)
    }
}

impl fmt::Display for PublicError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = self.0.operation();
        match self.0 {
            Error::Io { source, .. } | Error::ResourceIo { source, .. } => {
                write!(f, "{op}: {}", source.kind())
            }
            Error::Draining { .. } => {
                write!(f, "{op}: the service is draining; retry elsewhere")
            }
            Error::ShuttingDown { .. } => {
                write!(f, "{op}: the service is shutting down; retry elsewhere")
            }
            Error::QuotaExceeded { quota, .. } => {
                write!(f, "{op}: busy ({quota} reached); retry later")
            }
            Error::Cancelled { reason, .. } => write!(f, "cancelled ({reason})"),
            // The program may be a path: its refusal alone.
            Error::SpawnRefused { reason, .. } => write!(f, "{}", reason.public()),
            Error::ScopeClosed { .. } => write!(f, "{op}: the request has ended"),
            // The message is meant to hold no path; its own path is scrubbed anyway, in
            // case another crate's message repeats it.
            Error::Resource { message, path, .. } => match path.to_string_lossy() {
                p if p.is_empty() => write!(f, "{op}: {message}"),
                p => write!(f, "{op}: {}", message.replace(&*p, "the file")),
            },
            Error::TempRootReplaced { .. }
            | Error::NoRuntime { .. }
            | Error::CleanupPanicked { .. } => write!(f, "{op}: internal error"),
        }
    }
}
