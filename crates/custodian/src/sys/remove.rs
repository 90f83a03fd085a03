//! Directory-fd-relative removal that never follows a symlink, never enters another mount
//! and walks a tree of any depth without recursion.
//!
//! Invariants:
//! - every name is resolved relative to a directory fd that custodian holds, so a parent
//!   directory renamed or swapped for a symlink cannot redirect a removal elsewhere;
//! - a symlink is unlinked as a link (`unlinkat` never follows the last component), its
//!   target is never touched;
//! - before a recorded entry is removed its device/inode is compared with the identity
//!   recorded at creation; an entry replaced by another object is left in place and
//!   reported; an emptied directory is checked again before its `rmdir`;
//! - removal never enters another mount: a mount point inside a managed directory (a
//!   directory, or a single file bind-mounted onto a file) is neither entered nor
//!   unlinked, everything around it is removed, and the removal fails with
//!   [`io::ErrorKind::ResourceBusy`] "a mount point inside a managed directory was left in
//!   place: PATH" ([`is_mount_point_error`] tells it from other failures);
//! - the walk is iterative, with an explicit stack of frames (identity, remaining names):
//!   no recursion, so no depth can overflow a thread's stack. Only the deepest
//!   [`MAX_OPEN`] levels keep an fd (fewer when the process runs out: `EMFILE` closes
//!   the shallowest ones); going back up past a closed level reopens it through the
//!   child's `..` and checks its device, inode and mount id against those recorded on the
//!   way down. A mismatch means the tree was moved: the walk stops and fails rather than
//!   remove anything it has not verified. Memory is proportional to the depth plus the
//!   entries of the directories on the current path.
//!
//! Which kernels get which guarantee (details in `mount.rs`): from Linux 5.8,
//! `statx` reports `STATX_ATTR_MOUNT_ROOT` and `STATX_MNT_ID`, so every mount point is
//! detected, same-file-system bind mounts included. Before 5.8 (and wherever the
//! file system does not report them) only `st_dev` is compared: a mount of another file
//! system is still detected and left alone, but a bind mount of a directory of the same
//! file system looks like a plain directory and is emptied (its `rmdir` then fails with
//! `EBUSY`). A single-file bind mount is safe on every kernel: `unlink` of a mount point
//! fails with `EBUSY` in the mount namespace that sees it.
//!
//! Errors keep the kind of the failing call (an `EMFILE` stays `EMFILE`, so a caller can
//! retry later). When several entries fail, the first failure is reported, except that a
//! mount point left in place yields to any other failure: that one may be transient, and
//! a retry finds the mount point again.
//!
//! The walk's file-system calls go through [`WalkFs`] (`remove/fs.rs`): [`RealFs`] here,
//! an in-memory mock in the unit tests (`remove/mock_tests.rs`).

use std::ffi::{CStr, CString, OsStr};
use std::fmt;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use super::FileId;
use super::mount::Place;

mod fs;
#[cfg(test)]
mod mock_tests;

pub(crate) use fs::{RealDir, RealFs, WalkFs};

/// How many directory fds one walk holds open at most, besides the caller's: enough to
/// make wide trees cheap, few enough for a process close to its fd limit.
pub(crate) const MAX_OPEN: usize = 16;

/// Entries removed between two checks that the open levels have not moved (besides the
/// check at every return to a parent).
const CHECK_EVERY: usize = 64;

/// What a removal found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The recorded object was removed.
    Removed,
    /// Nothing was there any more (already removed by someone else).
    AlreadyGone,
    /// A symlink had been planted at the name; the link was removed, its target kept.
    SymlinkRemoved,
}

/// A name that no longer refers to the object custodian created.
#[derive(Debug)]
struct Replaced;

impl fmt::Display for Replaced {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the entry was replaced by another file; it was left in place")
    }
}

impl std::error::Error for Replaced {}

/// The error reported when a name no longer refers to the object custodian created.
pub(crate) fn replaced_error() -> io::Error {
    io::Error::other(Replaced)
}

/// Whether `e` is [`replaced_error`], as opposed to a failure of the check itself (a
/// `stat` failing with `EMFILE` is not a replaced root).
pub(crate) fn is_replaced(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|e| e.is::<Replaced>())
}

/// A mount point found inside a managed directory, left in place; the path is relative
/// to the directory being removed.
#[derive(Debug)]
struct MountPointLeft(String);

