//! cgroup v2 primitives: the supervisor's own cgroup, one cgroup per managed child,
//! `cgroup.kill`, `cgroup.events`, removal. Everything is relative to the directory fds
//! of the process's own cgroup and of the supervisor's, opened when the supervisor's
//! cgroup was created; a child's cgroup is checked by inode each time it is used.
//!
//! Layout: `<this process's cgroup>/custodian-<pid>-<start>-<pidns>-<64 random bits>/child-<n>`
//! (`<start>`: the process's start time, `/proc/PID/stat` field 22; `<pidns>`: the inode
//! of `/proc/self/ns/pid`).
//!
//! Invariants (the proof that a cgroup is ours before it is killed or removed):
//! - every cgroup touched was created here, with `mkdirat` relative to its parent's fd,
//!   under a name made here, and its directory's inode (unique for the boot on cgroupfs)
//!   recorded from the fd opened right after;
//! - `cgroup.kill` and `cgroup.events` are opened relative to the child's directory,
//!   itself opened by name relative to the supervisor's fd (no symlink followed) and
//!   checked to be the recorded inode: a cgroup that is gone makes the open fail, one
//!   that took its name fails the check; neither is ever written to;
//! - removal checks the name inside the parent's fd is still the recorded inode
//!   (`statat`, no symlink followed), then `unlinkat(AT_REMOVEDIR)` relative to the
//!   parent's fd; cgroupfs refuses to remove a populated cgroup (`EBUSY`);
//! - a child's cgroup keeps no fd (a live child costs the fd budget its pidfd only); the
//!   supervisor's fds are closed once it is removed (a guard forgotten with `mem::forget`
//!   keeps none).

pub(crate) mod discover;
mod limits;
mod remove;

pub(crate) use limits::{EnableError, LimitWrite};

use remove::remove_checked;
#[allow(unused_imports)] // Until the crash journal records cgroups.
pub(crate) use remove::{
    Intended, Recorded, kill_recorded, procs_below, recorded_dir, remove_intended,
};

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;

use super::FileId;
use super::remove::open_dir_nofollow;

/// A supervisor's cgroup is named `custodian-<its pid>-<its start time>-<its pid
/// namespace>-<64 random bits in hex>` (the namespace: the inode of `/proc/self/ns/pid`,
/// 0 where there is none). The start time ties the name to one process, not only to a
/// pid: a journal that names a live supervisor's pid with another start time (the owner
/// it records is then "dead") cannot lead to that supervisor's cgroup
/// (tests/review_cg4_forged_cgroup.rs). The namespace ties the pid and start time to the
/// namespace they mean something in: a journal naming a live supervisor of another pid
/// namespace by its pid there and its start time (its owner then "dead" here) cannot lead
/// to its cgroup (tests/review_final4_cgroup_other_pidns.rs). Versions before them wrote
/// `custodian-<pid>-<random>`, still recognised.
const NAME_PREFIX: &str = "custodian-";
const NAME_RANDOM_BYTES: usize = 8;

/// Whether `name` is the name of a supervisor cgroup created by the process `pid` that
/// started at `start` in the pid namespace `ns` (the shape [`SupervisorCgroup::create`]
/// gives), or by a version that named neither (`custodian-<pid>-<random>`) and the pid
/// `pid`.
pub(crate) fn is_supervisor_name_of(name: &str, pid: u32, start: u64, ns: u64) -> bool {
    supervisor_name_owner(name).is_some_and(|(p, s)| p == pid && s.is_none_or(|s| s == (start, ns)))
}

