//! Removing cgroups: a name checked against the inode recorded at creation, the empty
//! cgroups below it first, and a recorded cgroup (a crash journal's path and inode)
//! killed and removed only on that proof.

use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use super::{ChildCgroup, still_populated};
use crate::sys::FileId;
use crate::sys::remove::open_dir_nofollow;

/// How deep [`remove_below`] goes (the kernel's own default `cgroup.max.depth` is
/// unlimited; a child nesting deeper than this keeps its cgroups, and the removal reports
/// `EBUSY`). Bounds the recursion, and so the stack.
const MAX_DEPTH: usize = 32;

/// What became of a recorded cgroup ([`kill_recorded`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Recorded {
    /// It was there, proven by its inode: killed, emptied and removed.
    Removed,
    /// Nothing at its path, proven on the recorded file system: nothing to do.
    Gone,
    /// Nothing at its path, but the path does not lead to the recorded cgroup2 file
    /// system here (not mounted there in this mount namespace): no proof it is gone.
    Unreachable,
    /// Something else is at its path (another inode, or not a cgroup2 directory): left
    /// alone.
    NotOurs,
    /// One of the `spare` processes (the sweeper, its ancestors) is a member of it or of
    /// a cgroup below it: `cgroup.kill` would kill it, so nothing was written.
    HoldsSpared(u32),
}

/// `CGROUP2_SUPER_MAGIC`: the `f_type` of a cgroup v2 file system.
const CGROUP2_SUPER_MAGIC: u64 = 0x6367_7270;

/// For crash recovery (the journal records a cgroup's path and [`FileId`]): opens the
/// cgroup at `path`, proves it is the one recorded (its inode, opened with no symlink
/// followed), writes `cgroup.kill` relative to that fd, waits at most `bound` for
/// `populated 0` and removes it relative to its parent's fd after checking the name
/// again. No pid is involved in the kill; a cgroup that is gone, not the one recorded,
/// not on a cgroup2 file system, or that holds one of the `spare` processes (read from
/// `cgroup.procs` at every level below it) is never written to.
pub(crate) fn kill_recorded(
    path: &Path,
    id: FileId,
    bound: Duration,
    spare: &[u32],
) -> io::Result<Recorded> {
    let (parent, dir, name) = match open_recorded(path, id)? {
        Opened::Proven { parent, dir, name } => (parent, dir, name),
        Opened::Other(r) => return Ok(r),
    };
    if let Some(pid) = member_among(&dir, spare, 0)? {
        return Ok(Recorded::HoldsSpared(pid));
    }
    let at = |file: &str, flags: OFlags| {
        rustix::fs::openat(
            &dir,
            file,
            flags | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::empty(),
        )
    };
    rustix::io::write(at("cgroup.kill", OFlags::WRONLY)?, b"1")?;
    let events = at("cgroup.events", OFlags::RDONLY)?;
    let until = Instant::now().checked_add(bound);
    while ChildCgroup::populated_at(&events)? {
        if until.is_none_or(|u| Instant::now() >= u) {
            return Err(still_populated());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let name = name.to_str().ok_or(Errno::INVAL)?;
    remove_checked(&parent, name, id)?;
    Ok(Recorded::Removed)
}

/// The cgroup at `path`, if it is the one a crash journal recorded (`id`: its inode,
/// opened with no symlink followed, on a cgroup2 file system), as [`kill_recorded`]
/// proves it before it writes anything, and holds none of `spare` (read from
/// `cgroup.procs` at every level below it, as the kill does): a sweeper inside it would
/// find its own descendants there.
pub(crate) fn recorded_dir(path: &Path, id: FileId, spare: &[u32]) -> Option<OwnedFd> {
    match open_recorded(path, id) {
        Ok(Opened::Proven { dir, .. }) => {
            matches!(member_among(&dir, spare, 0), Ok(None)).then_some(dir)
        }
        _ => None,
    }
}

/// The pids (in this pid namespace) that the cgroup `dir` and the cgroups below it list
/// in `cgroup.procs`, down to [`MAX_DEPTH`] levels (deeper ones are left to
/// `cgroup.kill`). Read relative to `dir`: a path or a name proves nothing.
pub(crate) fn procs_below(dir: &OwnedFd) -> io::Result<Vec<u32>> {
    let mut out = Vec::new();
    collect_procs(dir, 0, &mut out)?;
    Ok(out)
}

fn collect_procs(dir: &OwnedFd, depth: usize, out: &mut Vec<u32>) -> io::Result<()> {
    if depth >= MAX_DEPTH {
        return Ok(());
    }
    out.extend(procs_of(dir)?);
    for name in sub_cgroups(dir)? {
        match open_dir_nofollow(dir, name.as_c_str()) {
            Ok(sub) => collect_procs(&sub, depth + 1, out)?,
            Err(Errno::NOENT) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// What is at a recorded cgroup's path.
enum Opened<'a> {
    /// The recorded cgroup: its parent, itself, and its name.
    Proven {
        parent: OwnedFd,
        dir: OwnedFd,
        name: &'a std::ffi::OsStr,
    },
    /// Not it: gone, unreachable, or another directory.
    Other(Recorded),
}

/// Opens the cgroup at `path` and its parent, proving it is the one recorded.
fn open_recorded(path: &Path, id: FileId) -> io::Result<Opened<'_>> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a cgroup path",
        ));
    };
    let parent = match rustix::fs::open(
        parent,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return absent(nearest(parent)?, id).map(Opened::Other),
        Err(e) => return Err(e.into()),
    };
    let dir = match open_dir_nofollow(&parent, name) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return absent(Some(parent), id).map(Opened::Other),
        Err(e) => return Err(e.into()),
    };
    #[allow(clippy::unnecessary_cast)] // `f_type`'s type differs between targets.
    let on_cgroup2 = rustix::fs::fstatfs(&dir)?.f_type as u64 == CGROUP2_SUPER_MAGIC;
    if FileId::of_fd(&dir)? != id || !on_cgroup2 {
        return Ok(Opened::Other(Recorded::NotOurs));
    }
    Ok(Opened::Proven { parent, dir, name })
}

