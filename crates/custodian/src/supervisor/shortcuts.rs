//! Shortcuts: acquisitions in the root scope. Each forwards to the [`Scope`] method of
//! the same name on [`Supervisor::root`]; they are kept together here so that a new
//! resource kind adds its shortcut in one place.

use std::ffi::OsStr;
use std::future::Future;
use std::path::Path;

use crate::error::Result;
use crate::resource::{AtomicWrite, CreateAtomicFile, LockOptions};
use crate::resource::{Command, CreateTempDir, CreateTempFile, OpenFile, OpenOptions, TempBuilder};
use crate::scope::Scope;

use super::Supervisor;

impl Supervisor {
    /// Runs `body` in a new scope and releases, in reverse acquisition order, whatever it
    /// still owns when the body returns, fails, panics, is cancelled, or when this future
    /// is dropped. Does not return before those clean-ups have finished.
    ///
    /// If the scope is cancelled (by [`Scope::cancel`], a parent, or shutdown), the body
    /// may finish on its own within the grace period; after it, the body is dropped and
    /// the result is [`Error::Cancelled`](crate::Error::Cancelled). A panic in the body is resumed after clean-up.
    ///
    /// # Errors
    ///
    /// [`Error::Cancelled`](crate::Error::Cancelled) if the body was dropped after the grace period;
    /// [`Error::ShuttingDown`](crate::Error::ShuttingDown) if the supervisor is shutting down, or
    /// [`Error::Draining`](crate::Error::Draining) during its drain (see
    /// [`Builder::drain`](crate::Builder::drain)). The body's own result,
    /// `T`, is returned as it is (often a `Result` itself).
    ///
    /// # Cancel safety
    ///
    /// As [`Scope::scope`], which it forwards to: dropping the future cancels the scope,
    /// the body is dropped, its resources are released at once (a temp dir's removal
    /// finishes in the background).
    ///
    /// A body that uses `?` must name its error type, which the compiler cannot infer
    /// from `Ok(..)` alone (E0282): use [`try_scope`](Self::try_scope), which pins it to
    /// [`Error`](crate::Error) and flattens the result, or write
    /// `Ok::<_, tokio_custodian::Error>(..)` (or your own error type) as the body's value.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let out = sup.scope("job", async |s| {
    ///     let d = s.temp_dir().await?;
    ///     Ok::<_, tokio_custodian::Error>(d.path().exists())
    /// });
    /// assert!(out.await??); // the scope's result, then the body's
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    #[track_caller]
    pub fn scope<F, T>(&self, name: &str, body: F) -> impl Future<Output = Result<T>> + use<F, T>
    where
        F: AsyncFnOnce(Scope) -> T,
    {
        self.root().into_scope(name, self.inner.config.grace, body)
    }

    /// [`scope`](Self::scope) for a body that returns [`Result`](crate::Result): its
    /// error type is pinned to [`Error`](crate::Error), so `Ok(..)` needs no annotation,
    /// and the scope's and the body's errors come out as one (a single `?`). Errors of
    /// `tokio-custodian-audio` and [`PersistError`](crate::PersistError) convert with `?`.
    ///
    /// # Errors
    ///
    /// The body's error, or the scope's own (as [`scope`](Self::scope)).
    ///
    /// # Cancel safety
    ///
    /// As [`scope`](Self::scope).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let exists = sup
    ///     .try_scope("job", async |s| {
    ///         let d = s.temp_dir().await?;
    ///         Ok(d.path().exists())
    ///     })
    ///     .await?;
    /// assert!(exists);
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    #[track_caller]
    pub fn try_scope<F, T>(
        &self,
        name: &str,
        body: F,
    ) -> impl Future<Output = Result<T>> + use<F, T>
    where
        F: AsyncFnOnce(Scope) -> Result<T>,
    {
        self.root().try_scope(name, body)
    }

    /// Creates a temp file in the root scope. See [`Scope::temp_file`].
    ///
    /// # Errors
    ///
    /// See [`TempBuilder::file`].
    ///
    /// # Cancel safety
    ///
    /// As [`Scope::temp_file`], which it forwards to.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let t = sup.temp_file().await?;
    /// assert!(t.path().exists());
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    #[track_caller]
    pub fn temp_file(&self) -> CreateTempFile {
        self.root().temp_file()
    }

