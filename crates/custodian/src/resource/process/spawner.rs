//! The thread that forks children which ask for a parent-death signal.
//!
//! `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits, not the
//! process. A Tokio worker or blocking-pool thread may exit long before the process (the
//! blocking pool retires idle threads after a keep-alive), which would kill the child
//! early. This thread is started once, never returns, and lives as long as the process,
//! so the signal fires only when the owner process dies.
//!
//! Invariant: the thread never exits while the process runs, not even on a panic. A job
//! that panics would otherwise unwind the thread, and its exit would SIGKILL every child
//! it ever forked. So every job runs under `catch_unwind`: its caller gets an error, and
//! the thread takes the next job.

use std::any::Any;
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{Sender, channel, sync_channel};
use std::sync::{Mutex, OnceLock, PoisonError};

use tokio::process::{Child, Command};
use tokio::runtime::Handle;

type Job = Box<dyn FnOnce() + Send>;

static SPAWNER: OnceLock<Mutex<Sender<Job>>> = OnceLock::new();

fn sender() -> io::Result<Sender<Job>> {
    if let Some(s) = SPAWNER.get() {
        return Ok(s.lock().unwrap_or_else(PoisonError::into_inner).clone());
    }
    let (tx, rx) = channel::<Job>();
    std::thread::Builder::new()
        .name("custodian-spawner".into())
        .spawn(move || {
            // Ends only if every sender is gone, and the static one never is.
            for job in rx {
                // Jobs catch their own panics (see `run_on_thread`); this is the
                // backstop that keeps the thread, and so its children, alive.
                if catch_unwind(AssertUnwindSafe(job)).is_err() {
                    tracing::error!("a job panicked on the spawner thread; the thread goes on");
                }
            }
        })?;
    // A racing caller may have installed its own thread first; ours then exits at once
    // because `tx` is dropped (it has forked nothing, so its exit kills nothing).
    let s = SPAWNER.get_or_init(|| Mutex::new(tx));
    Ok(s.lock().unwrap_or_else(PoisonError::into_inner).clone())
}

/// Runs `f` on the spawner thread and returns its result. A panic in `f` is caught there
/// and returned as an error; the thread lives on. Blocks the caller until `f` is done.
pub(super) fn run_on_thread<T, F>(f: F) -> io::Result<T>
where
    F: FnOnce() -> io::Result<T> + Send + 'static,
    T: Send + 'static,
{
    let (tx, rx) = sync_channel(1);
    let job: Job = Box::new(move || {
        let r = catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|p| Err(panicked(&*p)));
        let _ = tx.send(r);
    });
    sender()?
        .send(job)
        .map_err(|_| io::Error::other("the spawner thread is gone"))?;
    rx.recv()
        .map_err(|_| io::Error::other("the spawner thread dropped a job"))?
}

fn panicked(payload: &(dyn Any + Send)) -> io::Error {
    let msg = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)");
    io::Error::other(format!("the spawn panicked on the spawner thread: {msg}"))
}

/// Spawns `cmd` from the spawner thread, inside `handle`'s runtime. Blocks the caller for
/// the fork, as `Command::spawn` does.
pub(super) fn spawn_on_thread(mut cmd: Command, handle: Handle) -> io::Result<Child> {
    run_on_thread(move || {
        let _rt = handle.enter();
        cmd.spawn()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn thread_id() -> std::thread::ThreadId {
        run_on_thread(|| Ok(std::thread::current().id())).unwrap()
    }

    #[test]
    fn a_job_that_panics_does_not_end_the_thread_or_kill_its_children() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let sup = crate::Supervisor::builder().start().unwrap();
            let mut child = sup
                .command("sleep")
                .arg("1000")
                .kill_on_parent_death(true)
                .spawn()
                .unwrap();
            // A job that panics outside any caller's `catch_unwind`.
            sender().unwrap().send(Box::new(|| panic!("boom"))).unwrap();
            // The thread takes the next job: a fork still works.
            let again = sup
                .command("true")
                .kill_on_parent_death(true)
                .status()
                .await
                .unwrap();
            assert!(again.success());
            // Had the thread exited, the kernel would have queued SIGKILL for the child
            // during that exit; give a delivered signal time to show.
            let until = Instant::now() + Duration::from_millis(200);
            while Instant::now() < until {
                assert!(child.try_wait().unwrap().is_none(), "the child was killed");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            drop(child);
            assert!(sup.shutdown().await.is_clean());
        });
    }

    #[test]
    fn a_spawn_that_panics_returns_an_error_to_its_caller() {
        let before = thread_id();
        let err = run_on_thread::<(), _>(|| panic!("boom")).unwrap_err();
        assert!(err.to_string().contains("boom"), "{err}");
        assert_eq!(thread_id(), before, "the spawner thread was replaced");
    }
}