impl fmt::Display for MountPointLeft {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a mount point inside a managed directory was left in place: {}",
            self.0
        )
    }
}

impl std::error::Error for MountPointLeft {}

/// The error for a mount point left in place (`ResourceBusy`, like the `EBUSY` that
/// removing it would give). It is permanent until someone unmounts it.
pub(crate) fn mount_point_error(path: String) -> io::Error {
    io::Error::new(io::ErrorKind::ResourceBusy, MountPointLeft(path))
}

/// Whether `e` says a mount point was left in place (retrying will not help until it is
/// unmounted).
pub(crate) fn is_mount_point_error(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|e| e.is::<MountPointLeft>())
}

/// The error for a directory whose `..` is no longer the parent recorded on the way
/// down.
fn moved_error() -> io::Error {
    io::Error::other(
        "the directory tree was moved during removal; stopped before removing anything unverified",
    )
}

/// Removes the non-directory `name` in `dir` if it is still the object `expect`.
pub(crate) fn remove_file_at(dir: impl AsFd, name: &OsStr, expect: FileId) -> io::Result<Outcome> {
    let dir = dir.as_fd();
    let st = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::NOENT) => return Ok(Outcome::AlreadyGone),
        Err(e) => return Err(e.into()),
    };
    if FileType::from_raw_mode(st.st_mode) == FileType::Symlink {
        return unlink_missing_ok(dir, name, AtFlags::empty(), Outcome::SymlinkRemoved);
    }
    if FileId::of_stat(&st) != expect {
        return Err(replaced_error());
    }
    unlink_missing_ok(dir, name, AtFlags::empty(), Outcome::Removed)
}

/// Removes the directory `name` in `dir` and everything below it, if it is still the
/// directory `expect` and on the same mount as `dir`.
pub(crate) fn remove_tree_at(dir: impl AsFd, name: &OsStr, expect: FileId) -> io::Result<Outcome> {
    // A name with a NUL byte names nothing: `EINVAL`, as the system call would say.
    let name = CString::new(name.as_bytes()).map_err(|_| Errno::INVAL)?;
    tree_at(
        &RealFs::default(),
        &RealDir::Borrowed(dir.as_fd()),
        &name,
        expect,
    )
}

/// [`remove_tree_at`] through `fs`.
fn tree_at<F: WalkFs>(fs: &F, dir: &F::Dir, name: &CStr, expect: FileId) -> io::Result<Outcome> {
    let at = match fs.place_at(dir, name) {
        Ok(p) => p,
        Err(Errno::NOENT) => return Ok(Outcome::AlreadyGone),
        Err(e) => return Err(e.into()),
    };
    if at.kind == FileType::Symlink {
        return unlink_gone_ok(fs, dir, name, AtFlags::empty(), Outcome::SymlinkRemoved);
    }
    if at.id != expect {
        return Err(replaced_error());
    }
    let parent = fs.place_of(dir)?;
    let mount_point = || mount_point_error(name.to_string_lossy().into_owned());
    if at.crosses_from(&parent) {
        return Err(mount_point());
    }
    let sub = match fs.open_below(dir, name) {
        Ok(d) => d,
        Err(Errno::NOENT) => return Ok(Outcome::AlreadyGone),
        Err(e) => return Err(e.into()),
    };
    // The name may have been swapped (or mounted on) between the stat and the open:
    // check what we opened.
    let top = fs.place_of(&sub)?;
    if top.id != expect {
        return Err(replaced_error());
    }
    if top.crosses_from(&parent) {
        return Err(mount_point());
    }
    // The walk closes `sub` when it ends, before the `rmdir`.
    Walk::new(fs, sub, top)?.run()?;
    unlink_gone_ok(fs, dir, name, AtFlags::REMOVEDIR, Outcome::Removed)
}

/// Removes everything inside the open directory `dir`, which must be the directory
/// `expect`, without leaving its mount.
pub(crate) fn clear_dir(dir: impl AsFd, expect: FileId) -> io::Result<()> {
    clear(&RealFs::default(), RealDir::Borrowed(dir.as_fd()), expect)
}

/// [`clear_dir`] through `fs`.
fn clear<F: WalkFs>(fs: &F, dir: F::Dir, expect: FileId) -> io::Result<()> {
    let top = fs.place_of(&dir)?;
    if top.id != expect {
        return Err(replaced_error());
    }
    Walk::new(fs, dir, top)?.run()
}

