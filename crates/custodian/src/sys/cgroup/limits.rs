//! Resource limits in a child's cgroup (`memory.max`, `pids.max`, `cpu.max`) and what
//! the memory controller reports back (`memory.events`).
//!
//! A controller's interface files exist in a child's cgroup only when the controller is
//! enabled in the supervisor's `cgroup.subtree_control`, and it can be enabled there only
//! when the supervisor's `cgroup.controllers` lists it, that is when the parent (this
//! process's own cgroup) enabled it in *its* `cgroup.subtree_control`. The supervisor's
//! cgroup holds no process, so the "no internal processes" rule allows it to enable what
//! it is offered; the parent is not ours and is never written to.
//!
//! The limits are written into the child's cgroup right after it is made, relative to its
//! directory's fd, before the fork: the child runs no code outside them.

use std::io;
use std::os::fd::AsFd;

use rustix::fs::{Mode, OFlags};

use super::{ChildCgroup, SupervisorCgroup, lock};

/// One limit to write: the controller it needs, its interface file, the value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LimitWrite {
    /// `memory`, `pids`, `cpu`.
    pub(crate) controller: &'static str,
    /// `memory.max`, `pids.max`, `cpu.max`.
    pub(crate) file: &'static str,
    /// As the kernel parses it (`max`, a number, `QUOTA PERIOD`).
    pub(crate) value: String,
}

/// Why a controller is not enabled for the supervisor's children.
#[derive(Debug)]
pub(crate) enum EnableError {
    /// Not in the supervisor's `cgroup.controllers`: the parent does not enable it in its
    /// `cgroup.subtree_control`. `offered_to_parent`: whether the parent's own
    /// `cgroup.controllers` lists it (it could enable it, but has not).
    NotOffered { offered_to_parent: bool },
    /// Reading the lists, or the write that enables it, failed.
    Io(io::Error),
}

impl From<io::Error> for EnableError {
    fn from(e: io::Error) -> Self {
        EnableError::Io(e)
    }
}

impl SupervisorCgroup {
    /// Makes `controller` available in the children's cgroups: nothing if the
    /// supervisor's `cgroup.subtree_control` has it, `+controller` written there if its
    /// `cgroup.controllers` lists it, [`EnableError::NotOffered`] otherwise. Idempotent
    /// (two spawns racing both write the same `+controller`).
    pub(crate) fn enable(&self, controller: &str) -> Result<(), EnableError> {
        let fds = lock(&self.fds);
        let f = fds
            .as_ref()
            .ok_or_else(|| io::Error::from(rustix::io::Errno::NOENT))?;
        enable_at(&f.parent, &f.dir, controller)
    }
}

/// [`SupervisorCgroup::enable`] on the directory fds of the parent and the supervisor's
/// cgroup (a plain directory in the unit tests).
pub(super) fn enable_at(
    parent: impl AsFd,
    dir: impl AsFd,
    controller: &str,
) -> Result<(), EnableError> {
    if listed(&read_at(&dir, "cgroup.subtree_control")?, controller) {
        return Ok(());
    }
    if !listed(&read_at(&dir, "cgroup.controllers")?, controller) {
        let offered_to_parent = listed(&read_at(&parent, "cgroup.controllers")?, controller);
        return Err(EnableError::NotOffered { offered_to_parent });
    }
    write_at(&dir, "cgroup.subtree_control", &format!("+{controller}"))?;
    Ok(())
}

/// Writes each limit into the cgroup `dir`; the error names the file and the value.
pub(super) fn write_limits(dir: impl AsFd, limits: &[LimitWrite]) -> io::Result<()> {
    for l in limits {
        write_at(&dir, l.file, &l.value).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("writing `{}` to {}: {e}", l.value, l.file),
            )
        })?;
    }
    Ok(())
}

/// Whether a space-separated controller list (`cgroup.controllers`,
/// `cgroup.subtree_control`) names `controller`.
fn listed(list: &str, controller: &str) -> bool {
    list.split_ascii_whitespace().any(|c| c == controller)
}

fn read_at(dir: impl AsFd, file: &str) -> io::Result<String> {
    let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW;
    let fd = rustix::fs::openat(dir, file, flags, Mode::empty())?;
    let mut text = String::new();
    io::Read::read_to_string(&mut std::fs::File::from(fd), &mut text)?;
    Ok(text)
}

/// One `write` of the whole value (cgroupfs parses each write on its own).
fn write_at(dir: impl AsFd, file: &str, value: &str) -> io::Result<()> {
    let flags = OFlags::WRONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW;
    let fd = rustix::fs::openat(dir, file, flags, Mode::empty())?;
    let n = rustix::io::write(&fd, value.as_bytes())?;
    if n != value.len() {
        return Err(io::Error::new(io::ErrorKind::WriteZero, "short write"));
    }
    Ok(())
}