/// The creator's pid and, if named, its start time and pid namespace, of a supervisor
/// cgroup's name; `None` if `name` is not one.
pub(crate) fn supervisor_name_owner(name: &str) -> Option<(u32, Option<(u64, u64)>)> {
    let rest = name.strip_prefix(NAME_PREFIX)?;
    let (owner, random) = rest.rsplit_once('-')?;
    let shaped = random.len() == 2 * NAME_RANDOM_BYTES
        && random
            .bytes()
            .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
    if !shaped {
        return None;
    }
    // No sign, no leading zero: one spelling per number.
    fn number<T: std::str::FromStr>(n: &str) -> Option<T> {
        let one_spelling = !n.is_empty()
            && n.bytes().all(|c| c.is_ascii_digit())
            && !(n.len() > 1 && n.starts_with('0'));
        one_spelling.then(|| n.parse().ok())?
    }
    let mut f = owner.split('-');
    match (f.next(), f.next(), f.next(), f.next()) {
        (Some(pid), Some(start), Some(ns), None) => {
            Some((number(pid)?, Some((number(start)?, number(ns)?))))
        }
        (Some(pid), None, None, None) => Some((number(pid)?, None)),
        _ => None,
    }
}

/// This process's pid namespace as a supervisor cgroup's name gives it (0: none).
pub(crate) fn own_pid_ns() -> u64 {
    super::procfs::pid_ns().map_or(0, |id| id.ino)
}

/// The cgroup the supervisor creates below its own and owns.
#[derive(Debug)]
pub(crate) struct SupervisorCgroup {
    path: PathBuf,
    name: String,
    /// The process's own cgroup (where this one was created) and this one; closed once
    /// it is removed, so that a guard kept past it keeps no fd.
    fds: Mutex<Option<Fds>>,
    id: FileId,
    next: AtomicU64,
}

#[derive(Debug)]
struct Fds {
    parent: OwnedFd,
    dir: OwnedFd,
}

