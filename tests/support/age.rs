//! The age sweep review tests' shared setup (`review_age_*.rs`).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tokio_custodian::{AgeKeptReason, AgeReport};

/// A fresh scratch dir (tagged `tag`) and a private (0700) `base` inside it.
pub fn base_in(tag: &str) -> (PathBuf, PathBuf) {
    let scratch = crate::scratch_dir(tag);
    let base = scratch.join("base");
    std::fs::create_dir(&base).expect("create the base");
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o700))
        .expect("chmod the base");
    (scratch, base)
}

/// Why the sweep kept `path`, if it did.
pub fn kept(report: &AgeReport, path: &Path) -> Option<AgeKeptReason> {
    report
        .kept
        .iter()
        .find(|k| k.path == path)
        .map(|k| k.reason.clone())
}
