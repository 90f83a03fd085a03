//! The removal walk against an in-memory file system: its order, and its answers to
//! `EMFILE`, mount points, a moved tree, replaced entries and failing calls. Every call
//! the walk makes is recorded as text (`open /root/a`), with the path the object has at
//! that moment; hooks change the tree right before a given call, as a concurrent process
//! would. The real-file-system tests are in `remove.rs` and `tests/*.rs`.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::ffi::{CStr, CString};
use std::io;
use std::rc::Rc;

use rustix::fs::{AtFlags, FileType};
use rustix::io::Errno;

use super::{MAX_OPEN, Outcome, WalkFs, clear, is_mount_point_error, is_replaced, tree_at};
use crate::sys::FileId;
use crate::sys::mount::Place;

/// The device of every mock object.
const DEV: u64 = 7;
/// The mount everything is on unless a test says otherwise.
const MNT: u64 = 10;
/// The inode of `/`, which holds `/root` (the directory being removed) and `/outside`.
const SUPER: u64 = 1;

struct Node {
    kind: FileType,
    parent: u64,
    name: CString,
    entries: BTreeMap<CString, u64>,
    mnt: u64,
    mount_root: bool,
}

#[derive(Default)]
struct Tree {
    nodes: HashMap<u64, Node>,
    next: u64,
}

