//! Review: `AtomicFile::sweep` says it does not follow `dir` if `dir` is a symlink, and
//! opens it with `O_NOFOLLOW`. But a path ending in `/` (or `/.`) makes the kernel follow
//! a symlink in its last component whatever the flag: `sweep("link/")` swept the
//! symlink's target directory, exactly what `sweep("link")` refuses.

use std::os::unix::fs::symlink;
use std::time::Duration;

use custodian_suite::{entries, scratch_dir};
use tokio_custodian::{ATOMIC_TEMP_PREFIX, AtomicFile};

#[test]
fn a_symlinked_directory_is_not_followed_through_a_trailing_slash_or_dot() {
    let dir = scratch_dir("atomic-sweep-slash");
    let real = dir.join("real");
    std::fs::create_dir(&real).unwrap();
    let temp = format!("{ATOMIC_TEMP_PREFIX}0123456789abcdef");
    std::fs::write(real.join(&temp), b"x").unwrap();
    let link = dir.join("link");
    symlink(&real, &link).unwrap();
    let mut results = Vec::new();
    for spelled in ["link/", "link//", "link/."] {
        let path = dir.join(spelled);
        let got = AtomicFile::sweep(&path, Duration::ZERO);
        results.push((spelled, got.map_err(|e| (e.operation(), e.io_kind()))));
    }
    let left = entries(&real);
    std::fs::remove_dir_all(&dir).unwrap();
    for (spelled, got) in results {
        assert_eq!(
            got,
            Err((
                tokio_custodian::Operation::Cleanup,
                Some(std::io::ErrorKind::NotADirectory)
            )),
            "{spelled}: the symlinked directory was swept"
        );
    }
    assert_eq!(left, vec![temp]);
}
