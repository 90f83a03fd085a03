//! The removal walk against an in-memory file system: its order, and its answers to
//! `EMFILE`, mount points, a moved tree, replaced entries and failing calls. Every call
//! the walk makes is recorded as text (`open /root/a`), with the path the object has at
//! that moment; hooks change the tree right before a given call, as a concurrent process
//! would (the mock is in `mock_fs.rs`). The real-file-system tests are in `remove.rs`
//! and `tests/*.rs`.

use std::io;

use rustix::fs::FileType;
use rustix::io::Errno;

use super::mock_fs::*;
use super::{MAX_OPEN, Outcome, is_mount_point_error, is_replaced, tree_at};

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