impl Tree {
    fn new() -> Self {
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
    fn at(&self, path: &str) -> u64 {
        path.split('/')
            .filter(|c| !c.is_empty())
            .fold(SUPER, |ino, c| {
                self.nodes[&ino].entries[&CString::new(c).unwrap()]
            })
    }

    fn add(&mut self, path: &str, kind: FileType) -> u64 {
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

    fn dir(&mut self, path: &str) -> u64 {
        self.add(path, FileType::Directory)
    }

    fn file(&mut self, path: &str) -> u64 {
        self.add(path, FileType::RegularFile)
    }

    /// Takes the entry at `path` out of its directory (the object lives on while held).
    fn detach(&mut self, path: &str) -> u64 {
        let ino = self.at(path);
        let (parent, name) = {
            let n = &self.nodes[&ino];
            (n.parent, n.name.clone())
        };
        self.nodes.get_mut(&parent).unwrap().entries.remove(&name);
        ino
    }

    /// `rename(from, to)`, `to` being a new name in an existing directory.
    fn rename(&mut self, from: &str, to: &str) {
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

    fn path(&self, mut ino: u64) -> String {
        let mut parts = Vec::new();
        while ino != SUPER {
            let n = &self.nodes[&ino];
            parts.push(n.name.to_string_lossy().into_owned());
            ino = n.parent;
        }
        parts.reverse();
        format!("/{}", parts.join("/"))
    }

    fn place(&self, ino: u64) -> Place {
        let n = &self.nodes[&ino];
        Place::reported(FileId { dev: DEV, ino }, n.kind, n.mnt, n.mount_root)
    }

    fn lookup(&self, dir: u64, name: &CStr) -> Result<u64, Errno> {
        self.nodes[&dir]
            .entries
            .get(name)
            .copied()
            .ok_or(Errno::NOENT)
    }

    /// Every path below `/`, for "what is left" assertions.
    fn paths(&self) -> Vec<String> {
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
struct MockFs {
    tree: RefCell<Tree>,
    calls: RefCell<Vec<String>>,
    open: Rc<Cell<usize>>,
    peak: Cell<usize>,
    limit: Cell<usize>,
    hooks: RefCell<Vec<(String, Hook)>>,
    fails: RefCell<HashMap<String, Errno>>,
}

/// An open mock directory: holds one of the limited "fds".
struct MockDir {
    ino: u64,
    open: Rc<Cell<usize>>,
}

impl Drop for MockDir {
    fn drop(&mut self) {
        self.open.set(self.open.get() - 1);
    }
}

impl MockFs {
    fn new(tree: Tree) -> Self {
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
    fn before(&self, call: &str, f: impl FnOnce(&mut Tree) + 'static) {
        self.hooks.borrow_mut().push((call.to_owned(), Box::new(f)));
    }

    /// Makes the call `call` fail with `e` (every time).
    fn fail(&self, call: &str, e: Errno) {
        self.fails.borrow_mut().insert(call.to_owned(), e);
    }

    fn open_dir(&self, ino: u64) -> Result<MockDir, Errno> {
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
    fn handle(&self, path: &str) -> MockDir {
        let ino = self.tree.borrow().at(path);
        self.open_dir(ino).unwrap()
    }

    /// Records the call (`verb` and the path of `name` in `dir`), runs its hook, and
    /// returns its injected failure.
    fn call(&self, verb: &str, dir: u64, name: Option<&CStr>) -> Result<(), Errno> {
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
    fn calls(&self, verbs: &[&str]) -> Vec<String> {
        self.calls
            .borrow()
            .iter()
            .filter(|c| verbs.iter().any(|v| c.split(' ').next() == Some(v)))
            .cloned()
            .collect()
    }

    fn id(&self, path: &str) -> FileId {
        FileId {
            dev: DEV,
            ino: self.tree.borrow().at(path),
        }
    }

    fn left(&self) -> Vec<String> {
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
fn clear_root(fs: &MockFs) -> io::Result<()> {
    let root = fs.handle("/root");
    let id = fs.id("/root");
    clear(fs, root, id)
}

fn chain(t: &mut Tree, top: &str, depth: usize) -> String {
    let mut path = top.to_owned();
    for _ in 0..depth {
        path.push_str("/d");
        t.dir(&path);
    }
    path
}

#[test]
fn each_directory_is_emptied_before_its_rmdir_entries_in_reverse_listing_order() {
    let mut t = Tree::new();
    t.dir("/root");
    t.dir("/root/a");
    t.file("/root/a/x");
    t.file("/root/a/y");
    t.file("/root/b");
    t.dir("/root/c");
    t.file("/root/c/z");
    let fs = MockFs::new(t);
    clear_root(&fs).unwrap();
    assert_eq!(
        fs.calls(&["list", "open", "unlink", "rmdir"]),
        [
            "list /root",
            "open /root/c",
            "list /root/c",
            "unlink /root/c/z",
            "rmdir /root/c",
            "unlink /root/b",
            "open /root/a",
            "list /root/a",
            "unlink /root/a/y",
            "unlink /root/a/x",
            "rmdir /root/a",
        ]
    );
    // Each directory is checked (stat of the name) right before its rmdir.
    let all = fs.calls(&["stat", "rmdir"]);
    let rmdir = all.iter().position(|c| c == "rmdir /root/c").unwrap();
    assert_eq!(all[rmdir - 1], "stat /root/c");
    assert_eq!(fs.left(), ["/root"]);
    assert_eq!(fs.open.get(), 0, "every directory opened was closed");
}

#[test]
fn remove_tree_at_removes_the_top_last_and_unlinks_a_symlink_at_the_name() {
    let mut t = Tree::new();
    t.dir("/root");
    t.dir("/root/a");
    t.file("/root/a/f");
    t.add("/link", FileType::Symlink);
    let fs = MockFs::new(t);
    let top = fs.handle("/");
    let id = fs.id("/root");
    assert_eq!(tree_at(&fs, &top, c"root", id).unwrap(), Outcome::Removed);
    let calls = fs.calls(&["unlink", "rmdir"]);
    assert_eq!(calls, ["unlink /root/a/f", "rmdir /root/a", "rmdir /root"]);
    // A symlink at the name is unlinked, never opened or listed.
    let before = fs.calls(&["open", "list"]).len();
    assert_eq!(
        tree_at(&fs, &top, c"link", id).unwrap(),
        Outcome::SymlinkRemoved
    );
    assert_eq!(fs.calls(&["open", "list"]).len(), before);
    assert_eq!(fs.left(), Vec::<String>::new());
    assert_eq!(
        tree_at(&fs, &top, c"root", id).unwrap(),
        Outcome::AlreadyGone
    );
}

#[test]
fn emfile_closes_the_shallowest_levels_and_the_way_up_reopens_them() {
    let mut t = Tree::new();
    t.dir("/root");
    let bottom = chain(&mut t, "/root", 6);
    t.file(&format!("{bottom}/f"));
    let fs = MockFs::new(t);
    // The caller's directory and two more.
    fs.limit.set(3);
    clear_root(&fs).unwrap();
    assert_eq!(fs.left(), ["/root"]);
    assert_eq!(fs.peak.get(), 3);
    let opens = fs.calls(&["open"]);
    // Six levels down, each open after the second one first hit EMFILE and closed a
    // shallower level; four of them are reopened through `..` on the way up.
    let reopened: Vec<_> = opens.iter().filter(|c| c.ends_with("/..")).collect();
    assert_eq!(reopened.len(), 4, "{opens:?}");
    assert_eq!(opens.len(), 6 + 4 + 4, "{opens:?}");
    // Every reopened level is verified before anything in it is removed.
    let calls = fs.calls.borrow().clone();
    for (i, c) in calls.iter().enumerate() {
        if c.starts_with("open ") && c.ends_with("/..") {
            assert!(calls[i + 1].starts_with("fstat "), "{calls:?}");
        }
    }
    assert_eq!(fs.open.get(), 0);
}

#[test]
fn emfile_with_nothing_left_to_close_keeps_its_kind_and_the_rest_is_removed() {
    let mut t = Tree::new();
    t.dir("/root");
    t.dir("/root/a");
    t.file("/root/a/f");
    t.file("/root/b");
    let fs = MockFs::new(t);
    fs.limit.set(1);
    let err = clear_root(&fs).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(Errno::MFILE.raw_os_error()));
    assert_eq!(fs.left(), ["/root", "/root/a", "/root/a/f"]);
}

#[test]
fn a_mount_point_is_never_entered_and_everything_around_it_is_removed() {
    let mut t = Tree::new();
    t.dir("/root");
    t.dir("/root/a");
    t.file("/root/a/f");
    let m = t.dir("/root/a/m");
    t.nodes.get_mut(&m).unwrap().mnt = MNT + 1;
    t.file("/root/a/m/secret");
    // A bind mount of the same file system: the same mount id as around it, but a root.
    let b = t.dir("/root/b");
    t.nodes.get_mut(&b).unwrap().mount_root = true;
    t.file("/root/b/secret");
    t.file("/root/c");
    let fs = MockFs::new(t);
    let err = clear_root(&fs).unwrap_err();
    assert!(is_mount_point_error(&err), "{err}");
    assert_eq!(err.kind(), io::ErrorKind::ResourceBusy);
    // The first one found is reported (the walk goes c, b, a), with its path.
    assert!(err.to_string().ends_with(": b"), "{err}");
    let touched = fs.calls(&["open", "list", "unlink", "rmdir"]);
    assert!(
        !touched
            .iter()
            .any(|c| c.contains("/root/a/m") || c.contains("/root/b")),
        "{touched:?}"
    );
    assert_eq!(
        fs.left(),
        [
            "/root",
            "/root/a",
            "/root/a/m",
            "/root/a/m/secret",
            "/root/b",
            "/root/b/secret"
        ]
    );
}

#[test]
fn a_mount_that_appears_between_the_stat_and_the_open_is_not_listed() {
    let mut t = Tree::new();
    t.dir("/root");
    let n = t.dir("/root/n");
    t.file("/root/n/secret");
    let fs = MockFs::new(t);
    fs.before("open /root/n", move |t| {
        t.nodes.get_mut(&n).unwrap().mnt = MNT + 1
    });
    let err = clear_root(&fs).unwrap_err();
    assert!(is_mount_point_error(&err), "{err}");
    assert_eq!(fs.calls(&["list"]), ["list /root"]);
    assert_eq!(fs.left(), ["/root", "/root/n", "/root/n/secret"]);
}

#[test]
fn a_parent_whose_identity_changed_stops_the_walk_at_once() {
    let mut t = Tree::new();
    t.dir("/root");
    t.dir("/outside");
    t.file("/outside/precious");
    let depth = MAX_OPEN + 4;
    let bottom = chain(&mut t, "/root", depth);
    t.file(&format!("{bottom}/f"));
    let fs = MockFs::new(t);
    // Deep down, the four shallowest levels are closed: move the second one away.
    fs.before(&format!("unlink {bottom}/f"), |t| {
        t.rename("/root/d/d", "/outside/d");
    });
    let err = clear_root(&fs).unwrap_err();
    assert!(err.to_string().contains("moved"), "{err}");
    let calls = fs.calls.borrow().clone();
    // The failed check is the last call: nothing is removed after it. (The level that
    // moved is caught by the check of the open levels' parents on the way up.)
    assert_eq!(
        calls[calls.len() - 2..],
        ["rmdir /outside/d/d", "stat /outside/d/.."],
        "{calls:?}"
    );
    // What was moved was emptied as far as its verified levels go; where it landed, and
    // everything above the unverified level, is kept.
    assert_eq!(
        fs.left(),
        [
            "/outside",
            "/outside/d",
            "/outside/precious",
            "/root",
            "/root/d"
        ]
    );
    assert!(!calls.iter().any(|c| c.contains("precious")), "{calls:?}");
}

#[test]
fn a_directory_replaced_while_it_was_emptied_is_left_in_place() {
    let mut t = Tree::new();
    t.dir("/root");
    t.dir("/root/a");
    t.file("/root/a/f");
    let fs = MockFs::new(t);
    fs.before("unlink /root/a/f", |t| {
        t.detach("/root/a");
        t.dir("/root/a");
        t.file("/root/a/keep");
    });
    let err = clear_root(&fs).unwrap_err();
    assert!(is_replaced(&err), "{err}");
    assert!(fs.calls(&["rmdir"]).is_empty());
    assert_eq!(fs.left(), ["/root", "/root/a", "/root/a/keep"]);
}

#[test]
fn a_top_that_is_not_the_recorded_directory_is_not_entered() {
    let mut t = Tree::new();
    t.dir("/root");
    t.file("/root/f");
    t.dir("/other");
    let fs = MockFs::new(t);
    let top = fs.handle("/");
    let wrong = fs.id("/other");
    assert!(is_replaced(
        &tree_at(&fs, &top, c"root", wrong).unwrap_err()
    ));
    assert_eq!(
        fs.calls(&["open", "list", "unlink", "rmdir"]),
        Vec::<String>::new()
    );
    // Swapped between the stat and the open: what was opened is checked, not listed.
    let right = fs.id("/root");
    fs.before("open /root", |t| {
        t.detach("/root");
        t.dir("/root");
    });
    assert!(is_replaced(
        &tree_at(&fs, &top, c"root", right).unwrap_err()
    ));
    assert!(fs.calls(&["list", "unlink", "rmdir"]).is_empty());
    assert_eq!(fs.left(), ["/other", "/root"]);
}

#[test]
fn errors_keep_their_kind_and_a_mount_point_yields_to_any_other() {
    let mut t = Tree::new();
    t.dir("/root");
    t.dir("/root/a");
    t.file("/root/a/f");
    t.file("/root/a/g");
    let m = t.dir("/root/m");
    t.nodes.get_mut(&m).unwrap().mnt = MNT + 1;
    t.file("/root/z");
    let fs = MockFs::new(t);
    fs.fail("unlink /root/a/f", Errno::ACCESS);
    // The walk meets z, then the mount point m, then a/g and a/f.
    let err = clear_root(&fs).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
    assert_eq!(err.raw_os_error(), Some(Errno::ACCESS.raw_os_error()));
    // The failure is confined to its directory: everything else went.
    assert_eq!(fs.left(), ["/root", "/root/a", "/root/a/f", "/root/m"]);
    assert!(fs.calls(&["rmdir"]).is_empty());
}

/// A directory moved out of the tree while the walk is inside one of its subdirectories
/// (a child moving its results away at SIGTERM): back in it, the walk finds its `..`
/// changed and stops; nothing where it landed is removed. A shallow tree: every level is
/// open, none is reopened.
#[test]
fn a_shallow_level_moved_away_is_not_emptied_where_it_landed() {
    let mut t = Tree::new();
    t.dir("/root");
    t.dir("/outside");
    t.dir("/root/keep");
    for i in 0..20 {
        t.file(&format!("/root/keep/f{i}"));
    }
    t.dir("/root/keep/sub");
    t.file("/root/keep/sub/x");
    let fs = MockFs::new(t);
    fs.before("unlink /root/keep/sub/x", |t| {
        t.rename("/root/keep", "/outside/keep");
    });
    let err = clear_root(&fs).unwrap_err();
    assert!(err.to_string().contains("moved"), "{err}");
    let left = fs.left();
    for i in 0..20 {
        assert!(
            left.contains(&format!("/outside/keep/f{i}")),
            "f{i} was removed after its dir moved: {left:?}"
        );
    }
    let calls = fs.calls.borrow().clone();
    assert!(
        !calls
            .iter()
            .any(|c| c.starts_with("unlink /outside/keep/f")),
        "{calls:?}"
    );
}

/// A directory with many entries is re-checked while it is emptied: moved away midway,
/// the rest of it is kept.
#[test]
fn a_large_directory_moved_away_midway_is_not_emptied_further() {
    let mut t = Tree::new();
    t.dir("/root");
    t.dir("/outside");
    t.dir("/root/big");
    t.dir("/root/big/inner");
    for i in 0..200 {
        t.file(&format!("/root/big/inner/f{i:03}"));
    }
    let fs = MockFs::new(t);
    // Entries are taken from the end of the listing: f199 goes first.
    fs.before("unlink /root/big/inner/f150", |t| {
        t.rename("/root/big", "/outside/big");
    });
    let err = clear_root(&fs).unwrap_err();
    assert!(err.to_string().contains("moved"), "{err}");
    let removed_after = fs
        .calls
        .borrow()
        .iter()
        .filter(|c| c.starts_with("unlink /outside/"))
        .count();
    // At most one check interval of entries goes after the move.
    assert!(
        removed_after <= 64,
        "{removed_after} removed after the move"
    );
    assert!(fs.left().iter().any(|p| p == "/outside/big/inner/f000"));
}
