//! The age sweep's base directory: opened without following a symlink in its last
//! component, its path resolved without a step out of another user's directory or
//! symlink, and refused if others may write it unless it is root-owned and sticky;
//! with `all`, the root of the file system is refused too.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, CWD, FileType, Mode, OFlags};
use rustix::io::Errno;

use crate::error::Error;

/// Why an age sweep refused its base directory; the source of its [`Error::Io`], whose
/// `Display` gives the remedy.
///
/// ```
/// use std::os::unix::fs::PermissionsExt;
/// let base = std::env::temp_dir().join(format!("age-refusal-doc-{}", std::process::id()));
/// std::fs::create_dir(&base).unwrap();
/// std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o777)).unwrap();
/// let err = tokio_custodian::AgeSweep::new(&base, std::time::Duration::ZERO).run().unwrap_err();
/// assert!(matches!(
///     tokio_custodian::BaseRefusal::of(&err),
///     Some(tokio_custodian::BaseRefusal::WritableByOthers { mode: 0o777, .. })
/// ));
/// assert!(err.to_string().contains("chmod 700"));
/// # std::fs::remove_dir(&base).unwrap();
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BaseRefusal {
    /// The base's last component is a symlink: it is not followed.
    Symlink,
    /// Others may write the base and it is not a root-owned sticky directory: another
    /// user could swap what the sweep looks at.
    WritableByOthers {
        /// Its permission bits.
        mode: u32,
        /// Its owner.
        uid: u32,
        /// The base, for the remedy.
        path: PathBuf,
    },
    /// The base is the root of the file system (`/`, however named) and the sweep
    /// judges every entry ([`AgeSweep::all`](crate::AgeSweep::all)): it would remove the
    /// system's own old files.
    FileSystemRoot,
    /// The path to the base leads out of a directory or symlink of another user (not
    /// root, not the sweeper), who could redirect it (swap an entry for a symlink) to a
    /// directory of the sweeper's own.
    ForeignPath {
        /// The base, as given.
        path: PathBuf,
        /// The owner of what the path passed through.
        uid: u32,
    },
}

impl BaseRefusal {
    /// The refusal inside an error of [`AgeSweep::run`](crate::AgeSweep::run), if it is one.
    ///
    /// ```
    /// let err = tokio_custodian::AgeSweep::new("/no/such/dir", std::time::Duration::ZERO)
    ///     .run()
    ///     .unwrap_err();
    /// assert!(tokio_custodian::BaseRefusal::of(&err).is_none());
    /// ```
    pub fn of(err: &Error) -> Option<&BaseRefusal> {
        match err {
            Error::Io { source, .. } => source.get_ref()?.downcast_ref::<BaseRefusal>(),
            _ => None,
        }
    }
}

impl fmt::Display for BaseRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BaseRefusal::Symlink => f.write_str(
                "the base is a symlink and is not followed; name the directory it points to",
            ),
            BaseRefusal::WritableByOthers { mode, uid, path } => write!(
                f,
                "others may write the base (mode {mode:o}, owner uid {uid}) and it is not a \
                 root-owned sticky directory like /tmp: make it private (chmod 700 {p}) or, \
                 if it must be shared, root-owned and sticky (chown root {p}; chmod +t {p})",
                p = path.display()
            ),
            BaseRefusal::ForeignPath { path, uid } => write!(
                f,
                "the path {} passes through a directory or symlink of uid {uid}, who could \
                 point it at another directory; name the base by a path that only root and \
                 you control",
                path.display()
            ),
            BaseRefusal::FileSystemRoot => f.write_str(
                "the base is the root of the file system, where sweeping every old entry \
                 would remove the system's own files; name the directory to sweep",
            ),
        }
    }
}

impl std::error::Error for BaseRefusal {}

/// Opens the base without following a symlink in its last component, nor one another
/// user controls anywhere on its path ([`resolve`]), and refuses it if others may write
/// it (unless root-owned and sticky).
pub(super) fn open(base: &Path) -> io::Result<OwnedFd> {
    // A trailing `/` or `/.` makes the kernel resolve a symlink in the last component
    // whatever `O_NOFOLLOW` says (`--base /tmp/cache/`, as a shell completes it, swept
    // where a symlink `cache` pointed); without them the last component is the name.
    let named: PathBuf = base.components().collect();
    let base = if named.as_os_str().is_empty() {
        base
    } else {
        &named
    };
    let refuse = |kind, why| io::Error::new(kind, why);
    let (at, last) = resolve(base)?;
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = match rustix::fs::openat(&at, &last, flags | OFlags::NOATIME, Mode::empty()) {
        Err(Errno::PERM) => rustix::fs::openat(&at, &last, flags, Mode::empty()),
        r => r,
    };
    let fd = match fd {
        Ok(fd) => fd,
        Err(e @ (Errno::LOOP | Errno::NOTDIR)) => {
            let link = rustix::fs::statat(&at, &last, AtFlags::SYMLINK_NOFOLLOW)
                .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Symlink);
            return Err(if link {
                // The kind `ELOOP` has ("filesystem loop"), which is not nameable on stable.
                refuse(io::Error::from(Errno::LOOP).kind(), BaseRefusal::Symlink)
            } else {
                e.into()
            });
        }
        Err(e) => return Err(e.into()),
    };
    let st = rustix::fs::fstat(&fd)?;
    let mode = st.st_mode & 0o7777;
    let sticky_root = mode & 0o1000 != 0 && st.st_uid == 0;
    if mode & 0o022 != 0 && !sticky_root {
        return Err(refuse(
            io::ErrorKind::PermissionDenied,
            BaseRefusal::WritableByOthers {
                mode,
                uid: st.st_uid,
                path: base.to_path_buf(),
            },
        ));
    }
    Ok(fd)
}

