//! Tests of the removal walk on real files (the mock ones are in `mock_tests.rs`).

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