/// Locks a cgroup's fds (`None` once removed).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Each transition is one assignment: a panic cannot leave it half-made.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SupervisorCgroup {
    /// Creates `<own>/custodian-<pid>-<start>-<pidns>-<random>` (mode 0755, as cgroupfs
    /// wants) and opens it. `own` is this process's cgroup directory. `intent` is given
    /// the path right before the `mkdir` (the crash journal records it there: an owner
    /// killed between the two leaves no cgroup that no record names); its error fails the
    /// creation.
    pub(crate) fn create(
        own: &Path,
        intent: impl FnOnce(&Path) -> io::Result<()>,
    ) -> io::Result<Self> {
        let parent = rustix::fs::open(
            own,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let name = format!(
            "{NAME_PREFIX}{}-{}-{}-{}",
            std::process::id(),
            super::procfs::self_start()?,
            own_pid_ns(),
            super::create::random_hex(NAME_RANDOM_BYTES)?
        );
        intent(&own.join(&name))?;
        rustix::fs::mkdirat(&parent, name.as_str(), Mode::from_raw_mode(0o755))?;
        let opened = open_dir_nofollow(&parent, name.as_str())
            .map_err(io::Error::from)
            .and_then(|dir| Ok((FileId::of_fd(&dir)?, dir)));
        let (id, dir) = opened.inspect_err(|_| {
            let _ = rustix::fs::unlinkat(&parent, name.as_str(), AtFlags::REMOVEDIR);
        })?;
        Ok(SupervisorCgroup {
            path: own.join(&name),
            name,
            fds: Mutex::new(Some(Fds { parent, dir })),
            id,
            next: AtomicU64::new(1),
        })
    }

    /// Its path, as created.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Its directory's device and inode, as created (what the crash journal records
    /// with the path, so that recovery acts on proof).
    #[allow(dead_code)] // Until the journal records cgroups.
    pub(crate) fn id(&self) -> FileId {
        self.id
    }

    /// Creates the next child's cgroup with `limits` written into it (their controllers
    /// enabled first: [`enable`](Self::enable)); returns it and its `cgroup.procs` opened
    /// for writing (what a spawned child writes `0` to, to enter it).
    pub(crate) fn child(
        self: &Arc<Self>,
        limits: &[LimitWrite],
    ) -> io::Result<(ChildCgroup, OwnedFd)> {
        // Uniqueness only.
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let name = format!("child-{n}");
        let (id, dir) = {
            let fds = lock(&self.fds);
            let sup = &fds.as_ref().ok_or(Errno::NOENT)?.dir;
            rustix::fs::mkdirat(sup, name.as_str(), Mode::from_raw_mode(0o755))?;
            let opened = open_dir_nofollow(sup, name.as_str())
                .map_err(io::Error::from)
                .and_then(|dir| Ok((FileId::of_fd(&dir)?, dir)));
            // Before anything can enter it: the child never runs outside its limits.
            let limited = opened.and_then(|(id, dir)| {
                limits::write_limits(&dir, limits)?;
                Ok((id, dir))
            });
            limited.inspect_err(|_| {
                let _ = rustix::fs::unlinkat(sup, name.as_str(), AtFlags::REMOVEDIR);
            })?
        };
        let procs = rustix::fs::openat(
            &dir,
            "cgroup.procs",
            OFlags::WRONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::empty(),
        );
        let child = ChildCgroup {
            sup: self.clone(),
            name,
            id,
            removed: AtomicBool::new(false),
            killed: AtomicBool::new(false),
            emptied: AtomicBool::new(false),
            memory: limits.iter().any(|l| l.controller == "memory"),
            oom_kills: AtomicU64::new(0),
        };
        // Dropped on error: the child's cgroup is removed again.
        Ok((child, procs?))
    }

    /// Kills what is left in it, waits at most [`EMERGENCY_WAIT`] for `populated 0`, and
    /// removes it if its name still is the cgroup created (once; later calls do
    /// nothing). For the end of the supervisor, once every child is released: what is
    /// left is what escaped a child's cgroup into this one (only a member or root can
    /// move a process here), proven ours by the fd opened at creation. Fails with
    /// `EBUSY` while something is left in it.
    pub(crate) fn remove(&self) -> io::Result<()> {
        self.kill_escaped()?;
        let mut fds = lock(&self.fds);
        let Some(f) = fds.as_ref() else {
            return Ok(());
        };
        if remove_checked(&f.parent, &self.name, self.id)? {
            *fds = None;
        }
        Ok(())
    }

    /// `cgroup.kill` if it is populated, through its directory's fd (not its name), then
    /// the bounded wait for `populated 0`; nothing (one read) when it is empty.
    fn kill_escaped(&self) -> io::Result<()> {
        let events = {
            let fds = lock(&self.fds);
            let Some(f) = fds.as_ref() else {
                return Ok(());
            };
            let at = |file: &str, flags: OFlags| {
                let flags = flags | OFlags::CLOEXEC | OFlags::NOFOLLOW;
                rustix::fs::openat(&f.dir, file, flags, Mode::empty())
            };
            let events = at("cgroup.events", OFlags::RDONLY)?;
            if !ChildCgroup::populated_at(&events)? {
                return Ok(());
            }
            rustix::io::write(at("cgroup.kill", OFlags::WRONLY)?, b"1")?;
            events
        };
        tracing::warn!(cgroup = %self.path.display(), "processes escaped into the supervisor's cgroup: killed");
        let until = Instant::now().checked_add(EMERGENCY_WAIT);
        while ChildCgroup::populated_at(&events)? {
            if until.is_none_or(|u| Instant::now() >= u) {
                return Err(still_populated());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }

    /// Proves the tier works before it is chosen: a forked process enters a fresh child
    /// cgroup from this process's cgroup (the delegation rules), `cgroup.kill` is there
    /// and takes a write, and the cgroup is removed. Costs one fork and no exec.
    pub(crate) fn probe(self: &Arc<Self>) -> Result<(), ProbeFailure> {
        let (child, procs) = self.child(&[]).map_err(ProbeFailure::Create)?;
        // The success of the hook, told apart from any error of the write.
        const ENTERED: Errno = Errno::CANCELED;
        let mut cmd = std::process::Command::new("/proc/self/exe");
        // SAFETY: the hook runs between fork and exec and makes one raw `write` system
        // call on an fd it owns, then builds an `io::Error` from an errno; neither
        // allocates nor takes a lock (async-signal-safe). Covered by the unit test
        // `probe_moves_a_forked_process_and_cleans_up` and tests/containment_*.rs.
        #[allow(unsafe_code)]
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
                rustix::io::write(&procs, b"0")?;
                Err(ENTERED.into())
            });
        }
        // std reaps the forked process before `spawn` returns the hook's error.
        let entered = match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(ENTERED.raw_os_error()) => Ok(()),
            Err(e) => Err(ProbeFailure::Enter(e)),
            Ok(mut c) => {
                let _ = c.kill();
                let _ = c.wait();
                Err(ProbeFailure::Enter(io::Error::other("the probe ran")))
            }
        };
        let killed = entered.and_then(|()| child.kill().map_err(ProbeFailure::Kill));
        let removed = child.remove().map_err(ProbeFailure::Create);
        killed.and(removed)
    }
}

