//! Retrying blocking clean-ups that failed transiently, and the fds kept in reserve for
//! them.
//!
//! A temp dir whose removal fails with `EMFILE` under a low fd limit must not be counted
//! as cleaned up and forgotten: it is listed as pending and tried again with exponential
//! backoff (10 ms doubling to 5 s) while the supervisor runs. When shutdown stops waiting
//! (`Inner::cut`: the grace deadline or a forced shutdown) each pending clean-up gets one
//! last attempt and, if that fails too, becomes a failure record.
//!
//! A process out of fds cannot open the directories a removal walks, so the supervisor
//! keeps [`RESERVED_FDS`] descriptors open and closes them for the length of a retry.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustix::io::Errno;
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::task_tracker::TaskTrackerToken;

use super::Records;
use super::clean_up::ReleasedInfo;
use super::records::lock;

/// Descriptors held in reserve for retries. A removal walk at its narrowest holds the
/// directory it was given, the level it is in, the one it opens below, and a listing.
pub(crate) const RESERVED_FDS: usize = 4;
const FIRST_DELAY: Duration = Duration::from_millis(10);
const MAX_DELAY: Duration = Duration::from_secs(5);

type Work = Box<dyn FnMut() -> io::Result<()> + Send + 'static>;

/// Whether another attempt may succeed: the process or the system ran out of something
/// that comes back, or the call was interrupted.
pub(crate) fn is_transient(e: &io::Error) -> bool {
    matches!(
        Errno::from_io_error(e),
        Some(Errno::MFILE | Errno::NFILE | Errno::NOMEM | Errno::AGAIN | Errno::INTR | Errno::BUSY)
    )
}

/// The error of a clean-up that panicked, so that `close()` can report it as
/// [`Error::CleanupPanicked`](crate::Error::CleanupPanicked).
#[derive(Debug)]
pub(crate) struct PanickedCleanup(pub(crate) String);

impl PanickedCleanup {
    fn error(p: Box<dyn std::any::Any + Send>) -> io::Error {
        io::Error::other(PanickedCleanup(crate::error::panic_message(p)))
    }
}

impl std::fmt::Display for PanickedCleanup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the clean-up panicked: {}", self.0)
    }
}

impl std::error::Error for PanickedCleanup {}

/// What retries share; held by the retry tasks instead of the supervisor itself, so a
/// failing clean-up never keeps the supervisor alive.
pub(crate) struct Retrier {
    pub(super) records: Arc<Records>,
    pub(super) cut: CancellationToken,
    pub(super) handle: Handle,
    reserve: Mutex<Vec<OwnedFd>>,
}

impl Retrier {
    pub(super) fn new(records: Arc<Records>, cut: CancellationToken, handle: Handle) -> Self {
        let r = Retrier {
            records,
            cut,
            handle,
            reserve: Mutex::new(Vec::with_capacity(RESERVED_FDS)),
        };
        r.refill();
        r
    }

    /// Runs a blocking clean-up once, on the calling (blocking) thread. A transient
    /// failure is handed to a retry task tracked by `token`; any other failure is
    /// recorded. Returns the attempt's outcome either way.
    ///
    /// `token` is released last, after the work and this handle: whoever waits on the
    /// tracker (a scope's end, shutdown, a test counting fds) must find everything the
    /// work held (the temp root's fds) already closed.
    pub(super) fn first_attempt(
        self: Arc<Self>,
        mut work: Work,
        info: ReleasedInfo,
        token: TaskTrackerToken,
    ) -> io::Result<()> {
        let attempt = std::panic::catch_unwind(std::panic::AssertUnwindSafe(&mut work));
        let result = attempt.unwrap_or_else(|p| Err(PanickedCleanup::error(p)));
        match &result {
            Ok(()) => {}
            Err(e) if is_transient(e) && !self.cut.is_cancelled() => {
                self.records.retry(&info, e, 1);
                self.retry_later(work, info, token);
                return result;
            }
            Err(e) => self.records.record_failure(&info, e),
        }
        drop(work);
        drop(self);
        drop(token);
        result
    }

