//! Creating temp files and temp dirs inside the supervisor's private root.

use std::ffi::OsString;
use std::fmt;
use std::future::Future;
use std::io;
use std::panic::Location;
use std::path::PathBuf;

use crate::error::{Error, Operation, Result};
use crate::resource::{TempDir, TempFile};
use crate::scope::Scope;

/// Options for a temp file or temp dir: name prefix and suffix, and the label shown in
/// reports. Made by [`Scope::temp`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> custodian::Result<()> {
/// let sup = custodian::Supervisor::builder().start()?;
/// let f = sup.root().temp().prefix("upload-").suffix(".wav").label("upload").file().await?;
/// let name = f.path().file_name().unwrap().to_str().unwrap();
/// assert!(name.starts_with("upload-") && name.ends_with(".wav"));
/// assert_eq!(sup.live()[0].label, "upload");
/// # sup.shutdown().await; Ok(()) }
/// ```
#[derive(Clone)]
#[must_use = "options do nothing until `file` or `dir` is called"]
pub struct TempBuilder {
    scope: Scope,
    prefix: String,
    suffix: String,
    label: Option<String>,
}

impl TempBuilder {
    /// The start of the random name (no path separator allowed).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The end of the random name, such as an extension (no path separator allowed).
    pub fn suffix(mut self, suffix: impl Into<String>) -> Self {
        self.suffix = suffix.into();
        self
    }

    /// The label shown in [`live`](crate::Supervisor::live) listings and reports.
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    /// Creates the temp file (exclusively, with a random name) and registers it.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] with [`Operation::CreateTempFile`] naming the temp root (full disk,
    /// too many open files...), [`Error::TempRootReplaced`], [`Error::ShuttingDown`] or
    /// [`Error::ScopeClosed`]. Nothing is left on disk or registered on error.
    #[track_caller]
    pub fn file(&self) -> impl Future<Output = Result<TempFile>> + use<> {
        let site = Location::caller();
        let this = self.clone();
        async move {
            let op = Operation::CreateTempFile;
            let made = async {
                let root = this.checked_root(op)?;
                let created = async_tempfile::TempFile::builder()
                    .dir(root.path())
                    .prefix(this.prefix.clone())
                    .suffix(this.suffix.clone())
                    .create()
                    .await
                    .map_err(|e| convert(op, root.path().to_path_buf(), e))?;
                TempFile::adopt(&this.scope, created, this.label.clone(), site)
            };
            made.await.map_err(|e| this.lost_to_shutdown(op, e))
        }
    }

    /// Creates the temp dir (exclusively, with a random name) and registers it.
    ///
    /// # Errors
    ///
    /// As [`file`](Self::file), with [`Operation::CreateTempDir`].
    #[track_caller]
    pub fn dir(&self) -> impl Future<Output = Result<TempDir>> + use<> {
        let site = Location::caller();
        let this = self.clone();
        async move {
            let op = Operation::CreateTempDir;
            let made = async {
                let root = this.checked_root(op)?;
                let created = async_tempfile::TempDir::builder()
                    .dir(root.path())
                    .prefix(this.prefix.clone())
                    .suffix(this.suffix.clone())
                    .create()
                    .await
                    .map_err(|e| convert(op, root.path().to_path_buf(), e))?;
                // From here custodian removes it, off the async threads; async-tempfile's
                // own drop would remove it recursively on the dropping thread.
                let path = created.keep();
                TempDir::adopt(&this.scope, path, this.label.clone(), site)
            };
            made.await.map_err(|e| this.lost_to_shutdown(op, e))
        }
    }

    /// An acquisition that passed `admit` but then lost a race with shutdown, which
    /// removes the temp root, trips over the missing root (`NotFound`, or "replaced" when
    /// the new entry is not found inside it): report the shutdown, not the symptom.
    fn lost_to_shutdown(&self, op: Operation, e: Error) -> Error {
        if !e.is_cancellation() && self.scope.inner().is_shutting_down() {
            Error::ShuttingDown { op }
        } else {
            e
        }
    }

    fn checked_root(&self, op: Operation) -> Result<std::sync::Arc<crate::sys::root::TempRoot>> {
        let inner = self.scope.inner();
        inner.admit(&self.scope.shared, op)?;
        let root = inner.temp_root.clone();
        root.check().map_err(|e| match e.kind() {
            io::ErrorKind::Other => Error::TempRootReplaced {
                op,
                path: root.path().to_path_buf(),
            },
            _ => Error::io(op, root.path(), e),
        })?;
        Ok(root)
    }
}

/// The name of `path` inside the temp root.
pub(crate) fn name_in_root(path: &std::path::Path) -> OsString {
    path.file_name().map(OsString::from).unwrap_or_default()
}

fn convert(op: Operation, path: PathBuf, e: async_tempfile::Error) -> Error {
    let source = match e {
        async_tempfile::Error::Io(e) => e,
        async_tempfile::Error::InvalidDirectory => {
            io::Error::new(io::ErrorKind::NotFound, "the temp root is not a directory")
        }
        async_tempfile::Error::InvalidAffix => io::Error::new(
            io::ErrorKind::InvalidInput,
            "a prefix or suffix contains a path separator",
        ),
        other => io::Error::other(other.to_string()),
    };
    Error::io(op, path, source)
}

impl fmt::Debug for TempBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TempBuilder")
            .field("scope", &self.scope.name())
            .field("prefix", &self.prefix)
            .field("suffix", &self.suffix)
            .field("label", &self.label)
            .finish()
    }
}

impl Scope {
    /// Options for a temp file or dir in this scope (prefix, suffix, label).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> custodian::Result<()> {
    /// let sup = custodian::Supervisor::builder().start()?;
    /// let d = sup.root().temp().prefix("work-").dir().await?;
    /// assert!(d.path().starts_with(sup.temp_root()));
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn temp(&self) -> TempBuilder {
        TempBuilder {
            scope: self.clone(),
            prefix: "tmp-".into(),
            suffix: String::new(),
            label: None,
        }
    }

    /// Creates a temp file in this scope, inside the supervisor's private temp root.
    ///
    /// # Errors
    ///
    /// See [`TempBuilder::file`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> custodian::Result<()> {
    /// let sup = custodian::Supervisor::builder().start()?;
    /// let path = sup
    ///     .scope("job", async |s| {
    ///         let f = s.temp_file().await?;
    ///         custodian::Result::Ok(f.path().to_path_buf())
    ///     })
    ///     .await??;
    /// assert!(!path.exists()); // removed when the guard dropped
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    #[track_caller]
    pub fn temp_file(&self) -> impl Future<Output = Result<TempFile>> + use<> {
        self.temp().file()
    }

    /// Creates a temp dir in this scope, inside the supervisor's private temp root.
    ///
    /// # Errors
    ///
    /// See [`TempBuilder::dir`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> custodian::Result<()> {
    /// let sup = custodian::Supervisor::builder().start()?;
    /// let d = sup.root().temp_dir().await?;
    /// std::fs::create_dir_all(d.path().join("a/b")).unwrap();
    /// let path = d.path().to_path_buf();
    /// d.close().await?; // recursive removal, off the async threads
    /// assert!(!path.exists());
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    #[track_caller]
    pub fn temp_dir(&self) -> impl Future<Output = Result<TempDir>> + use<> {
        self.temp().dir()
    }
}