impl Drop for SupervisorCgroup {
    /// One read and one `rmdir` (constant work) unless something escaped into it (then
    /// its kill and a wait of at most [`EMERGENCY_WAIT`]); a failure is harmless here.
    fn drop(&mut self) {
        let _ = self.remove();
    }
}

/// Why a probe failed.
#[derive(Debug)]
pub(crate) enum ProbeFailure {
    /// A child cgroup could not be created, opened or removed.
    Create(io::Error),
    /// A forked process could not enter it.
    Enter(io::Error),
    /// `cgroup.kill` is missing (Linux < 5.14) or refused a write.
    Kill(io::Error),
}

/// One managed child's cgroup.
#[derive(Debug)]
pub(crate) struct ChildCgroup {
    /// Holds the supervisor's cgroup (and its fd) as long as a child's exists.
    sup: Arc<SupervisorCgroup>,
    /// Its name in the supervisor's cgroup: each use opens it relative to the
    /// supervisor's fd and checks the inode.
    name: String,
    id: FileId,
    removed: AtomicBool,
    /// Set once a `cgroup.kill` write succeeded.
    killed: AtomicBool,
    /// Set once `populated 0` was read: final, since only a member can fork into it and
    /// nothing here moves a process in after the spawn.
    emptied: AtomicBool,
    /// Whether a memory limit was set (then `memory.events` exists and is read).
    memory: bool,
    /// The last `oom_kill` count read from `memory.events` (kept past the removal).
    oom_kills: AtomicU64,
}

/// How long the emergency path waits for a killed cgroup to empty.
pub(crate) const EMERGENCY_WAIT: Duration = Duration::from_millis(200);

impl ChildCgroup {
    /// Its path, as created.
    pub(crate) fn path(&self) -> PathBuf {
        self.sup.path.join(&self.name)
    }

    /// Its directory's device and inode, as created (what the crash journal records
    /// with the path, so that recovery acts on proof).
    #[allow(dead_code)] // Until the journal records cgroups.
    pub(crate) fn id(&self) -> FileId {
        self.id
    }

    /// Opens one of its interface files, once proven ours: not removed, and its name
    /// still the directory created (see the module's invariants).
    fn open(&self, file: &str, flags: OFlags) -> io::Result<OwnedFd> {
        // Acquire: pairs with the release store of `remove`.
        if self.removed.load(Ordering::Acquire) {
            return Err(Errno::NOENT.into());
        }
        let dir = {
            let fds = lock(&self.sup.fds);
            let sup = fds.as_ref().ok_or(Errno::NOENT)?;
            open_dir_nofollow(&sup.dir, self.name.as_str())?
        };
        if FileId::of_fd(&dir)? != self.id {
            return Err(io::Error::other(
                "the cgroup's name is not the cgroup created",
            ));
        }
        Ok(rustix::fs::openat(
            &dir,
            file,
            flags | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::empty(),
        )?)
    }

