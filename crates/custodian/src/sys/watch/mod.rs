//! The watcher's OS side: a process forked from its owner that outlives it, and the
//! owner's link to it. What the watcher *does* (recover the owner's journal) is the
//! caller's closure (the `watcher` module, layer 7); this file only makes a forked process
//! safe to run it.
//!
//! Invariants of the forked child, set before the closure runs (`child`):
//! - only the forking thread exists in it: no lock another thread could have held at the
//!   fork may be taken. `tracing` gets a no-op default dispatcher for this thread (a
//!   thread-local store in tracing-core 0.1.36: no lock; events then never reach the
//!   owner's subscriber, its writer's lock, or its `EnvFilter`'s lock). That does not
//!   cover a callsite's first *registration*, which can take `tracing-core`'s dispatcher
//!   list lock: the watcher's sweep emits no event at all (`recovery::silence`). Nothing here
//!   reads `std::env` (its lock), touches stdout/stderr (their locks), or starts Tokio.
//!   Memory allocation is allowed: glibc's `fork` takes every malloc arena's lock
//!   before the fork and resets them in the child (`__malloc_fork_lock_parent`,
//!   `__malloc_fork_unlock_child`), so the child's heap is consistent (jemalloc and
//!   mimalloc do the same through `pthread_atfork`);
//! - every inherited signal disposition is reset to the default (a Tokio signal
//!   handler would write into an fd number that the child may have reused for a
//!   journal), HUP/INT/QUIT/TERM/PIPE and the terminal stops are ignored (they are
//!   meant for the owner's group, its terminal, or a unit's processes), and no signal
//!   is blocked: only SIGKILL ends it early;
//! - every inherited fd is closed at once (`close_range`) but the owner's pidfd and the
//!   child's end of the link: an inherited `flock` on the journal would keep the dead
//!   owner looking alive, an inherited listening socket would keep a port bound, an
//!   inherited pipe end would keep a reader from its EOF. 0, 1 and 2 are `/dev/null`, so
//!   that a stray write to "stderr" cannot land in a file opened later;
//! - it is in a session and process group of its own (`setsid`): a signal to the
//!   owner's group or its terminal's foreground group does not reach it; its working
//!   directory is `/` (the owner's would stay busy);
//! - it never returns into the owner's code: it ends with `_exit`, running no
//!   destructor of the owner's objects, no `atexit` handler; a panic in the closure is
//!   caught and becomes exit status 101.
//!
//! The link is an `AF_UNIX` `SOCK_SEQPACKET` pair: the owner writes [`DONE`] (its
//! shutdown released everything: exit without acting) and, for each child whose
//! death signal the watcher serves, a [`SERVE`] message with the child's identity (so
//! the watcher can stop it even when the journal file is gone) and a [`GONE`] message
//! once it reaped it, and [`LET_GO`] when the
//! supervisor is dropped without a shutdown (its emergency clean-up runs: the watcher
//! exits once the journal is gone); the child writes [`READY`] once set up. The owner's
//! death is seen on the owner's pidfd, taken before the fork (`pidfd_open(getpid())`);
//! its end of the link closing says nothing on its own (a dying process closes it just
//! before its pidfd turns readable).

mod setup;

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::io::Errno;
use rustix::process::{PidfdFlags, WaitId, WaitIdOptions};

/// Owner to watcher: everything is released, exit without acting.
const DONE: u8 = b'D';
/// Owner to watcher: `SERVE`, then a served child's pid (4 bytes), start time (8) and
/// pidfd inode (8, 0 for none), little-endian: one `SOCK_SEQPACKET` message.
const SERVE: u8 = b'S';
const SERVE_LEN: usize = 21;
/// Owner to watcher: `GONE`, then a served child's identity as in [`SERVE`]: the owner
/// reaped it, its pid may be reused from now on (the journal's `Gone` record).
const GONE: u8 = b'G';
/// Owner to watcher: the supervisor was dropped without a shutdown (its emergency
/// clean-up runs): exit once the journal is gone. Sent as the owner's end closes.
const LET_GO: u8 = b'L';
/// Watcher to owner: set up (fds closed, own session), watching.
const READY: u8 = b'R';
/// How long `start` waits for [`READY`].
const READY_WAIT: Duration = Duration::from_secs(5);
/// Once the owner let go without `DONE`: how often the child looks for the journal.
const LET_GO_POLL: Duration = Duration::from_millis(100);

/// The owner's side: the watcher's pid and pidfd (taken while it is our unreaped
/// child, so it names it), and the owner's end of the link.
#[derive(Debug)]
pub(crate) struct Link {
    pid: u32,
    pidfd: OwnedFd,
    sock: Mutex<Option<OwnedFd>>,
    told: AtomicBool,
    let_go: AtomicBool,
}