/// The `oom_kill` count of a `memory.events` text: how many processes of the cgroup (and
/// of the cgroups below it) the OOM killer killed. `None` if the line is missing.
pub(crate) fn oom_kills_of(memory_events: &str) -> Option<u64> {
    memory_events
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|v| v.trim().parse().ok())
}

impl ChildCgroup {
    /// How many of its processes the OOM killer killed: read from its `memory.events`
    /// while it exists (and remembered), the last count read once it is removed
    /// ([`remove`](Self::remove) reads it just before). `None` without the memory
    /// controller (no `memory.max` was set).
    pub(crate) fn oom_kills(&self) -> Option<u64> {
        if !self.memory {
            return None;
        }
        if !self.is_removed() {
            self.refresh_oom_kills();
        }
        // Relaxed: a counter read for a report; the reap happened-before through the
        // child's state lock.
        Some(self.oom_kills.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Re-reads `oom_kill` (the count only grows; a failed read keeps the last).
    pub(super) fn refresh_oom_kills(&self) {
        let read = self.open("memory.events", OFlags::RDONLY).and_then(|fd| {
            let mut text = String::new();
            io::Read::read_to_string(&mut std::fs::File::from(fd), &mut text)?;
            Ok(text)
        });
        if let Some(n) = read.ok().as_deref().and_then(oom_kills_of) {
            // Relaxed: as in `oom_kills`.
            self.oom_kills
                .fetch_max(n, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plain directory standing in for a cgroup: its interface files are plain files.
    fn fake(files: &[(&str, &str)]) -> (tempdir::Dir, std::fs::File) {
        let dir = tempdir::Dir::new();
        for (name, text) in files {
            std::fs::write(dir.0.join(name), text).unwrap();
        }
        let fd = std::fs::File::open(&dir.0).unwrap();
        (dir, fd)
    }

    mod tempdir {
        pub(super) struct Dir(pub(super) std::path::PathBuf);
        impl Dir {
            pub(super) fn new() -> Dir {
                let p = std::env::temp_dir().join(format!(
                    "custodian-limits-{}-{}",
                    std::process::id(),
                    crate::sys::create::random_hex(8).unwrap()
                ));
                std::fs::create_dir(&p).unwrap();
                Dir(p)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[test]
    fn a_controller_offered_is_enabled_once_and_one_not_offered_is_refused() {
        let (_p, parent) = fake(&[("cgroup.controllers", "cpu memory pids\n")]);
        let (d, dir) = fake(&[
            ("cgroup.controllers", "memory pids\n"),
            ("cgroup.subtree_control", ""),
        ]);
        enable_at(&parent, &dir, "memory").unwrap();
        let written = std::fs::read_to_string(d.0.join("cgroup.subtree_control")).unwrap();
        assert_eq!(written, "+memory");
        // Enabled already: nothing written (a plain file would show a second write).
        std::fs::write(d.0.join("cgroup.subtree_control"), "memory\n").unwrap();
        enable_at(&parent, &dir, "memory").unwrap();
        assert_eq!(
            std::fs::read_to_string(d.0.join("cgroup.subtree_control")).unwrap(),
            "memory\n"
        );
        // Offered to the parent, not enabled by it.
        match enable_at(&parent, &dir, "cpu") {
            Err(EnableError::NotOffered {
                offered_to_parent: true,
            }) => {}
            other => panic!("{other:?}"),
        }
        // Not even offered to the parent (bound to cgroup v1, say).
        match enable_at(&parent, &dir, "io") {
            Err(EnableError::NotOffered {
                offered_to_parent: false,
            }) => {}
            other => panic!("{other:?}"),
        }
        // A prefix of a listed name is not that name.
        assert!(!listed("memory pids", "mem"));
    }

    #[test]
    fn limits_are_written_whole_and_a_failure_names_the_file() {
        let (d, dir) = fake(&[("memory.max", ""), ("cpu.max", "")]);
        let w = |controller, file, value: &str| LimitWrite {
            controller,
            file,
            value: value.to_owned(),
        };
        write_limits(
            &dir,
            &[
                w("memory", "memory.max", "67108864"),
                w("cpu", "cpu.max", "50000 100000"),
            ],
        )
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(d.0.join("memory.max")).unwrap(),
            "67108864"
        );
        assert_eq!(
            std::fs::read_to_string(d.0.join("cpu.max")).unwrap(),
            "50000 100000"
        );
        let err = write_limits(&dir, &[w("pids", "pids.max", "10")]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(err.to_string().contains("`10` to pids.max"), "{err}");
    }

    #[test]
    fn memory_events_oom_kill_is_parsed() {
        let text = "low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(oom_kills_of(text), Some(1));
        assert_eq!(oom_kills_of("low 0\nmax 3\n"), None, "no oom_kill line");
        assert_eq!(oom_kills_of("oom_kill x\n"), None);
        // `oom_group_kill` is another line, not a prefix match.
        assert_eq!(oom_kills_of("oom_group_kill 4\noom_kill 0\n"), Some(0));
    }
}