/// Opens a directory relative to `dir` without following a symlink at the last component.
pub(crate) fn open_dir_nofollow(
    dir: impl AsFd,
    name: impl rustix::path::Arg,
) -> Result<OwnedFd, Errno> {
    rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// One directory on the walk's current path, from the top one down.
struct Frame<D> {
    /// `None` once closed to stay within [`MAX_OPEN`]; reopened through `..` on the way
    /// back up. The top frame (the caller's directory) is never closed nor removed.
    dir: Option<D>,
    /// Identity and mount recorded when it was entered.
    place: Place,
    /// Its name in the frame above (empty for the top).
    name: CString,
    /// Entries still to remove, with the type `readdir` gave.
    todo: Vec<(CString, FileType)>,
    /// Something inside was left (an error, a mount point): it will not be empty.
    incomplete: bool,
}

/// An iterative depth-first removal of everything below one directory.
struct Walk<'f, F: WalkFs> {
    fs: &'f F,
    stack: Vec<Frame<F::Dir>>,
    /// Frames `1..first_open` are closed, the others open (frame 0 is the caller's).
    first_open: usize,
    error: Option<io::Error>,
}

impl<'f, F: WalkFs> Walk<'f, F> {
    fn new(fs: &'f F, mut top: F::Dir, place: Place) -> io::Result<Self> {
        let todo = fs.list(&mut top)?;
        Ok(Walk {
            fs,
            stack: vec![Frame {
                dir: Some(top),
                place,
                name: CString::default(),
                todo,
                incomplete: false,
            }],
            first_open: 1,
            error: None,
        })
    }

    /// Removes everything it can; fails with the first failure (see the module header),
    /// or at once if a directory reopened on the way up is not the one left there.
    fn run(mut self) -> io::Result<()> {
        let mut since_check = 0usize;
        loop {
            let next = self.top().todo.pop();
            match next {
                Some((name, kind)) => {
                    // A directory with many entries is re-checked as it is emptied.
                    since_check += 1;
                    if since_check == CHECK_EVERY {
                        since_check = 0;
                        self.verify_open_levels()?;
                    }
                    if let Err(e) = self.entry(name, kind) {
                        self.fail(e);
                    }
                }
                None if self.stack.len() == 1 => break,
                None => {
                    self.ascend()?;
                    since_check = 0;
                    self.verify_open_levels()?;
                }
            }
        }
        self.error.map_or(Ok(()), Err)
    }

    /// Checks that every open level below the top still sits in the level recorded
    /// above it: a directory moved out of the tree (by a process of the same user, say a
    /// child moving its results away at SIGTERM) is not emptied any further where it
    /// landed. Closed levels are checked when they are reopened. One `statx` per open
    /// level (at most [`MAX_OPEN`]).
    fn verify_open_levels(&self) -> io::Result<()> {
        for i in self.first_open.max(1)..self.stack.len() {
            let dir = self.stack[i].dir.as_ref().ok_or(Errno::BADF)?;
            if !self.fs.parent_place(dir)?.same_as(&self.stack[i - 1].place) {
                return Err(moved_error());
            }
        }
        Ok(())
    }

    fn top(&mut self) -> &mut Frame<F::Dir> {
        self.stack
            .last_mut()
            .expect("the top frame is never popped")
    }

    fn top_dir(&self) -> Result<&F::Dir, Errno> {
        // The top frame is always open: a frame is reopened before it becomes the top.
        self.stack
            .last()
            .expect("the top frame is never popped")
            .dir
            .as_ref()
            .ok_or(Errno::BADF)
    }

