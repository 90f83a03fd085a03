//! Retrying an operation that failed for a transient reason (a busy lock, `EAGAIN`,
//! `EINTR`, `ETXTBSY`, `EBUSY`): bounded attempts, exponential backoff with full jitter,
//! stopped by a cancellation token, and a final error that keeps every attempt's cause.
//!
//! It sits beside the resources (layer 6) rather than in the vocabulary: it is written
//! for the resources' errors ([`Error`]), sleeps on Tokio's timer and watches a scope's
//! token, and nothing below the resources retries through it (`inner/retry.rs` is the
//! supervisor's own retry of clean-ups, with different rules).

use std::fmt;
use std::future::Future;
use std::io;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::error::Error;
use crate::resource::atomic::FsyncFailed;

/// A retry policy: up to `attempts` tries, waiting a random time in `[0, delay]` between
/// them, where `delay` starts at `base` and doubles up to `max`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
/// use std::time::Duration;
/// let sup = tokio_custodian::Supervisor::builder().start()?;
/// let path = sup.temp_root().join("busy.lock");
/// let held = sup.file_lock(&path).acquire().await?;
/// let err = tokio_custodian::Retry::new()
///     .attempts(3)
///     .base_delay(Duration::from_millis(1))
///     .run(|_| sup.file_lock(&path).try_acquire())
///     .await
///     .unwrap_err();
/// assert_eq!(err.attempts().len(), 3);
/// assert_eq!(err.gave_up(), tokio_custodian::GaveUp::Exhausted);
/// # drop(held); sup.shutdown().await; Ok(()) }
/// ```
#[derive(Clone, Debug)]
#[must_use = "a Retry does nothing until `run` is called"]
pub struct Retry {
    attempts: u32,
    base: Duration,
    max: Duration,
    cancel: Option<CancellationToken>,
}

impl Default for Retry {
    fn default() -> Self {
        Self::new()
    }
}

impl Retry {
    /// 5 attempts, 10 ms base delay, 1 s maximum delay, no cancellation token.
    ///
    /// ```
    /// let r = tokio_custodian::Retry::new(); // 5 attempts, 10 ms base, 1 s max
    /// assert_eq!(format!("{r:?}").contains("attempts: 5"), true);
    /// ```
    pub fn new() -> Self {
        Retry {
            attempts: 5,
            base: Duration::from_millis(10),
            max: Duration::from_secs(1),
            cancel: None,
        }
    }

    /// The number of attempts in all (at least 1).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// use std::time::Duration;
    /// use tokio_custodian::{GaveUp, Retry};
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let path = sup.temp_root().join("busy.lock");
    /// let _held = sup.file_lock(&path).acquire().await?;
    /// let err = Retry::new().attempts(2).base_delay(Duration::ZERO)
    ///     .run(|_| sup.file_lock(&path).try_acquire()).await.unwrap_err();
    /// assert_eq!(err.attempts().len(), 2);
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn attempts(mut self, n: u32) -> Self {
        self.attempts = n.max(1);
        self
    }

    /// The first delay's upper bound.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// use std::time::Duration;
    /// use tokio_custodian::{GaveUp, Retry};
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let path = sup.temp_root().join("busy.lock");
    /// let _held = sup.file_lock(&path).acquire().await?;
    /// let t = std::time::Instant::now();
    /// let _ = Retry::new().attempts(3).base_delay(Duration::from_millis(1)).max_delay(Duration::from_millis(2))
    ///     .run(|_| sup.file_lock(&path).try_acquire()).await;
    /// assert!(t.elapsed() < Duration::from_secs(1)); // waits of at most 1 ms, then 2 ms
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn base_delay(mut self, d: Duration) -> Self {
        self.base = d;
        self
    }

    /// The largest delay's upper bound.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// use std::time::Duration;
    /// use tokio_custodian::{GaveUp, Retry};
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let path = sup.temp_root().join("busy.lock");
    /// let _held = sup.file_lock(&path).acquire().await?;
    /// let err = Retry::new().attempts(4).base_delay(Duration::from_millis(1)).max_delay(Duration::from_millis(1))
    ///     .run(|_| sup.file_lock(&path).try_acquire()).await.unwrap_err();
    /// assert_eq!(err.gave_up(), GaveUp::Exhausted);
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn max_delay(mut self, d: Duration) -> Self {
        self.max = d;
        self
    }