/// Nothing at the recorded cgroup's path; `near` is the nearest directory on that path
/// that is there. Gone only on proof: the kernel finds no cgroup with the recorded id on
/// that file system (its file handle is stale). The path alone proves nothing, even on
/// the recorded cgroup2 file system: a mount namespace can show another cgroup at its
/// place (a bind-mounted subtree, a cgroup namespace's mount;
/// tests/review_final2_cgroup_subtree.rs). Without `CAP_DAC_READ_SEARCH` the kernel
/// will not say, and the path decides: gone when `near` is on the recorded cgroup2.
fn absent(near: Option<OwnedFd>, id: FileId) -> io::Result<Recorded> {
    let Some(near) = near.filter(|fd| on_cgroup2(fd, Some(id)).unwrap_or(false)) else {
        return Ok(Recorded::Unreachable);
    };
    Ok(match exists_by_handle(&near, id.ino) {
        Some(true) => Recorded::Unreachable,
        Some(false) | None => Recorded::Gone,
    })
}

/// Whether a cgroup with inode `ino` is on the cgroup2 file system of `fs`, wherever it
/// is (a cgroup's file handle is its 64-bit id, its inode number; `FILEID_KERNFS`).
/// `None` when the kernel will not say (`EPERM` without `CAP_DAC_READ_SEARCH`).
fn exists_by_handle(fs: &OwnedFd, ino: u64) -> Option<bool> {
    use std::os::fd::{AsRawFd, FromRawFd};
    /// `struct file_handle` with room for a kernfs handle's 8 bytes.
    #[repr(C)]
    struct KernfsHandle {
        bytes: u32,
        kind: i32,
        id: u64,
    }
    const FILEID_KERNFS: i32 = 0xfe;
    let mut handle = KernfsHandle {
        bytes: 8,
        kind: FILEID_KERNFS,
        id: ino,
    };
    let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC;
    // SAFETY: `fs` is open for the whole call; `handle` is a live, writable
    // `struct file_handle` (`u32`, `i32`, then `handle_bytes` = 8 bytes of handle, all
    // there), which the kernel reads `handle_bytes` of and never writes. Tested by
    // tests/review_final2_cgroup_subtree.rs.
    #[allow(unsafe_code)]
    let fd = unsafe { libc::open_by_handle_at(fs.as_raw_fd(), (&raw mut handle).cast(), flags) };
    if fd >= 0 {
        // SAFETY: `fd` was just returned by the kernel and is owned by nothing else.
        #[allow(unsafe_code)]
        drop(unsafe { OwnedFd::from_raw_fd(fd) });
        return Some(true);
    }
    (io::Error::last_os_error().raw_os_error() == Some(libc::ESTALE)).then_some(false)
}

/// A cgroup's parent `missing` is not there: whether the nearest directory above it that
/// is there is on cgroup2 (with the recorded device, if known). Then the cgroup is gone
/// (a cgroup with cgroups below it cannot be removed, so ours went first); else the path
/// does not reach cgroup2 here (another mount namespace) and proves nothing.
fn nearest_on_cgroup2(missing: &Path, id: Option<FileId>) -> io::Result<bool> {
    nearest(missing)?.map_or(Ok(false), |fd| on_cgroup2(&fd, id))
}

