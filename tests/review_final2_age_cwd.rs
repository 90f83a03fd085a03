//! Review: the age sweep keeps a file another process holds open (`AgeKeptReason::Open`,
//! for a dead owner's surviving child still using its `TMPDIR`), but a directory was
//! judged by its times and emptiness alone: the empty, old directory a surviving child
//! works in (its `cd "$TMPDIR/job"`), or holds open, was removed under it, and its next
//! `> result` failed with `ENOENT`; the dead owner's root went with it when that was the
//! child's working directory. Now a directory that is a live process's working or root
//! directory, or that one holds open, is kept (`open`), and what contains it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use custodian_suite::age::kept;
use custodian_suite::poll_until;
use tokio_custodian::{AgeKeptReason, AgeSweep};

/// A dead owner's root (0700, unlocked) in a fresh base with an empty `job` dir.
fn dead_root(tag: &str) -> (PathBuf, PathBuf) {
    let base = PathBuf::from(format!("/tmp/rvf2{tag}-{}", std::process::id()));
    std::fs::create_dir(&base).unwrap();
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o700)).unwrap();
    let root = base.join(format!("custodian-{}", "e".repeat(32)));
    std::fs::create_dir_all(root.join("job")).unwrap();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700)).unwrap();
    (base, root)
}

/// A surviving child running `script` (with `$1` = `dir`), once it has exec'd `sleep`.
fn survivor(script: &str, dir: &Path) -> Child {
    let child = Command::new("sh")
        .args(["-c", script, "sh"])
        .arg(dir)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let exe = format!("/proc/{}/exe", child.id());
    assert!(poll_until(Duration::from_secs(5), || {
        std::fs::read_link(&exe).is_ok_and(|p| p.ends_with("sleep"))
    }));
    child
}

fn check(tag: &str, script: &str) {
    let (base, root) = dead_root(tag);
    let job = root.join("job");
    let mut child = survivor(script, &job);
    let report = AgeSweep::new(&base, Duration::ZERO).run();
    let left = job.exists();
    child.kill().unwrap();
    child.wait().unwrap();
    let report = report.expect("sweep");
    assert!(left, "a live process's directory was removed: {report}");
    assert_eq!(kept(&report, &job), Some(AgeKeptReason::Open), "{report}");
    // Once it is gone, all goes.
    let report = AgeSweep::new(&base, Duration::ZERO).run().unwrap();
    assert!(!root.exists(), "{report}");
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn a_surviving_childs_working_directory_is_kept() {
    check("cwd", "cd \"$1\" && exec sleep 60");
}

#[test]
fn a_directory_a_surviving_child_holds_open_is_kept() {
    check("dfd", "exec 3<\"$1\"; exec sleep 60");
}