/// The child's side, handed to the closure.
#[derive(Debug)]
pub(crate) struct Watch {
    owner: OwnedFd,
    sock: OwnedFd,
}

/// Why [`Watch::wait`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The owner said `DONE`.
    Done,
    /// The owner let go (said `LET_GO`, its end closed) and the journal is gone.
    Released,
    /// The owner died without saying `DONE`; `let_go`: its end of the link was closed
    /// before (the supervisor was dropped without a shutdown).
    OwnerDied { let_go: bool },
}

/// What the owner told the watcher of a child whose death signal it serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Told {
    /// Spawned: the watcher serves it.
    Serve(Served),
    /// Reaped by the owner: no longer the watcher's to stop.
    Gone(Served),
}

/// A child whose death signal the watcher serves, as its owner told it: what recovery
/// needs to prove it is that process (`sys::orphans::Recorded`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Served {
    pub(crate) pid: u32,
    pub(crate) start: u64,
    pub(crate) pidfd_ino: Option<u64>,
}

impl Served {
    fn encode(&self, tag: u8) -> [u8; SERVE_LEN] {
        let mut m = [0u8; SERVE_LEN];
        m[0] = tag;
        m[1..5].copy_from_slice(&self.pid.to_le_bytes());
        m[5..13].copy_from_slice(&self.start.to_le_bytes());
        m[13..].copy_from_slice(&self.pidfd_ino.unwrap_or(0).to_le_bytes());
        m
    }

    fn decode(m: &[u8]) -> Option<Told> {
        if m.len() != SERVE_LEN {
            return None;
        }
        let ino = u64::from_le_bytes(m[13..].try_into().ok()?);
        let child = Served {
            pid: u32::from_le_bytes(m[1..5].try_into().ok()?),
            start: u64::from_le_bytes(m[5..13].try_into().ok()?),
            pidfd_ino: (ino != 0).then_some(ino),
        };
        match m[0] {
            SERVE => Some(Told::Serve(child)),
            GONE => Some(Told::Gone(child)),
            _ => None,
        }
    }
}

/// How a watcher ended, as far as its owner can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reaped {
    /// Still running.
    Running,
    /// Reaped here: its exit code, or the signal that killed it.
    Exited {
        code: Option<i32>,
        signal: Option<i32>,
    },
    /// Someone else reaped it (`ECHILD`): another waiter in this process.
    ByOther,
}

/// Forks the watcher; `body` runs in it once it is set up, and its return value is the
/// watcher's exit status. Returns when the watcher said it is ready.
pub(crate) fn spawn(body: impl FnOnce(Watch) -> i32) -> io::Result<Link> {
    let me = rustix::process::getpid();
    let owner = rustix::process::pidfd_open(me, PidfdFlags::empty())?;
    let (mine, theirs) = rustix::net::socketpair(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::SEQPACKET,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )?;
    // SAFETY: `fork` is sound to call; what makes the child sound is what it does
    // before `_exit`: `child` runs only fork-safe work (see the module header: no lock
    // another thread may hold, glibc's malloc reset by its fork handlers), never returns
    // into the caller and never runs the caller's destructors. Tested by
    // `tests/watcher_crash.rs` (a multi-threaded owner with a subscriber, SIGKILLed).
    #[allow(unsafe_code)]
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(io::Error::last_os_error()),
        0 => child(owner, theirs, body),
        pid => {
            drop((owner, theirs));
            let raw = rustix::process::Pid::from_raw(pid).ok_or(Errno::INVAL)?;
            let pid = raw.as_raw_pid().unsigned_abs();
            // Our unreaped child: its pid is its own until we reap it.
            let pidfd = match rustix::process::pidfd_open(raw, PidfdFlags::empty()) {
                Ok(fd) => fd,
                Err(e) => {
                    let _ = rustix::process::kill_process(raw, rustix::process::Signal::KILL);
                    let _ =
                        rustix::process::waitpid(Some(raw), rustix::process::WaitOptions::empty());
                    return Err(e.into());
                }
            };
            let link = Link {
                pid,
                pidfd,
                sock: Mutex::new(Some(mine)),
                told: AtomicBool::new(false),
                let_go: AtomicBool::new(false),
            };
            link.await_ready()?;
            Ok(link)
        }
    }
}