/// The nearest directory above `missing` that is there.
fn nearest(missing: &Path) -> io::Result<Option<OwnedFd>> {
    for up in missing.ancestors().skip(1) {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        match rustix::fs::open(up, flags, Mode::empty()) {
            Ok(fd) => return Ok(Some(fd)),
            Err(Errno::NOENT) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(None)
}

/// Whether the directory `fd` is on a cgroup2 file system (with the recorded device, if
/// known).
fn on_cgroup2(fd: &OwnedFd, id: Option<FileId>) -> io::Result<bool> {
    #[allow(clippy::unnecessary_cast)] // `f_type`'s type differs between targets.
    let cgroup2 = rustix::fs::fstatfs(fd)?.f_type as u64 == CGROUP2_SUPER_MAGIC;
    Ok(cgroup2 && id.is_none_or(|id| FileId::of_fd(fd).is_ok_and(|f| f.dev == id.dev)))
}

/// What became of a cgroup that a crash journal only intended ([`remove_intended`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Intended {
    /// An empty cgroup was at the path: removed.
    Removed,
    /// Nothing at the path (the owner died before its `mkdir`): nothing to do.
    Gone,
    /// Nothing at the path, which does not lead to a cgroup2 file system here: no proof.
    Unreachable,
    /// Not a cgroup2 directory at the path: left alone.
    NotOurs,
    /// A cgroup with members (or populated cgroups below it): nothing of custodian's ran
    /// there before the record that the journal lacks, so it is left alone.
    Populated,
}

/// For crash recovery: the cgroup at `path` that a dead owner's journal said it was
/// about to create (the intent record, written right before the `mkdir`) and never
/// recorded as created: the owner died in between, before any child ran in it. Removed
/// only if it is a cgroup2 directory with no member and nothing populated below it;
/// nothing is ever written to it.
pub(crate) fn remove_intended(path: &Path) -> io::Result<Intended> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str()))
    else {
        return Ok(Intended::NotOurs);
    };
    let parent = match rustix::fs::open(
        parent,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => {
            return Ok(match nearest_on_cgroup2(parent, None)? {
                true => Intended::Gone,
                false => Intended::Unreachable,
            });
        }
        Err(e) => return Err(e.into()),
    };
    let dir = match open_dir_nofollow(&parent, name) {
        Ok(fd) => fd,
        Err(Errno::NOENT) if on_cgroup2(&parent, None)? => return Ok(Intended::Gone),
        Err(Errno::NOENT) => return Ok(Intended::Unreachable),
        Err(Errno::LOOP | Errno::NOTDIR) => return Ok(Intended::NotOurs),
        Err(e) => return Err(e.into()),
    };
    #[allow(clippy::unnecessary_cast)] // `f_type`'s type differs between targets.
    if rustix::fs::fstatfs(&dir)?.f_type as u64 != CGROUP2_SUPER_MAGIC {
        return Ok(Intended::NotOurs);
    }
    let events = rustix::fs::openat(
        &dir,
        "cgroup.events",
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
    )?;
    if ChildCgroup::populated_at(&events)? {
        return Ok(Intended::Populated);
    }
    let id = FileId::of_fd(&dir)?;
    match remove_checked(&parent, name, id) {
        Ok(_) => Ok(Intended::Removed),
        // A member arrived meanwhile: `rmdir` refuses a populated cgroup.
        Err(e) if e.raw_os_error() == Some(Errno::BUSY.raw_os_error()) => Ok(Intended::Populated),
        Err(e) => Err(e),
    }
}

