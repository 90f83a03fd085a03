//! The error type of the crate: every variant names the operation and the path.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// What the decoder was doing when an error happened.
///
/// ```
/// assert_eq!(tokio_custodian_audio::Op::Read.to_string(), "decode audio");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Op {
    /// Opening the file and checking its headers.
    Open,
    /// Recognising the container and codec.
    Probe,
    /// Decoding frames.
    Read,
    /// Seeking to a time.
    Seek,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Open => "open audio",
            Op::Probe => "probe audio",
            Op::Read => "decode audio",
            Op::Seek => "seek audio",
        })
    }
}

/// Errors of `tokio-custodian-audio`.
///
/// Malformed or hostile input is always one of these, never a panic: panics inside the
/// decoding library are caught and reported as [`Error::Panicked`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
/// use tokio_custodian_audio::{AudioDecoder, Error, Op};
/// let sup = tokio_custodian::Supervisor::builder().start()?;
/// let err = AudioDecoder::open(&sup.root(), "/no/such.wav").await.unwrap_err();
/// assert_eq!(err.op(), Op::Open);
/// assert_eq!(err.path(), Some(std::path::Path::new("/no/such.wav")));
/// assert!(matches!(err, Error::Io { .. }));
/// # sup.shutdown().await; Ok(()) }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system call failed (missing file, permission denied...).
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: Op,
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The path is not a regular file (a directory, a FIFO, a socket, a device): refused
    /// at once, before any open that could wait (a FIFO is never opened for reading
    /// without `O_NONBLOCK`, a device never opened). [`Error::io_kind`] is
    /// [`io::ErrorKind::IsADirectory`] for a directory, [`io::ErrorKind::InvalidInput`]
    /// otherwise.
    #[error("{op} {}: not a regular file ({what})", path.display())]
    NotAFile {
        /// What was being done.
        op: Op,
        /// The path.
        path: PathBuf,
        /// What it is instead, in words: `a directory`, `a FIFO`, `a socket`,
        /// `a character device`, `a block device`.
        what: &'static str,
    },
    /// The container or codec is not supported (or its Cargo feature is off).
    #[error("{op} {}: unsupported: {what}", path.display())]
    Unsupported {
        /// What was being done.
        op: Op,
        /// The file.
        path: PathBuf,
        /// What is unsupported.
        what: String,
    },
    /// The file is malformed.
    #[error("{op} {}: malformed: {message}", path.display())]
    Malformed {
        /// What was being done.
        op: Op,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A declared size is above a configured [`Limits`](crate::Limits) value; nothing was
    /// allocated for it.
    #[error("{op} {}: {what} is {value}, above the limit of {limit}", path.display())]
    Limit {
        /// What was being done.
        op: Op,
        /// The file.
        path: PathBuf,
        /// Which quantity.
        what: &'static str,
        /// Its declared value.
        value: u64,
        /// The limit.
        limit: u64,
    },
    /// The decoding library panicked; the panic was caught and the decoder released.
    #[error("{op} {}: the decoder panicked ({message}); it was released", path.display())]
    Panicked {
        /// What was being done.
        op: Op,
        /// The file.
        path: PathBuf,
        /// The panic message.
        message: String,
    },
    /// The decoder was already released: its scope ended, the supervisor shut down, or an
    /// earlier panic released it.
    #[error("{op} {}: the decoder was released", path.display())]
    Released {
        /// What was being done.
        op: Op,
        /// The file.
        path: PathBuf,
    },
    /// custodian refused the registration (shutting down, scope closed).
    #[error(transparent)]
    Custodian(#[from] tokio_custodian::Error),
}

impl Error {
    /// The operation that failed.
    ///
    /// ```
    /// # use tokio_custodian_audio::{Error, Op};
    /// let e = Error::Released { op: Op::Read, path: "a.wav".into() };
    /// assert_eq!(e.op(), Op::Read);
    /// ```
    pub fn op(&self) -> Op {
        match self {
            Error::Io { op, .. }
            | Error::NotAFile { op, .. }
            | Error::Unsupported { op, .. }
            | Error::Malformed { op, .. }
            | Error::Limit { op, .. }
            | Error::Panicked { op, .. }
            | Error::Released { op, .. } => *op,
            Error::Custodian(_) => Op::Open,
        }
    }

    /// The file the error concerns.
    ///
    /// ```
    /// # use tokio_custodian_audio::{Error, Op};
    /// let e = Error::Released { op: Op::Read, path: "a.wav".into() };
    /// assert_eq!(e.path(), Some(std::path::Path::new("a.wav")));
    /// ```
    pub fn path(&self) -> Option<&Path> {
        match self {
            Error::Io { path, .. }
            | Error::NotAFile { path, .. }
            | Error::Unsupported { path, .. }
            | Error::Malformed { path, .. }
            | Error::Limit { path, .. }
            | Error::Panicked { path, .. }
            | Error::Released { path, .. } => Some(path),
            Error::Custodian(e) => e.path(),
        }
    }

    /// The kind of I/O error this is, or stands for: the OS error's kind for
    /// [`Error::Io`], [`io::ErrorKind::IsADirectory`] or [`io::ErrorKind::InvalidInput`]
    /// for [`Error::NotAFile`], custodian's for [`Error::Custodian`]; `None` for bad
    /// content.
    ///
    /// ```
    /// # use tokio_custodian_audio::{Error, Op};
    /// let e = Error::NotAFile { op: Op::Open, path: "/run/pipe".into(), what: "a FIFO" };
    /// assert_eq!(e.io_kind(), Some(std::io::ErrorKind::InvalidInput));
    /// assert_eq!(e.to_string(), "open audio /run/pipe: not a regular file (a FIFO)");
    /// ```
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            Error::Io { source, .. } => Some(source.kind()),
            Error::NotAFile { what, .. } if *what == "a directory" => {
                Some(io::ErrorKind::IsADirectory)
            }
            Error::NotAFile { .. } => Some(io::ErrorKind::InvalidInput),
            Error::Custodian(e) => e.io_kind(),
            _ => None,
        }
    }
}

