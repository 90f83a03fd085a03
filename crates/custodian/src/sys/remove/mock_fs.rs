//! An in-memory file system for the removal walk's unit tests (`mock_tests.rs`): every
//! call the walk makes is recorded as text (`open /root/a`), with the path the object has
//! at that moment; hooks change the tree right before a given call, as a concurrent
//! process would, and failures are injected by call text.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::ffi::{CStr, CString};
use std::io;
use std::rc::Rc;

use rustix::fs::{AtFlags, FileType};
use rustix::io::Errno;

use super::{WalkFs, clear};
use crate::sys::FileId;
use crate::sys::mount::Place;

/// The device of every mock object.
pub(super) const DEV: u64 = 7;
/// The mount everything is on unless a test says otherwise.
pub(super) const MNT: u64 = 10;
/// The inode of `/`, which holds `/root` (the directory being removed) and `/outside`.
pub(super) const SUPER: u64 = 1;

pub(super) struct Node {
    pub(super) kind: FileType,
    pub(super) parent: u64,
    pub(super) name: CString,
    pub(super) entries: BTreeMap<CString, u64>,
    pub(super) mnt: u64,
    pub(super) mount_root: bool,
}

#[derive(Default)]
pub(super) struct Tree {
    pub(super) nodes: HashMap<u64, Node>,
    pub(super) next: u64,
}

impl Tree {
    pub(super) fn new() -> Self {
        let mut t = Tree {
            nodes: HashMap::new(),
            next: SUPER + 1,
        };
        t.nodes.insert(
            SUPER,
            Node {
                kind: FileType::Directory,
                parent: SUPER,
                name: CString::default(),
                entries: BTreeMap::new(),
                mnt: MNT,
                mount_root: false,
            },
        );
        t
    }

    /// The inode at a `/`-separated path from `/`.
    pub(super) fn at(&self, path: &str) -> u64 {
        path.split('/')
            .filter(|c| !c.is_empty())
            .fold(SUPER, |ino, c| {
                self.nodes[&ino].entries[&CString::new(c).unwrap()]
            })
    }

    pub(super) fn add(&mut self, path: &str, kind: FileType) -> u64 {
        let (dir, name) = path.rsplit_once('/').unwrap();
        let parent = self.at(dir);
        let ino = self.next;
        self.next += 1;
        let name = CString::new(name).unwrap();
        self.nodes.insert(
            ino,
            Node {
                kind,
                parent,
                name: name.clone(),
                entries: BTreeMap::new(),
                mnt: self.nodes[&parent].mnt,
                mount_root: false,
            },
        );
        self.nodes
            .get_mut(&parent)
            .unwrap()
            .entries
            .insert(name, ino);
        ino
    }

    pub(super) fn dir(&mut self, path: &str) -> u64 {
        self.add(path, FileType::Directory)
    }

    pub(super) fn file(&mut self, path: &str) -> u64 {
        self.add(path, FileType::RegularFile)
    }

    /// Takes the entry at `path` out of its directory (the object lives on while held).
    pub(super) fn detach(&mut self, path: &str) -> u64 {
        let ino = self.at(path);
        let (parent, name) = {
            let n = &self.nodes[&ino];
            (n.parent, n.name.clone())
        };
        self.nodes.get_mut(&parent).unwrap().entries.remove(&name);
        ino
    }

    /// `rename(from, to)`, `to` being a new name in an existing directory.
    pub(super) fn rename(&mut self, from: &str, to: &str) {
        let ino = self.detach(from);
        let (dir, name) = to.rsplit_once('/').unwrap();
        let parent = self.at(dir);
        let name = CString::new(name).unwrap();
        let n = self.nodes.get_mut(&ino).unwrap();
        n.parent = parent;
        n.name = name.clone();
        self.nodes
            .get_mut(&parent)
            .unwrap()
            .entries
            .insert(name, ino);
    }

    pub(super) fn path(&self, mut ino: u64) -> String {
        let mut parts = Vec::new();
        while ino != SUPER {
            let n = &self.nodes[&ino];
            parts.push(n.name.to_string_lossy().into_owned());
            ino = n.parent;
        }
        parts.reverse();
        format!("/{}", parts.join("/"))
    }