    /// `cgroup.kill`: SIGKILL to every process in it, atomically, whatever their session,
    /// group or environment. Nothing once removed.
    pub(crate) fn kill(&self) -> io::Result<()> {
        if self.removed.load(Ordering::Acquire) {
            return Ok(());
        }
        let fd = self.open("cgroup.kill", OFlags::WRONLY)?;
        rustix::io::write(&fd, b"1")?;
        // Relaxed: a hint that saves a second write; nothing is published through it.
        self.killed.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// `cgroup.kill` unless the cgroup is empty (a read instead of a write when the
    /// child left nothing behind, the common case).
    pub(crate) fn kill_if_populated(&self) -> io::Result<()> {
        if self.populated()? {
            self.kill()
        } else {
            Ok(())
        }
    }

    /// Whether a `cgroup.kill` write succeeded.
    pub(crate) fn was_killed(&self) -> bool {
        self.killed.load(Ordering::Relaxed)
    }

    /// `cgroup.events` opened for reading: its `populated` line, and `POLLPRI` when it
    /// changes.
    pub(crate) fn events(&self) -> io::Result<OwnedFd> {
        self.open("cgroup.events", OFlags::RDONLY)
    }

    /// Whether any process is left in it (`populated 1`), read from its own
    /// `cgroup.events` fd (each read refreshes what `POLLPRI` compares against).
    pub(crate) fn populated_at(events: impl AsFd) -> io::Result<bool> {
        let mut buf = [0u8; 128];
        let n = rustix::io::pread(&events, &mut buf, 0)?;
        let text = std::str::from_utf8(&buf[..n]).map_err(io::Error::other)?;
        text.lines()
            .find_map(|l| l.strip_prefix("populated "))
            .map(|v| v.trim() != "0")
            .ok_or_else(|| io::Error::other("cgroup.events has no populated line"))
    }

    /// Whether any process is left in it. A removed cgroup is empty.
    pub(crate) fn populated(&self) -> io::Result<bool> {
        // Relaxed: a hint that saves a read; the emptiness it records is final.
        if self.emptied.load(Ordering::Relaxed) {
            return Ok(false);
        }
        match self.events() {
            Ok(fd) => {
                let populated = Self::populated_at(fd)?;
                if !populated {
                    self.emptied.store(true, Ordering::Relaxed);
                }
                Ok(populated)
            }
            Err(e) if self.removed.load(Ordering::Acquire) => {
                drop(e);
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Waits on this thread, at most `bound`, for `populated 0` (the emergency path, with
    /// no runtime: every millisecond).
    pub(crate) fn wait_empty_blocking(&self, bound: Duration) -> io::Result<()> {
        let until = Instant::now().checked_add(bound);
        while self.populated()? {
            if until.is_none_or(|u| Instant::now() >= u) {
                return Err(still_populated());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }

    /// Removes it (once; later calls do nothing), if its name still is the cgroup
    /// created. `EBUSY` while a process is left in it.
    pub(crate) fn remove(&self) -> io::Result<()> {
        if self.is_removed() {
            return Ok(());
        }
        if self.memory {
            // The last chance to read what the OOM killer did: gone with the cgroup.
            self.refresh_oom_kills();
            let n = self.oom_kills.load(Ordering::Relaxed);
            if n > 0 {
                tracing::warn!(cgroup = %self.path().display(), oom_kills = n, "the OOM killer killed in a child's cgroup");
            }
        }
        let sup = lock(&self.sup.fds);
        // The supervisor's cgroup cannot have been removed with this one in it; if its
        // fds are gone, so is this cgroup.
        let gone = match sup.as_ref() {
            Some(f) => remove_checked(&f.dir, &self.name, self.id)?,
            None => true,
        };
        if gone {
            // Release: pairs with the acquire loads of `open` and `is_removed`.
            self.removed.store(true, Ordering::Release);
        }
        Ok(())
    }

    /// Whether it was removed.
    pub(crate) fn is_removed(&self) -> bool {
        self.removed.load(Ordering::Acquire)
    }
}

impl Drop for ChildCgroup {
    /// Its owner is gone: kill what is left and try the removal (constant work; a cgroup
    /// still emptying stays, and the supervisor's removal then reports it).
    fn drop(&mut self) {
        if !self.is_removed() {
            let _ = self.kill();
            let _ = self.remove();
        }
    }
}

/// The error of a cgroup still populated after its kill and the wait.
pub(crate) fn still_populated() -> io::Error {
    io::Error::new(
        io::ErrorKind::ResourceBusy,
        "the cgroup is still populated after cgroup.kill",
    )
}

#[cfg(test)]
mod tests;