/// What the cgroup `dir` lists in its own `cgroup.procs`. Nothing for a threaded cgroup
/// (`EOPNOTSUPP`: its threaded domain, above it, lists its processes;
/// tests/review_cg4_threaded.rs) or one removed meanwhile.
fn procs_of(dir: &OwnedFd) -> io::Result<Vec<u32>> {
    let none = |e: &io::Error| {
        [Errno::NOENT, Errno::NODEV, Errno::OPNOTSUPP]
            .map(Errno::raw_os_error)
            .contains(&e.raw_os_error().unwrap_or(0))
    };
    let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW;
    let read = rustix::fs::openat(dir, "cgroup.procs", flags, Mode::empty())
        .map_err(io::Error::from)
        .and_then(|fd| {
            let mut text = String::new();
            io::Read::read_to_string(&mut std::fs::File::from(fd), &mut text).map(|_| text)
        });
    match read {
        Ok(text) => Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect()),
        Err(e) if none(&e) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// The first of `pids` that is a member of `dir` or of a cgroup below it (at most
/// [`MAX_DEPTH`] levels; deeper counts as a member, to be safe).
fn member_among(dir: &OwnedFd, pids: &[u32], depth: usize) -> io::Result<Option<u32>> {
    if pids.is_empty() {
        return Ok(None);
    }
    if depth >= MAX_DEPTH {
        return Ok(pids.first().copied());
    }
    if let Some(p) = procs_of(dir)?.into_iter().find(|p| pids.contains(p)) {
        return Ok(Some(p));
    }
    for name in sub_cgroups(dir)? {
        match open_dir_nofollow(dir, name.as_c_str()) {
            Ok(sub) => {
                if let Some(p) = member_among(&sub, pids, depth + 1)? {
                    return Ok(Some(p));
                }
            }
            Err(Errno::NOENT) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(None)
}

/// The names of the cgroups right below `dir` (its subdirectories), read before any is
/// opened: a walk that changes the directory does not change what it reads.
fn sub_cgroups(dir: &OwnedFd) -> io::Result<Vec<std::ffi::CString>> {
    let mut subs = Vec::new();
    for e in rustix::fs::Dir::read_from(dir)? {
        let e = e?;
        let name = e.file_name().to_bytes();
        if e.file_type() == FileType::Directory && name != b"." && name != b".." {
            subs.push(e.file_name().to_owned());
        }
    }
    Ok(subs)
}

/// Removes `name` in `parent` if it still is the cgroup `id`; `true` once ours is gone
/// (removed now, or earlier by someone else: a name that is another cgroup now is left
/// alone).
pub(super) fn remove_checked(parent: &OwnedFd, name: &str, id: FileId) -> io::Result<bool> {
    match rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) if FileId::of_stat(&st) == id => {}
        Ok(_) | Err(Errno::NOENT) => return Ok(true),
        Err(e) => return Err(e.into()),
    }
    match rustix::fs::unlinkat(parent, name, AtFlags::REMOVEDIR) {
        Ok(()) | Err(Errno::NOENT) => return Ok(true),
        // Cgroups below it (a child made its own, or children's cgroups left): empty
        // ones go first, then again.
        Err(Errno::BUSY) => {}
        Err(e) => return Err(e.into()),
    }
    let dir = open_dir_nofollow(parent, name)?;
    if FileId::of_fd(&dir)? != id {
        return Ok(true);
    }
    remove_below(&dir, 0)?;
    match rustix::fs::unlinkat(parent, name, AtFlags::REMOVEDIR) {
        Ok(()) | Err(Errno::NOENT) => Ok(true),
        Err(e) => Err(e.into()),
    }
}

/// Removes every cgroup below `dir`, deepest first, relative to fds; a populated one
/// fails with `EBUSY`. cgroupfs directories hold only interface files (which `rmdir`
/// ignores) and cgroups, and only root or a delegated owner can make either.
fn remove_below(dir: &OwnedFd, depth: usize) -> io::Result<()> {
    if depth >= MAX_DEPTH {
        return Err(Errno::BUSY.into());
    }
    for name in sub_cgroups(dir)? {
        let sub = match open_dir_nofollow(dir, name.as_c_str()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => continue,
            Err(e) => return Err(e.into()),
        };
        remove_below(&sub, depth + 1)?;
        match rustix::fs::unlinkat(dir, name.as_c_str(), AtFlags::REMOVEDIR) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod handle_tests {
    use super::*;

    #[test]
    fn a_cgroup_is_found_by_its_id_until_it_is_removed() {
        let own = (|| {
            let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
            let mount = super::super::discover::find_mount(&mounts)?;
            let cg = std::fs::read_to_string("/proc/self/cgroup").ok()?;
            let own = super::super::discover::own_cgroup(&cg)?;
            super::super::discover::dir_of(&mount, &own)
        })();
        let cg = own.map(|d| d.join(format!("handle-probe-{}", std::process::id())));
        let Some(cg) = cg.filter(|cg| std::fs::create_dir(cg).is_ok()) else {
            eprintln!("skipped: no writable cgroup2");
            return;
        };
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let parent = rustix::fs::open(cg.parent().unwrap(), flags, Mode::empty()).unwrap();
        let ino = rustix::fs::stat(&cg).unwrap().st_ino;
        let found = exists_by_handle(&parent, ino);
        std::fs::remove_dir(&cg).unwrap();
        let after = exists_by_handle(&parent, ino);
        if !rustix::process::geteuid().is_root() {
            assert_eq!((found, after), (None, None));
            return;
        }
        assert_eq!((found, after), (Some(true), Some(false)));
    }
}