    /// Stops waiting (and gives up with [`GaveUp::Cancelled`]) when `token` is cancelled,
    /// for example a scope's [`token`](crate::Scope::token).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// use std::time::Duration;
    /// use tokio_custodian::{GaveUp, Retry};
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let path = sup.temp_root().join("busy.lock");
    /// let _held = sup.file_lock(&path).acquire().await?;
    /// let token = sup.root().token();
    /// token.cancel();
    /// let err = Retry::new().cancel_on(token)
    ///     .run(|_| sup.file_lock(&path).try_acquire()).await.unwrap_err();
    /// assert_eq!(err.gave_up(), GaveUp::Cancelled);
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn cancel_on(mut self, token: CancellationToken) -> Self {
        self.cancel = Some(token);
        self
    }

    /// Whether `err` is worth another attempt: `WouldBlock` (`EAGAIN`, a busy lock),
    /// `Interrupted` (`EINTR`), `ResourceBusy` (`EBUSY`) or `ExecutableFileBusy`
    /// (`ETXTBSY`), and never a failed `fsync` whatever its kind.
    ///
    /// ```
    /// let busy = tokio_custodian::Error::Io {
    ///     op: tokio_custodian::Operation::Lock,
    ///     path: "x".into(),
    ///     source: std::io::ErrorKind::WouldBlock.into(),
    /// };
    /// assert!(tokio_custodian::Retry::is_transient(&busy));
    /// ```
    pub fn is_transient(err: &Error) -> bool {
        let source = match err {
            Error::Io { source, .. } | Error::ResourceIo { source, .. } => source,
            _ => return false,
        };
        !FsyncFailed::is(source)
            && matches!(
                source.kind(),
                io::ErrorKind::WouldBlock
                    | io::ErrorKind::Interrupted
                    | io::ErrorKind::ResourceBusy
                    | io::ErrorKind::ExecutableFileBusy
            )
    }

    /// Runs `op` (given the attempt number, from 0) until it succeeds, fails with an
    /// error that is not [transient](Self::is_transient), or the attempts run out.
    ///
    /// # Errors
    ///
    /// [`RetryError`] with every attempt's error, oldest first, and why it gave up.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe if `op`'s futures are: dropping it drops the attempt in flight or
    /// the wait.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// use std::time::Duration;
    /// use tokio_custodian::{GaveUp, Retry};
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let path = sup.temp_root().join("busy.lock");
    /// let _held = sup.file_lock(&path).acquire().await?;
    /// drop(_held);
    /// // Attempt 0 finds the lock free.
    /// let lock = Retry::new().run(|attempt| { assert_eq!(attempt, 0); sup.file_lock(&path).try_acquire() }).await.map_err(|e| e.into_last())?;
    /// # drop(lock); sup.shutdown().await; Ok(()) }
    /// ```
    pub async fn run<T, F, Fut>(&self, mut op: F) -> Result<T, RetryError>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let mut errors = Vec::new();
        let mut delay = self.base;
        for n in 0..self.attempts {
            let err = match op(n).await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let transient = Self::is_transient(&err);
            errors.push(err);
            if !transient {
                return Err(RetryError::new(errors, GaveUp::NotTransient));
            }
            if n + 1 == self.attempts {
                break;
            }
            if !sleep_or_cancel(jittered(delay), self.cancel.as_ref()).await {
                return Err(RetryError::new(errors, GaveUp::Cancelled));
            }
            delay = delay.saturating_mul(2).min(self.max);
        }
        Err(RetryError::new(errors, GaveUp::Exhausted))
    }
}

/// Why a [`Retry`] gave up.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
/// use std::time::Duration;
/// use tokio_custodian::{GaveUp, Retry};
/// let sup = tokio_custodian::Supervisor::builder().start()?;
/// let path = sup.temp_root().join("busy.lock");
/// let _held = sup.file_lock(&path).acquire().await?;
/// // Not transient: given up at once.
/// let err = Retry::new().run(|_| sup.open("/no/such/file")).await.unwrap_err();
/// assert_eq!((err.gave_up(), err.attempts().len()), (GaveUp::NotTransient, 1));
/// # sup.shutdown().await; Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GaveUp {
    /// The last error was not transient.
    NotTransient,
    /// Every attempt failed transiently.
    Exhausted,
    /// The cancellation token fired while waiting.
    Cancelled,
}

