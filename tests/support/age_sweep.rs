//! The age sweep tests' shared setup (`crash_age_sweep.rs`, `crash_age_sweep_edges.rs`).

#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_custodian::{AgeKeptReason as Why, AgeReport};

// Two seconds: a young entry must stay young through a scenario's sweeps on a busy machine.
pub(crate) const AGE: Duration = Duration::from_secs(2);
pub(crate) const HEX32: &str = "0123456789abcdef0123456789abcdef";

/// Setup, not an assertion: what was made before it is older than [`AGE`] after it.
pub(crate) fn age_past() {
    std::thread::sleep(AGE + Duration::from_millis(150));
}

/// Makes an abandoned-looking root: `custodian-<32 hex>`, mode 0700, a file inside.
pub(crate) fn abandoned_root(base: &Path, hex: &str) -> PathBuf {
    let root = base.join(format!("custodian-{hex}"));
    std::fs::create_dir(&root).unwrap();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(root.join("left-behind"), b"x").unwrap();
    root
}

pub(crate) fn kept(report: &AgeReport, path: &Path) -> Option<Why> {
    report
        .kept
        .iter()
        .find(|k| k.path == path)
        .map(|k| k.reason.clone())
}

pub(crate) fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

pub(crate) fn chown_nobody(path: &Path) {
    let nobody = rustix::fs::Uid::from_raw(65534);
    rustix::fs::chownat(
        rustix::fs::CWD,
        path,
        Some(nobody),
        Some(rustix::fs::Gid::from_raw(65534)),
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
}