    pub(super) fn place(&self, ino: u64) -> Place {
        let n = &self.nodes[&ino];
        Place::reported(FileId { dev: DEV, ino }, n.kind, n.mnt, n.mount_root)
    }

    pub(super) fn lookup(&self, dir: u64, name: &CStr) -> Result<u64, Errno> {
        self.nodes[&dir]
            .entries
            .get(name)
            .copied()
            .ok_or(Errno::NOENT)
    }

    /// Every path below `/`, for "what is left" assertions.
    pub(super) fn paths(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut todo = vec![SUPER];
        while let Some(ino) = todo.pop() {
            for &child in self.nodes[&ino].entries.values() {
                out.push(self.path(child));
                todo.push(child);
            }
        }
        out.sort();
        out
    }
}

type Hook = Box<dyn FnOnce(&mut Tree)>;

/// A mock [`WalkFs`]: a tree, the calls made on it, open directories counted against a
/// limit (`EMFILE` beyond it), hooks and injected failures keyed by call text.
pub(super) struct MockFs {
    pub(super) tree: RefCell<Tree>,
    pub(super) calls: RefCell<Vec<String>>,
    pub(super) open: Rc<Cell<usize>>,
    pub(super) peak: Cell<usize>,
    pub(super) limit: Cell<usize>,
    pub(super) hooks: RefCell<Vec<(String, Hook)>>,
    pub(super) fails: RefCell<HashMap<String, Errno>>,
}

/// An open mock directory: holds one of the limited "fds".
pub(super) struct MockDir {
    pub(super) ino: u64,
    pub(super) open: Rc<Cell<usize>>,
}

impl Drop for MockDir {
    fn drop(&mut self) {
        self.open.set(self.open.get() - 1);
    }
}

impl MockFs {
    pub(super) fn new(tree: Tree) -> Self {
        MockFs {
            tree: RefCell::new(tree),
            calls: RefCell::new(Vec::new()),
            open: Rc::new(Cell::new(0)),
            peak: Cell::new(0),
            limit: Cell::new(usize::MAX),
            hooks: RefCell::new(Vec::new()),
            fails: RefCell::new(HashMap::new()),
        }
    }

    /// Runs `f` on the tree right before the call `call` (once).
    pub(super) fn before(&self, call: &str, f: impl FnOnce(&mut Tree) + 'static) {
        self.hooks.borrow_mut().push((call.to_owned(), Box::new(f)));
    }

    /// Makes the call `call` fail with `e` (every time).
    pub(super) fn fail(&self, call: &str, e: Errno) {
        self.fails.borrow_mut().insert(call.to_owned(), e);
    }

    pub(super) fn open_dir(&self, ino: u64) -> Result<MockDir, Errno> {
        if self.open.get() >= self.limit.get() {
            return Err(Errno::MFILE);
        }
        self.open.set(self.open.get() + 1);
        self.peak.set(self.peak.get().max(self.open.get()));
        Ok(MockDir {
            ino,
            open: self.open.clone(),
        })
    }

    /// The directory at `path`, opened by the caller.
    pub(super) fn handle(&self, path: &str) -> MockDir {
        let ino = self.tree.borrow().at(path);
        self.open_dir(ino).unwrap()
    }

    /// Records the call (`verb` and the path of `name` in `dir`), runs its hook, and
    /// returns its injected failure.
    pub(super) fn call(&self, verb: &str, dir: u64, name: Option<&CStr>) -> Result<(), Errno> {
        let mut path = self.tree.borrow().path(dir);
        if let Some(name) = name {
            if path != "/" {
                path.push('/');
            }
            path.push_str(&name.to_string_lossy());
        }
        let call = format!("{verb} {path}");
        let hook = {
            let mut hooks = self.hooks.borrow_mut();
            let at = hooks.iter().position(|(c, _)| *c == call);
            at.map(|i| hooks.remove(i).1)
        };
        if let Some(hook) = hook {
            hook(&mut self.tree.borrow_mut());
        }
        let failed = self.fails.borrow().get(&call).copied();
        self.calls.borrow_mut().push(call);
        failed.map_or(Ok(()), Err)
    }