impl Link {
    /// The watcher's pid (valid while it is unreaped).
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// The watcher's pidfd: readable once it has exited.
    pub(crate) fn pidfd(&self) -> BorrowedFd<'_> {
        self.pidfd.as_fd()
    }

    fn await_ready(&self) -> io::Result<()> {
        let guard = self.sock.lock().unwrap_or_else(|e| e.into_inner());
        let sock = guard.as_ref().ok_or(Errno::BADF)?;
        let mut fds = [PollFd::new(sock, PollFlags::IN)];
        let wait = Timespec::try_from(READY_WAIT).map_err(|_| Errno::INVAL)?;
        let got = poll(&mut fds, Some(&wait))?;
        let mut byte = [0u8];
        let ready =
            got == 1 && matches!(rustix::io::read(sock, &mut byte), Ok(1)) && byte[0] == READY;
        drop(guard);
        if ready {
            return Ok(());
        }
        // It died or hangs in its set-up: do not leave it behind.
        let _ = rustix::process::pidfd_send_signal(&self.pidfd, rustix::process::Signal::KILL);
        let _ = rustix::process::waitid(WaitId::PidFd(self.pidfd.as_fd()), WaitIdOptions::EXITED);
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the watcher did not report ready",
        ))
    }

    /// Tells the watcher `DONE` and closes the owner's end. `false` if it was already
    /// told (or let go).
    pub(crate) fn tell_done(&self) -> bool {
        let Some(sock) = self.sock.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return false;
        };
        // Before the send: the watcher may exit before `send` returns.
        self.told.store(true, Ordering::SeqCst);
        // `NOSIGNAL`: a watcher that died must never SIGPIPE its owner (a host that
        // keeps the default action would die of it). A `SOCK_SEQPACKET` send raises
        // none today (the datagram path returns the error only); this makes it certain.
        // `DONTWAIT`: this runs on a runtime worker; `serve` keeps room for this message,
        // and a watcher that never reads it is SIGKILLed by `finish`'s bounded wait.
        let flags = rustix::net::SendFlags::NOSIGNAL | rustix::net::SendFlags::DONTWAIT;
        let _ = rustix::net::send(&sock, &[DONE], flags);
        true
    }

    /// The supervisor lets go without a shutdown (its last handle is dropped: the
    /// emergency clean-up runs, or a finished shutdown's `DONE` was cut short): says
    /// [`LET_GO`] and closes the owner's end. Said before the journal can be dropped, so
    /// that a death in between is not read as a journal removed under a live owner.
    /// Never blocks (`serve` keeps room for it), never raises SIGPIPE. Idempotent.
    pub(crate) fn let_go(&self) {
        let Some(sock) = self.sock.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return;
        };
        self.let_go.store(true, Ordering::SeqCst);
        let flags = rustix::net::SendFlags::NOSIGNAL | rustix::net::SendFlags::DONTWAIT;
        let _ = rustix::net::send(&sock, &[LET_GO], flags);
    }

    /// Whether it was told [`LET_GO`]: its exit is then expected once the journal is gone.
    pub(crate) fn was_let_go(&self) -> bool {
        self.let_go.load(Ordering::SeqCst)
    }

    /// Whether it still runs, asked of the kernel now (its pidfd is not readable) and not
    /// told `DONE`: unlike the stats' state, which changes only once the monitor task
    /// has run.
    pub(crate) fn watching(&self) -> bool {
        let mut fds = [PollFd::new(&self.pidfd, PollFlags::IN)];
        let now = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        !self.was_told() && matches!(poll(&mut fds, Some(&now)), Ok(0))
    }

    /// Tells the watcher about a child whose death signal it serves. Never blocks: a
    /// watcher that does not read (stopped, stuck, or gone) gets nothing, and `false`
    /// says so (the child is still in the journal, which the watcher sweeps).
    ///
    /// Sent only while the link is writable, which a unix socket is while at most a
    /// quarter of its send buffer is in flight (about 70 unread messages by default):
    /// the rest stays free for the one `DONE` or `LET_GO`, which must never be lost to
    /// a full link (tests/review_watch2_link_full.rs).
    pub(crate) fn serve(&self, child: Served) -> bool {
        self.tell(child.encode(SERVE))
    }

    /// Tells the watcher that a child it served was reaped (its pid may be reused from
    /// now on), as [`serve`](Self::serve) does; `false`: not told, and the watcher's
    /// journal-less sweep proves the child by its start time and pidfd inode alone.
    pub(crate) fn gone(&self, child: Served) -> bool {
        self.tell(child.encode(GONE))
    }

    fn tell(&self, msg: [u8; SERVE_LEN]) -> bool {
        let guard = self.sock.lock().unwrap_or_else(|e| e.into_inner());
        let Some(sock) = guard.as_ref() else {
            return false;
        };
        let mut fds = [PollFd::new(sock, PollFlags::OUT)];
        let now = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        let room = matches!(poll(&mut fds, Some(&now)), Ok(1))
            && fds[0].revents().contains(PollFlags::OUT);
        if !room {
            return false;
        }
        let flags = rustix::net::SendFlags::NOSIGNAL | rustix::net::SendFlags::DONTWAIT;
        matches!(rustix::net::send(sock, &msg, flags), Ok(SERVE_LEN))
    }

    /// Whether it was told `DONE`: its exit is then expected.
    pub(crate) fn was_told(&self) -> bool {
        self.told.load(Ordering::SeqCst)
    }

    /// SIGKILL through its pidfd (it cannot be a reused pid).
    pub(crate) fn kill(&self) {
        let _ = rustix::process::pidfd_send_signal(&self.pidfd, rustix::process::Signal::KILL);
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.let_go();
    }
}