impl Error {
    /// What went wrong, without the path (custodian's `Error::Resource` names it, and
    /// its `public()` form prints this message to clients: it must hold no path).
    fn detail(&self) -> String {
        let op = self.op();
        match self {
            Error::NotAFile { what, .. } => format!("{op}: not a regular file ({what})"),
            Error::Unsupported { what, .. } => format!("{op}: unsupported: {what}"),
            Error::Malformed { message, .. } => format!("{op}: malformed: {message}"),
            Error::Limit {
                what, value, limit, ..
            } => format!("{op}: {what} is {value}, above the limit of {limit}"),
            Error::Panicked { message, .. } => {
                format!("{op}: the decoder panicked ({message}); it was released")
            }
            Error::Released { .. } => format!("{op}: the decoder was released"),
            Error::Io { source, .. } => format!("{op}: {source}"),
            Error::Custodian(e) => e.public().to_string(),
        }
    }
}

impl From<Error> for tokio_custodian::Error {
    /// Folds an audio error into custodian's error, so that `?` works in scope bodies:
    /// an I/O failure stays [`tokio_custodian::Error::Io`] with its path and `io::ErrorKind`
    /// (`EMFILE` at open is not "bad audio"), and so does a path that is not a regular
    /// file (its kind from [`Error::io_kind`]); the others become
    /// [`tokio_custodian::Error::Resource`]; all with [`tokio_custodian::Operation::Decode`].
    ///
    /// ```
    /// let e = tokio_custodian_audio::Error::Io {
    ///     op: tokio_custodian_audio::Op::Open,
    ///     path: "a.wav".into(),
    ///     source: std::io::Error::from_raw_os_error(24), // EMFILE
    /// };
    /// let e = tokio_custodian::Error::from(e);
    /// assert_eq!(e.path(), Some(std::path::Path::new("a.wav")));
    /// assert_eq!(e.io_kind(), Some(std::io::Error::from_raw_os_error(24).kind()));
    /// ```
    fn from(e: Error) -> Self {
        match e {
            Error::Custodian(e) => e,
            Error::Io { path, source, .. } => tokio_custodian::Error::Io {
                op: tokio_custodian::Operation::Decode,
                path,
                source,
            },
            Error::NotAFile { what, .. } => {
                let kind = e.io_kind().unwrap_or(io::ErrorKind::InvalidInput);
                let source = io::Error::new(kind, format!("not a regular file ({what})"));
                let path = e.path().map(Path::to_path_buf).unwrap_or_default();
                tokio_custodian::Error::Io {
                    op: tokio_custodian::Operation::Decode,
                    path,
                    source,
                }
            }
            other => tokio_custodian::Error::Resource {
                op: tokio_custodian::Operation::Decode,
                message: other.detail(),
                path: other.path().map(Path::to_path_buf).unwrap_or_default(),
            },
        }
    }
}

/// The result type of `tokio-custodian-audio`.
///
/// ```
/// fn frames(info: &tokio_custodian_audio::AudioInfo) -> tokio_custodian_audio::Result<u64> {
///     Ok(info.total_frames.unwrap_or(0))
/// }
/// # let _ = frames;
/// ```
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error without its path yet: the blocking side knows what failed, the guard knows
/// the path.
#[derive(Debug)]
pub(crate) enum Fail {
    Io(io::Error),
    NotAFile(&'static str),
    Unsupported(String),
    Malformed(String),
    Limit {
        what: &'static str,
        value: u64,
        limit: u64,
    },
    Panicked(String),
    Released,
}

impl Fail {
    pub(crate) fn malformed(m: impl Into<String>) -> Self {
        Fail::Malformed(m.into())
    }

    pub(crate) fn at(self, op: Op, path: &Path) -> Error {
        let path = path.to_path_buf();
        match self {
            Fail::Io(source) => Error::Io { op, path, source },
            Fail::NotAFile(what) => Error::NotAFile { op, path, what },
            Fail::Unsupported(what) => Error::Unsupported { op, path, what },
            Fail::Malformed(message) => Error::Malformed { op, path, message },
            Fail::Limit { what, value, limit } => Error::Limit {
                op,
                path,
                what,
                value,
                limit,
            },
            Fail::Panicked(message) => Error::Panicked { op, path, message },
            Fail::Released => Error::Released { op, path },
        }
    }

    /// Maps an error of the decoding library.
    pub(crate) fn from_symphonia(e: symphonia::core::errors::Error) -> Self {
        use symphonia::core::errors::Error as S;
        match e {
            S::IoError(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                Fail::malformed("unexpected end of file")
            }
            S::IoError(e) => Fail::Io(e),
            S::DecodeError(m) => Fail::malformed(m),
            S::SeekError(k) => Fail::malformed(format!("seek: {k:?}")),
            S::Unsupported(m) => Fail::Unsupported(m.to_owned()),
            S::LimitError(m) => Fail::malformed(format!("decoder limit reached: {m}")),
            S::ResetRequired => Fail::malformed("stream parameters changed mid-stream"),
        }
    }
}

/// The message of a caught panic.
pub(crate) fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}