    /// The calls with one of these verbs, in order.
    pub(super) fn calls(&self, verbs: &[&str]) -> Vec<String> {
        self.calls
            .borrow()
            .iter()
            .filter(|c| verbs.iter().any(|v| c.split(' ').next() == Some(v)))
            .cloned()
            .collect()
    }

    pub(super) fn id(&self, path: &str) -> FileId {
        FileId {
            dev: DEV,
            ino: self.tree.borrow().at(path),
        }
    }

    pub(super) fn left(&self) -> Vec<String> {
        self.tree.borrow().paths()
    }
}

impl WalkFs for MockFs {
    type Dir = MockDir;

    fn list(&self, dir: &mut MockDir) -> Result<Vec<(CString, FileType)>, Errno> {
        self.call("list", dir.ino, None)?;
        let t = self.tree.borrow();
        Ok(t.nodes[&dir.ino]
            .entries
            .iter()
            .map(|(name, ino)| (name.clone(), t.nodes[ino].kind))
            .collect())
    }

    fn open_below(&self, dir: &MockDir, name: &CStr) -> Result<MockDir, Errno> {
        self.call("open", dir.ino, Some(name))?;
        let ino = {
            let t = self.tree.borrow();
            let ino = t.lookup(dir.ino, name)?;
            match t.nodes[&ino].kind {
                FileType::Directory => ino,
                FileType::Symlink => return Err(Errno::LOOP),
                _ => return Err(Errno::NOTDIR),
            }
        };
        self.open_dir(ino)
    }

    fn open_parent(&self, dir: &MockDir) -> Result<MockDir, Errno> {
        self.call("open", dir.ino, Some(c".."))?;
        let parent = self.tree.borrow().nodes[&dir.ino].parent;
        self.open_dir(parent)
    }

    fn place_of(&self, dir: &MockDir) -> Result<Place, Errno> {
        self.call("fstat", dir.ino, None)?;
        Ok(self.tree.borrow().place(dir.ino))
    }

    fn parent_place(&self, dir: &MockDir) -> Result<Place, Errno> {
        self.call("stat", dir.ino, Some(c".."))?;
        let t = self.tree.borrow();
        Ok(t.place(t.nodes[&dir.ino].parent))
    }

    fn place_at(&self, dir: &MockDir, name: &CStr) -> Result<Place, Errno> {
        self.call("stat", dir.ino, Some(name))?;
        let t = self.tree.borrow();
        Ok(t.place(t.lookup(dir.ino, name)?))
    }

    fn unlink(&self, dir: &MockDir, name: &CStr, flags: AtFlags) -> Result<(), Errno> {
        let rmdir = flags.contains(AtFlags::REMOVEDIR);
        self.call(if rmdir { "rmdir" } else { "unlink" }, dir.ino, Some(name))?;
        let mut t = self.tree.borrow_mut();
        let ino = t.lookup(dir.ino, name)?;
        let n = &t.nodes[&ino];
        match (rmdir, n.kind == FileType::Directory) {
            (true, false) => return Err(Errno::NOTDIR),
            (false, true) => return Err(Errno::ISDIR),
            (true, true) if !n.entries.is_empty() => return Err(Errno::NOTEMPTY),
            _ if n.mount_root => return Err(Errno::BUSY),
            _ => {}
        }
        t.nodes.get_mut(&dir.ino).unwrap().entries.remove(name);
        Ok(())
    }
}

/// Empties `/root` with the walk (as `clear_dir` does).
pub(super) fn clear_root(fs: &MockFs) -> io::Result<()> {
    let root = fs.handle("/root");
    let id = fs.id("/root");
    clear(fs, root, id)
}

pub(super) fn chain(t: &mut Tree, top: &str, depth: usize) -> String {
    let mut path = top.to_owned();
    for _ in 0..depth {
        path.push_str("/d");
        t.dir(&path);
    }
    path
}