/// Reaps the process behind `pidfd` (a child of ours) if it has exited.
pub(crate) fn try_reap(pidfd: BorrowedFd<'_>) -> Reaped {
    let opts = WaitIdOptions::EXITED | WaitIdOptions::NOHANG;
    match rustix::process::waitid(WaitId::PidFd(pidfd), opts) {
        Ok(Some(st)) => Reaped::Exited {
            code: st.exit_status(),
            signal: st.terminating_signal(),
        },
        Ok(None) => Reaped::Running,
        Err(_) => Reaped::ByOther,
    }
}

/// A duplicate of `fd`, close-on-exec.
pub(crate) fn dup(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    Ok(rustix::io::fcntl_dupfd_cloexec(fd, 3)?)
}

impl Watch {
    /// Waits for the owner's word or death. `journal_gone` is asked, every
    /// [`LET_GO_POLL`], once the owner let go without `DONE`; `told` is given each
    /// child the owner said the watcher serves, and each it reaped.
    pub(crate) fn wait(
        &self,
        journal_gone: impl Fn() -> bool,
        mut told: impl FnMut(Told),
    ) -> Verdict {
        let (mut linked, mut let_go) = (true, false);
        loop {
            let (owner_ready, sock_ready) = {
                let mut fds = [
                    PollFd::new(&self.owner, PollFlags::IN),
                    PollFd::new(&self.sock, PollFlags::IN),
                ];
                let n = if linked { 2 } else { 1 };
                let tick = Timespec::try_from(LET_GO_POLL).ok();
                let timeout = if linked { None } else { tick.as_ref() };
                match poll(&mut fds[..n], timeout) {
                    Ok(_) => {}
                    Err(Errno::INTR) => continue,
                    Err(_) => {
                        // Not expected (ENOMEM): do not spin.
                        std::thread::sleep(LET_GO_POLL);
                        continue;
                    }
                }
                (
                    !fds[0].revents().is_empty(),
                    linked && !fds[1].revents().is_empty(),
                )
            };
            if sock_ready {
                // One message per read (`SOCK_SEQPACKET`); a longer one would be cut.
                let mut msg = [0u8; SERVE_LEN + 1];
                match rustix::io::read(&self.sock, &mut msg) {
                    Ok(1) if msg[0] == DONE => return Verdict::Done,
                    Ok(1) if msg[0] == LET_GO => let_go = true,
                    Ok(SERVE_LEN) => {
                        if let Some(word) = Served::decode(&msg[..SERVE_LEN]) {
                            told(word);
                        }
                    }
                    Err(Errno::INTR | Errno::AGAIN) => {}
                    // EOF (or an error): the owner's end is closed.
                    Ok(0) | Err(_) => linked = false,
                    // Not a message this version sends: ignored.
                    Ok(_) => {}
                }
                // Every message first: the owner may have told of a child just before
                // it died.
                continue;
            }
            if owner_ready {
                return Verdict::OwnerDied { let_go };
            }
            if let_go && !linked && journal_gone() {
                return Verdict::Released;
            }
        }
    }
}

/// The forked child: set up (see the module header), then `body`, then `_exit`.
fn child(owner: OwnedFd, sock: OwnedFd, body: impl FnOnce(Watch) -> i32) -> ! {
    use setup::exit;
    std::mem::forget(tracing::dispatcher::set_default(&tracing::Dispatch::none()));
    setup::reset_signals();
    let Ok((owner, sock)) = setup::keep_only(owner, sock) else {
        exit(120)
    };
    let _ = rustix::process::setsid();
    // Holding the owner's working directory would keep its file system busy (a lazy
    // unmount) for as long as the watcher lives; every path it uses is absolute.
    let _ = rustix::process::chdir("/");
    let _ = rustix::thread::set_name(c"custodian-watch");
    if rustix::io::write(&sock, &[READY]).is_err() {
        exit(121);
    }
    let watch = Watch { owner, sock };
    let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(watch)));
    exit(code.unwrap_or(101))
}
