//! The thread that forks children which ask for a parent-death signal.
//!
//! `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits, not the
//! process. A Tokio worker or blocking-pool thread may exit long before the process (the
//! blocking pool retires idle threads after a keep-alive), which would kill the child
//! early. This thread is started once, never returns, and lives as long as the process,
//! so the signal fires only when the owner process dies.

use std::io;
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
                job();
            }
        })?;
    // A racing caller may have installed its own thread first; ours then exits at once
    // because `tx` is dropped.
    let s = SPAWNER.get_or_init(|| Mutex::new(tx));
    Ok(s.lock().unwrap_or_else(PoisonError::into_inner).clone())
}

/// Spawns `cmd` from the spawner thread, inside `handle`'s runtime. Blocks the caller for
/// the fork, as `Command::spawn` does.
pub(super) fn spawn_on_thread(mut cmd: Command, handle: Handle) -> io::Result<Child> {
    let (tx, rx) = sync_channel(1);
    let job: Job = Box::new(move || {
        let _rt = handle.enter();
        let _ = tx.send(cmd.spawn());
    });
    sender()?
        .send(job)
        .map_err(|_| io::Error::other("the spawner thread is gone"))?;
    rx.recv()
        .map_err(|_| io::Error::other("the spawner thread is gone"))?
}