    fn retry_later(self: Arc<Self>, work: Work, info: ReleasedInfo, token: TaskTrackerToken) {
        let handle = self.handle.clone();
        let job = RetryJob {
            work: Some(work),
            info,
            attempts: 1,
            retrier: self,
            done: false,
        };
        // If the runtime is shutting down the task is dropped unrun, and `RetryJob`'s
        // drop makes the last attempt inline.
        drop(handle.spawn(job.run(token)));
    }

    /// Closes the reserved fds for the length of `f`, then opens them again. One retry
    /// at a time: concurrent retries would race each other for the same few fds.
    fn with_reserve<T>(&self, f: impl FnOnce() -> T) -> T {
        let mut fds = lock(&self.reserve);
        fds.clear();
        let out = f();
        refill(&mut fds);
        out
    }

    fn refill(&self) {
        refill(&mut lock(&self.reserve));
    }
}

/// Opens reserve fds up to [`RESERVED_FDS`]; stops at the first failure (out of fds
/// ourselves: the next retry tries again).
fn refill(fds: &mut Vec<OwnedFd>) {
    while fds.len() < RESERVED_FDS {
        match rustix::fs::open(
            "/dev/null",
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        ) {
            Ok(fd) => fds.push(fd),
            Err(_) => break,
        }
    }
}

/// One clean-up being retried. Dropped unfinished (the runtime shut down), it makes one
/// last attempt inline, so the work is never silently lost.
struct RetryJob {
    work: Option<Work>,
    info: ReleasedInfo,
    attempts: u32,
    retrier: Arc<Retrier>,
    done: bool,
}

impl RetryJob {
    async fn run(mut self, token: TaskTrackerToken) {
        self.retry().await;
        // The work and the retrier before the token: see `Retrier::first_attempt`.
        drop(self);
        drop(token);
    }

    async fn retry(&mut self) {
        let mut delay = FIRST_DELAY;
        loop {
            let last = tokio::select! {
                biased;
                () = self.retrier.cut.cancelled() => true,
                () = tokio::time::sleep(delay) => false,
            };
            let Some(mut work) = self.work.take() else {
                return;
            };
            self.attempts = self.attempts.saturating_add(1);
            let retrier = self.retrier.clone();
            let joined = tokio::task::spawn_blocking(move || {
                let r = retrier.with_reserve(|| {
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(&mut work))
                });
                (work, r)
            })
            .await;
            let (work, result) = match joined {
                Ok((work, Ok(result))) => (work, result),
                Ok((_, Err(p))) => return self.end(Some(&PanickedCleanup::error(p))),
                Err(join) => {
                    let e = io::Error::other(format!("the retry task failed: {join}"));
                    return self.end(Some(&e));
                }
            };
            match result {
                Ok(()) => return self.end(None),
                Err(e) if is_transient(&e) && !last => {
                    self.retrier.records.retry(&self.info, &e, self.attempts);
                    self.work = Some(work);
                    delay = delay.saturating_mul(2).min(MAX_DELAY);
                }
                Err(e) => return self.end(Some(&e)),
            }
        }
    }

    fn end(&mut self, error: Option<&io::Error>) {
        self.work = None;
        self.done = true;
        self.retrier
            .records
            .end_retry(&self.info, self.attempts, error);
    }
}

impl Drop for RetryJob {
    fn drop(&mut self) {
        if let Some(mut work) = self.work.take() {
            self.attempts = self.attempts.saturating_add(1);
            let result = self.retrier.with_reserve(&mut work);
            self.end(result.as_ref().err());
        } else if !self.done {
            // Dropped mid-attempt: the attempt's outcome is lost with the runtime.
            let e = io::Error::other("the retry was abandoned: the runtime shut down");
            self.end(Some(&e));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_exhaustion_interruption_and_busy_are_transient() {
        for e in [
            Errno::MFILE,
            Errno::NFILE,
            Errno::NOMEM,
            Errno::AGAIN,
            Errno::INTR,
            Errno::BUSY,
        ] {
            assert!(is_transient(&e.into()), "{e:?}");
        }
        for e in [
            Errno::NOENT,
            Errno::ACCESS,
            Errno::IO,
            Errno::NOSPC,
            Errno::ROFS,
        ] {
            assert!(!is_transient(&e.into()), "{e:?}");
        }
        assert!(!is_transient(&io::Error::other("replaced")));
    }
}
