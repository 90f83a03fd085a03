//! The walk behind [`remove_tree_at`](super::remove_tree_at) and
//! [`clear_dir`](super::clear_dir): iterative, depth-first, fd-relative, with an
//! explicit stack of frames (see the invariants in `remove.rs`).

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::AsFd;

use rustix::fs::{AtFlags, FileType};
use rustix::io::Errno;

use super::{
    CHECK_EVERY, MAX_OPEN, Outcome, WalkFs, is_mount_point_error, mount_point_error, moved_error,
    replaced_error,
};
use crate::sys::mount::Place;

/// One directory on the walk's current path, from the top one down.
pub(super) struct Frame<D> {
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
pub(super) struct Walk<'f, F: WalkFs> {
    fs: &'f F,
    stack: Vec<Frame<F::Dir>>,
    /// Frames `1..first_open` are closed, the others open (frame 0 is the caller's).
    first_open: usize,
    error: Option<io::Error>,
}

impl<'f, F: WalkFs> Walk<'f, F> {
    pub(super) fn new(fs: &'f F, mut top: F::Dir, place: Place) -> io::Result<Self> {
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
    pub(super) fn run(mut self) -> io::Result<()> {
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
        super::tests::ON_PUSH.with_borrow_mut(|hook| {
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
pub(super) fn unlink_gone_ok<F: WalkFs>(
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

pub(super) fn unlink_missing_ok<N: rustix::path::Arg>(
    dir: impl AsFd,
    name: N,
    flags: AtFlags,
    ok: Outcome,
) -> io::Result<Outcome> {
    match rustix::fs::unlinkat(dir, name, flags) {
        Ok(()) => Ok(ok),
        Err(Errno::NOENT) => Ok(Outcome::AlreadyGone),
        Err(e) => Err(e.into()),
    }
}