    /// Removes `name` from the current directory, or enters it if it is a directory.
    fn entry(&mut self, name: CString, kind: FileType) -> io::Result<()> {
        let fs = self.fs;
        if kind != FileType::Directory {
            // Most entries are files: one syscall. `readdir` may not know the type.
            match fs.unlink(self.top_dir()?, &name, AtFlags::empty()) {
                Ok(()) | Err(Errno::NOENT) => return Ok(()),
                // A directory after all (EPERM is POSIX's code for it).
                Err(Errno::ISDIR | Errno::PERM) => {}
                Err(Errno::BUSY) => return Err(self.busy(&name)),
                Err(e) => return Err(e.into()),
            }
        }
        let here = self.top().place;
        let at = match fs.place_at(self.top_dir()?, &name) {
            Ok(p) => p,
            Err(Errno::NOENT) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        if at.kind != FileType::Directory {
            // Replaced by a file or a symlink since it was listed: unlink that.
            return self.unlink_other(&name);
        }
        // Checked before opening: an automount point is never triggered.
        if at.crosses_from(&here) {
            return Err(self.mount_point(&name));
        }
        let mut sub = match self.open_below(&name) {
            Ok(d) => d,
            Err(Errno::NOENT) => return Ok(()),
            // Swapped for a symlink or a file since the stat: unlink that instead.
            Err(Errno::NOTDIR | Errno::LOOP) => return self.unlink_other(&name),
            Err(e) => return Err(e.into()),
        };
        // What was opened decides: a mount may have appeared since the stat.
        let place = fs.place_of(&sub)?;
        if place.crosses_from(&here) {
            return Err(self.mount_point(&name));
        }
        let todo = fs.list(&mut sub)?;
        self.push(Frame {
            dir: Some(sub),
            place,
            name,
            todo,
            incomplete: false,
        });
        Ok(())
    }

    /// Unlinks a non-directory (a symlink is unlinked, not followed).
    fn unlink_other(&self, name: &CStr) -> io::Result<()> {
        match self.fs.unlink(self.top_dir()?, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(Errno::BUSY) => Err(self.busy(name)),
            Err(e) => Err(e.into()),
        }
    }

    /// `unlink` said `EBUSY`: a file bind-mounted there (reported as a mount point),
    /// or busy for another reason (reported as it is).
    fn busy(&self, name: &CStr) -> io::Error {
        let here = self.stack.last().expect("the top frame").place;
        match self.top_dir().and_then(|dir| self.fs.place_at(dir, name)) {
            Ok(at) if at.crosses_from(&here) => self.mount_point(name),
            _ => Errno::BUSY.into(),
        }
    }

    fn mount_point(&self, name: &CStr) -> io::Error {
        let mut path = String::new();
        for frame in &self.stack[1..] {
            path.push_str(&frame.name.to_string_lossy());
            path.push('/');
        }
        path.push_str(&name.to_string_lossy());
        mount_point_error(path)
    }

    /// Opens the directory `name` below the top, closing shallower levels if the process
    /// is out of fds.
    fn open_below(&mut self, name: &CStr) -> Result<F::Dir, Errno> {
        loop {
            match self.fs.open_below(self.top_dir()?, name) {
                Err(Errno::MFILE | Errno::NFILE) if self.close_shallowest() => {}
                r => return r,
            }
        }
    }

    /// Closes the shallowest open frame below the top one; false if there is none.
    fn close_shallowest(&mut self) -> bool {
        if self.first_open + 1 >= self.stack.len() {
            return false;
        }
        self.stack[self.first_open].dir = None;
        self.first_open += 1;
        true
    }

    fn push(&mut self, frame: Frame<F::Dir>) {
        if self.stack.len() - self.first_open >= MAX_OPEN {
            self.close_shallowest();
        }
        self.stack.push(frame);
        #[cfg(test)]
        tests::ON_PUSH.with_borrow_mut(|hook| {
            if let Some(hook) = hook {
                hook(self.stack.len() - 1, self.stack.len() - self.first_open);
            }
        });
    }

    /// The top directory is done: go back to its parent (reopening and verifying it if
    /// it was closed) and remove it there, unless something inside was left.
    fn ascend(&mut self) -> io::Result<()> {
        let fs = self.fs;
        let child = self
            .stack
            .pop()
            .expect("ascend is never called on the top frame");
        let up = self.stack.len() - 1;
        if up >= 1 && self.first_open > up {
            let parent = fs.open_parent(child.dir.as_ref().ok_or(Errno::BADF)?)?;
            if !fs.place_of(&parent)?.same_as(&self.stack[up].place) {
                return Err(moved_error());
            }
            self.stack[up].dir = Some(parent);
            self.first_open = up;
        }
        if child.incomplete {
            self.top().incomplete = true;
            return Ok(());
        }
        drop(child.dir);
        // The name must still be the directory just emptied.
        let removed = match fs.place_at(self.top_dir()?, child.name.as_c_str()) {
            Ok(p) if p.same_as(&child.place) => fs
                .unlink(self.top_dir()?, &child.name, AtFlags::REMOVEDIR)
                .or_else(|e| {
                    if e == Errno::NOENT {
                        Ok(())
                    } else {
                        Err(e.into())
                    }
                }),
            Ok(_) => Err(replaced_error()),
            Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(e.into()),
        };
        if let Err(e) = removed {
            self.fail(e);
        }
        Ok(())
    }

    /// Records a failure in the current directory (it will not be empty).
    fn fail(&mut self, e: io::Error) {
        self.top().incomplete = true;
        // A mount point yields to the first other failure.
        let replace = self
            .error
            .as_ref()
            .is_none_or(|prev| is_mount_point_error(prev) && !is_mount_point_error(&e));
        if replace {
            self.error = Some(e);
        }
    }
}

/// `unlinkat` through `fs`, a missing name being [`Outcome::AlreadyGone`].
fn unlink_gone_ok<F: WalkFs>(
    fs: &F,
    dir: &F::Dir,
    name: &CStr,
    flags: AtFlags,
    ok: Outcome,
) -> io::Result<Outcome> {
    match fs.unlink(dir, name, flags) {
        Ok(()) => Ok(ok),
        Err(Errno::NOENT) => Ok(Outcome::AlreadyGone),
        Err(e) => Err(e.into()),
    }
}

fn unlink_missing_ok(
    dir: impl AsFd,
    name: &OsStr,
    flags: AtFlags,
    ok: Outcome,
) -> io::Result<Outcome> {
    match rustix::fs::unlinkat(dir, name, flags) {
        Ok(()) => Ok(ok),
        Err(Errno::NOENT) => Ok(Outcome::AlreadyGone),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::os::unix::fs::symlink;

    /// A test's observer of the walk: (depth, open levels).
    type PushHook = Box<dyn FnMut(usize, usize)>;

    thread_local! {
        /// Called with the new depth and the number of open levels after each frame is
        /// pushed, on the walking thread.
        pub(in crate::sys) static ON_PUSH: RefCell<Option<PushHook>> =
            const { RefCell::new(None) };
    }

    /// Makes a chain `d/d/.../d` of `depth` levels below `dir` through fds (the path
    /// would be longer than `PATH_MAX`), with a file every 10 levels.
    fn chain(dir: &OwnedFd, depth: usize) {
        let mut at = dir.try_clone().unwrap();
        for level in 0..depth {
            rustix::fs::mkdirat(&at, c"d", Mode::RWXU).unwrap();
            if level % 10 == 0 {
                let flags = OFlags::CREATE | OFlags::WRONLY | OFlags::CLOEXEC;
                drop(rustix::fs::openat(&at, c"f", flags, Mode::RUSR).unwrap());
            }
            at = open_dir_nofollow(&at, c"d").unwrap();
        }
    }

    fn scratch() -> (std::path::PathBuf, OwnedFd) {
        let path = std::env::temp_dir().join(format!(
            "custodian-remove-test-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir(&path).unwrap();
        let fd = open_dir_nofollow(rustix::fs::CWD, &path).unwrap();
        (path, fd)
    }

    fn id_of(path: &std::path::Path) -> FileId {
        use std::os::unix::fs::MetadataExt;
        let md = std::fs::symlink_metadata(path).unwrap();
        FileId {
            dev: md.dev(),
            ino: md.ino(),
        }
    }

    #[test]
    fn removes_a_tree_without_following_symlinks() {
        let (root, fd) = scratch();
        let (outside, _ofd) = scratch();
        std::fs::write(outside.join("precious"), b"keep me").unwrap();
        let tree = root.join("tree");
        std::fs::create_dir_all(tree.join("a/b/c")).unwrap();
        std::fs::write(tree.join("a/b/c/file"), b"x").unwrap();
        symlink(&outside, tree.join("a/link-to-outside")).unwrap();
        symlink(outside.join("precious"), tree.join("a/b/link-to-file")).unwrap();
        let id = id_of(&tree);
        assert_eq!(
            remove_tree_at(&fd, OsStr::new("tree"), id).unwrap(),
            Outcome::Removed
        );
        assert!(!tree.exists());
        assert_eq!(std::fs::read(outside.join("precious")).unwrap(), b"keep me");
        std::fs::remove_dir_all(&root).unwrap();
        std::fs::remove_dir_all(&outside).unwrap();
    }

    #[test]
    fn a_symlink_planted_at_the_name_is_unlinked_not_followed() {
        let (root, fd) = scratch();
        let (outside, _ofd) = scratch();
        std::fs::write(outside.join("precious"), b"keep").unwrap();
        let id = id_of(&outside);
        symlink(&outside, root.join("d")).unwrap();
        assert_eq!(
            remove_tree_at(&fd, OsStr::new("d"), id).unwrap(),
            Outcome::SymlinkRemoved
        );
        assert!(outside.join("precious").exists());
        symlink(outside.join("precious"), root.join("f")).unwrap();
        assert_eq!(
            remove_file_at(&fd, OsStr::new("f"), id).unwrap(),
            Outcome::SymlinkRemoved
        );
        assert!(outside.join("precious").exists());
        std::fs::remove_dir_all(&root).unwrap();
        std::fs::remove_dir_all(&outside).unwrap();
    }

    #[test]
    fn a_replaced_entry_is_left_in_place() {
        let (root, fd) = scratch();
        std::fs::write(root.join("f"), b"1").unwrap();
        let id = id_of(&root.join("f"));
        std::fs::remove_file(root.join("f")).unwrap();
        std::fs::write(root.join("g"), b"keep inode busy").unwrap();
        std::fs::write(root.join("f"), b"2").unwrap();
        if id_of(&root.join("f")) != id {
            assert!(remove_file_at(&fd, OsStr::new("f"), id).is_err());
            assert!(root.join("f").exists());
        }
        assert_eq!(
            remove_file_at(&fd, OsStr::new("missing"), id).unwrap(),
            Outcome::AlreadyGone
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_deep_tree_is_removed_on_a_small_stack_within_the_fd_bound() {
        let (root, fd) = scratch();
        std::fs::create_dir(root.join("tree")).unwrap();
        let id = id_of(&root.join("tree"));
        chain(&open_dir_nofollow(&fd, c"tree").unwrap(), 1000);
        // 64 KiB of stack: a recursion per level would overflow it long before the bottom.
        let outcome = std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(move || {
                let most = std::rc::Rc::new(std::cell::Cell::new(0));
                let seen = most.clone();
                ON_PUSH.set(Some(Box::new(move |depth, _| {
                    seen.set(seen.get().max(depth))
                })));
                let r = remove_tree_at(&fd, OsStr::new("tree"), id).unwrap();
                ON_PUSH.set(None);
                (r, most.get())
            })
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(outcome, (Outcome::Removed, 1000));
        assert!(!root.join("tree").exists());
        std::fs::remove_dir(&root).unwrap();
    }

    #[test]
    fn at_most_max_open_levels_hold_an_fd() {
        let (root, fd) = scratch();
        chain(&fd, 100);
        let most = std::rc::Rc::new(std::cell::Cell::new((0, 0)));
        let seen = most.clone();
        ON_PUSH.set(Some(Box::new(move |depth, open| {
            let (d, o) = seen.get();
            seen.set((d.max(depth), o.max(open)));
        })));
        clear_dir(&fd, FileId::of_fd(&fd).unwrap()).unwrap();
        ON_PUSH.set(None);
        assert_eq!(most.get(), (100, MAX_OPEN));
        assert!(std::fs::read_dir(&root).unwrap().next().is_none());
        std::fs::remove_dir(&root).unwrap();
    }

    #[test]
    fn a_tree_moved_during_removal_stops_the_walk_at_the_unverified_level() {
        let (root, fd) = scratch();
        let (outside, _ofd) = scratch();
        std::fs::write(outside.join("precious"), b"keep").unwrap();
        std::fs::create_dir(root.join("tree")).unwrap();
        let id = id_of(&root.join("tree"));
        chain(&open_dir_nofollow(&fd, c"tree").unwrap(), 60);
        let (from, to) = (root.join("tree/d/d/d"), outside.join("d"));
        ON_PUSH.set(Some(Box::new(move |depth, _| {
            // Deep down, the levels above are closed: move a middle one away.
            if depth == 50 {
                std::fs::rename(&from, &to).unwrap();
            }
        })));
        let err = remove_tree_at(&fd, OsStr::new("tree"), id).unwrap_err();
        ON_PUSH.set(None);
        assert!(err.to_string().contains("moved"), "{err}");
        // What was moved away was emptied as far as its verified levels go; the directory
        // it landed in and its other entries were not touched.
        assert_eq!(std::fs::read(outside.join("precious")).unwrap(), b"keep");
        assert!(outside.join("d").is_dir());
        assert!(root.join("tree/d/d").is_dir());
        std::fs::remove_dir_all(&root).unwrap();
        std::fs::remove_dir_all(&outside).unwrap();
    }
}