/// The final error of a [`Retry`]: every attempt's error, oldest first.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
/// use std::time::Duration;
/// use tokio_custodian::{GaveUp, Retry};
/// let sup = tokio_custodian::Supervisor::builder().start()?;
/// let path = sup.temp_root().join("busy.lock");
/// let _held = sup.file_lock(&path).acquire().await?;
/// let err: tokio_custodian::RetryError = Retry::new().attempts(2).base_delay(Duration::ZERO)
///     .run(|_| sup.file_lock(&path).try_acquire()).await.unwrap_err();
/// assert!(err.to_string().contains("2 attempt"), "{err}");
/// # sup.shutdown().await; Ok(()) }
/// ```
#[derive(Debug)]
pub struct RetryError {
    attempts: Vec<Error>,
    gave_up: GaveUp,
}

impl RetryError {
    fn new(attempts: Vec<Error>, gave_up: GaveUp) -> Self {
        RetryError { attempts, gave_up }
    }

    /// Every attempt's error, oldest first (never empty).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// use std::time::Duration;
    /// use tokio_custodian::{GaveUp, Retry};
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let path = sup.temp_root().join("busy.lock");
    /// let _held = sup.file_lock(&path).acquire().await?;
    /// let err = Retry::new().attempts(3).base_delay(Duration::ZERO)
    ///     .run(|_| sup.file_lock(&path).try_acquire()).await.unwrap_err();
    /// assert!(err.attempts().iter().all(|e| e.io_kind() == Some(std::io::ErrorKind::WouldBlock)));
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn attempts(&self) -> &[Error] {
        &self.attempts
    }

    /// Why it gave up.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// use std::time::Duration;
    /// use tokio_custodian::{GaveUp, Retry};
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let path = sup.temp_root().join("busy.lock");
    /// let _held = sup.file_lock(&path).acquire().await?;
    /// let err = Retry::new().attempts(1).run(|_| sup.file_lock(&path).try_acquire()).await.unwrap_err();
    /// assert_eq!(err.gave_up(), GaveUp::Exhausted);
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn gave_up(&self) -> GaveUp {
        self.gave_up
    }

    /// The last attempt's error.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
    /// use std::time::Duration;
    /// use tokio_custodian::{GaveUp, Retry};
    /// let sup = tokio_custodian::Supervisor::builder().start()?;
    /// let path = sup.temp_root().join("busy.lock");
    /// let _held = sup.file_lock(&path).acquire().await?;
    /// let err = Retry::new().attempts(1).run(|_| sup.file_lock(&path).try_acquire()).await.unwrap_err();
    /// let last: tokio_custodian::Error = err.into_last();
    /// assert_eq!(last.path(), Some(path.as_path()));
    /// # sup.shutdown().await; Ok(()) }
    /// ```
    pub fn into_last(mut self) -> Error {
        self.attempts
            .pop()
            .expect("a RetryError holds at least one attempt")
    }
}

impl fmt::Display for RetryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let why = match self.gave_up {
            GaveUp::NotTransient => "not transient",
            GaveUp::Exhausted => "attempts exhausted",
            GaveUp::Cancelled => "cancelled",
        };
        write!(
            f,
            "gave up after {} attempt(s) ({why})",
            self.attempts.len()
        )?;
        for (i, e) in self.attempts.iter().enumerate() {
            write!(f, "; #{}: {e}", i + 1)?;
        }
        Ok(())
    }
}

impl std::error::Error for RetryError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.attempts.last().map(|e| e as _)
    }
}

/// A random duration in `[0, d]` ("full jitter": contenders spread out). Integer
/// arithmetic, so that no `Duration` can overflow (a delay beyond `u64::MAX` ns, 584
/// years, is capped there).
pub(crate) fn jittered(d: Duration) -> Duration {
    let n = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    let mut b = [0u8; 8];
    // Without randomness, wait the whole delay: still bounded, only less spread.
    if rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty()).is_err() {
        return Duration::from_nanos(n);
    }
    let r = u128::from(u64::from_ne_bytes(b));
    // n * r / 2^64 <= n: fits in a u64.
    Duration::from_nanos(((u128::from(n) * r) >> 64) as u64)
}

/// Sleeps `d`; `false` if `cancel` fired first.
pub(crate) async fn sleep_or_cancel(d: Duration, cancel: Option<&CancellationToken>) -> bool {
    match cancel {
        Some(t) => tokio::select! {
            () = tokio::time::sleep(d) => true,
            () = t.cancelled() => false,
        },
        None => {
            tokio::time::sleep(d).await;
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_the_delay_and_saturates() {
        for d in [Duration::ZERO, Duration::from_millis(7), Duration::MAX] {
            for _ in 0..100 {
                assert!(jittered(d) <= d);
            }
        }
    }
}