/// Resolves `base` but its last component the way the kernel would, one component at a
/// time relative to fds (what is checked is what is then used), refusing a step out of
/// something another user owns into something not theirs (systemd's `CHASE_SAFE` rule,
/// the sweeper trusted as root is): a user who owns a directory on the path could
/// otherwise swap an entry for a symlink to a directory of the sweeper's and have that
/// swept. Returns the directory holding the last component, and its name (`.` when the
/// base has no last name: `/`, `.`, `..`).
fn resolve(base: &Path) -> io::Result<(OwnedFd, OsString)> {
    if base.as_os_str().is_empty() {
        return Err(Errno::NOENT.into());
    }
    let euid = rustix::process::geteuid().as_raw();
    let trusted = |uid: u32| uid == 0 || uid == euid;
    let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let step = |at: &OwnedFd, name: &OsStr| rustix::fs::openat(at, name, flags, Mode::empty());
    let mut todo: VecDeque<Step> = steps(base).collect();
    let last = match todo.pop_back() {
        Some(Step::Name(last)) => last,
        other => {
            todo.extend(other);
            ".".into()
        }
    };
    // An absolute path starts at `/`, whoever owns the working directory.
    let start = if matches!(todo.front(), Some(Step::Root)) {
        todo.pop_front();
        "/"
    } else {
        "."
    };
    let mut dir = rustix::fs::openat(CWD, start, flags, Mode::empty())?;
    let mut prev = rustix::fs::fstat(&dir)?.st_uid;
    let mut links = 0;
    while let Some(c) = todo.pop_front() {
        let next = match &c {
            Step::Root => rustix::fs::open("/", flags, Mode::empty())?,
            Step::Up => step(&dir, OsStr::new(".."))?,
            Step::Name(name) => step(&dir, name)?,
        };
        let st = rustix::fs::fstat(&next)?;
        let foreign = |from: u32, to: &rustix::fs::Stat| {
            let why = BaseRefusal::ForeignPath {
                path: base.to_path_buf(),
                uid: from,
            };
            (!trusted(from) && to.st_uid != from)
                .then(|| io::Error::new(io::ErrorKind::PermissionDenied, why))
        };
        if let Some(e) = foreign(prev, &st) {
            return Err(e);
        }
        prev = st.st_uid;
        match FileType::from_raw_mode(st.st_mode) {
            // A procfs "magic" link (`/proc/PID/root`, `/proc/self/fd/N`) names an object,
            // not a path: its text, resolved from `/`, can be another mount namespace's
            // directory (tests/review_final2_age_proc_link.rs). The kernel follows it.
            FileType::Symlink if is_procfs(&next) => {
                let Step::Name(name) = &c else {
                    return Err(Errno::LOOP.into());
                };
                let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
                let target = rustix::fs::openat(&dir, name, flags, Mode::empty())?;
                let tst = rustix::fs::fstat(&target)?;
                if let Some(e) = foreign(prev, &tst) {
                    return Err(e);
                }
                prev = tst.st_uid;
                dir = target;
            }
            FileType::Symlink => {
                links += 1;
                if links > 40 {
                    return Err(Errno::LOOP.into());
                }
                // Read through the link's own fd: the link just checked.
                let target = rustix::fs::readlinkat(&next, "", Vec::new())?;
                let target = Path::new(OsStr::from_bytes(target.as_bytes()));
                // Its steps go first, resolved from the link's directory.
                for s in steps(target).collect::<Vec<_>>().into_iter().rev() {
                    todo.push_front(s);
                }
            }
            FileType::Directory => dir = next,
            _ => return Err(Errno::NOTDIR.into()),
        }
    }
    Ok((dir, last))
}

/// Whether `fd` is on procfs.
fn is_procfs(fd: &OwnedFd) -> bool {
    #[allow(clippy::unnecessary_cast)] // `f_type`'s type differs between targets.
    rustix::fs::fstatfs(fd).is_ok_and(|fs| fs.f_type as i64 == rustix::fs::PROC_SUPER_MAGIC as i64)
}

/// One step of a path's resolution.
enum Step {
    Root,
    Up,
    Name(OsString),
}

fn steps(path: &Path) -> impl Iterator<Item = Step> + '_ {
    path.components().filter_map(|c| match c {
        Component::RootDir => Some(Step::Root),
        Component::ParentDir => Some(Step::Up),
        Component::Normal(n) => Some(Step::Name(n.to_os_string())),
        Component::CurDir | Component::Prefix(_) => None,
    })
}

/// With `all`, refuses a base that is the root of the file system (`/` however named:
/// `/tmp/..`, a relative path): every old file of the system would be removed.
pub(super) fn refuse_root(dir: &OwnedFd, all: bool) -> io::Result<()> {
    if !all {
        return Ok(());
    }
    let root = rustix::fs::stat("/")?;
    if crate::sys::FileId::of_stat(&root) == crate::sys::FileId::of_fd(dir)? {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            BaseRefusal::FileSystemRoot,
        ));
    }
    Ok(())
}