    /// Creates a temp dir in the root scope. See [`Scope::temp_dir`].
    ///
    /// # Errors
    ///
    /// See [`TempBuilder::dir`].
    ///
    /// # Cancel safety
    ///
    /// As [`Scope::temp_dir`], which it forwards to.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// assert!(sup.temp_dir().await?.path().is_dir());
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    #[track_caller]
    pub fn temp_dir(&self) -> CreateTempDir {
        self.root().temp_dir()
    }

    /// Temp file or dir options in the root scope. See [`Scope::temp`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let t = sup.temp().suffix(".json").file().await?;
    /// assert_eq!(t.path().extension().unwrap(), "json");
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn temp(&self) -> TempBuilder {
        self.root().temp()
    }

    /// Opens a file for reading in the root scope. See [`Scope::open`].
    ///
    /// # Errors
    ///
    /// See [`OpenOptions::open`].
    ///
    /// # Cancel safety
    ///
    /// As [`Scope::open`], which it forwards to.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let f = sup.open("/dev/null").await?;
    /// # drop(f); sup.shutdown().await; Ok(()) }
    /// ```
    #[track_caller]
    pub fn open<P: AsRef<Path>>(&self, path: P) -> OpenFile {
        self.root().open(path)
    }

    /// Creates (or truncates) a file for writing in the root scope. See
    /// [`Scope::create`].
    ///
    /// # Errors
    ///
    /// See [`OpenOptions::open`].
    ///
    /// # Cancel safety
    ///
    /// As [`Scope::create`], which it forwards to.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let f = sup.create(sup.temp_root().join("out.txt")).await?;
    /// # drop(f); sup.shutdown().await; Ok(()) }
    /// ```
    #[track_caller]
    pub fn create<P: AsRef<Path>>(&self, path: P) -> OpenFile {
        self.root().create(path)
    }

    /// File options in the root scope. See [`Scope::file_options`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let f = sup.file_options().read(true).open("/dev/null").await?;
    /// # drop(f); sup.shutdown().await; Ok(()) }
    /// ```
    pub fn file_options(&self) -> OpenOptions {
        self.root().file_options()
    }

    /// A managed child process to start in the root scope. See [`Scope::command`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// assert!(sup.command("true").status().await?.success());
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    #[track_caller]
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        self.root().command(program)
    }

    /// Opens an atomic writer in the root scope. See [`Scope::atomic_file`].
    ///
    /// # Errors
    ///
    /// See [`Scope::atomic_file`].
    ///
    /// # Cancel safety
    ///
    /// As [`Scope::atomic_file`], which it forwards to.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let f = sup.atomic_file(sup.temp_root().join("out")).await?;
    /// f.commit().await?;
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    #[track_caller]
    pub fn atomic_file<P: AsRef<Path>>(&self, path: P) -> CreateAtomicFile {
        self.root().atomic_file(path)
    }

    /// Writes a file atomically and durably in the root scope. See
    /// [`Scope::atomic_write`].
    ///
    /// # Errors
    ///
    /// See [`Scope::atomic_write`].
    ///
    /// # Cancel safety
    ///
    /// As [`Scope::atomic_write`], which it forwards to.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// sup.atomic_write(sup.temp_root().join("out"), "done").await?;
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    #[track_caller]
    pub fn atomic_write<P, B>(&self, path: P, bytes: B) -> AtomicWrite
    where
        P: AsRef<Path>,
        B: AsRef<[u8]> + Send + 'static,
    {
        self.root().atomic_write(path, bytes)
    }

    /// File lock options in the root scope. See [`Scope::file_lock`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let l = sup.file_lock(sup.temp_root().join("l")).acquire().await?;
    /// # drop(l); sup.shutdown().await; Ok(()) }
    /// ```
    pub fn file_lock<P: AsRef<Path>>(&self, path: P) -> LockOptions {
        self.root().file_lock(path)
    }
}
