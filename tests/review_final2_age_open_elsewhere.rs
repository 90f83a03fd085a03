//! Review: `AgeKeptReason::Open` follows each `/proc/PID/fd` to the open file itself
//! (its device and inode), so a file held open through another path, in another mount
//! namespace (a bind mount of the base's root at another place), and a directory held
//! open there, are seen as the very entries the walk reaches. Held: no defect found;
//! this pins it.
//!
//! Needs root (a mount namespace); says so and returns otherwise.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use custodian_suite::age::kept;
use custodian_suite::scratch_dir;
use tokio_custodian::{AgeKeptReason, AgeSweep};

#[test]
fn a_file_held_open_through_a_bind_mount_in_another_mount_namespace_is_kept() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: needs root for a mount namespace");
        return;
    }
    let scratch = scratch_dir("rvf2-open-ns");
    let base = scratch.join("base");
    let elsewhere = scratch.join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let root = base.join(format!("custodian-{}", "f".repeat(32)));
    std::fs::create_dir_all(root.join("job")).unwrap();
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(root.join("db"), b"x").unwrap();
    // Only in its own namespace is the root at `elsewhere`; it opens both from there.
    let script = "mount --bind \"$1\" \"$2\" && exec 3<\"$2/db\" 4<\"$2/job\" && echo ready \
                  && exec sleep 60";
    let mut holder = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", script, "sh"])
        .arg(&root)
        .arg(&elsewhere)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(holder.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    if line.trim() != "ready" {
        let _ = holder.kill();
        let _ = holder.wait();
        eprintln!("skipped: no mount namespace here");
        return;
    }
    let report = AgeSweep::new(&base, Duration::ZERO).run();
    holder.kill().unwrap();
    holder.wait().unwrap();
    let report = report.expect("sweep");
    assert_eq!(
        kept(&report, &root.join("db")),
        Some(AgeKeptReason::Open),
        "{report}"
    );
    assert_eq!(
        kept(&report, &root.join("job")),
        Some(AgeKeptReason::Open),
        "{report}"
    );
    assert!(
        root.join("db").exists() && root.join("job").exists(),
        "{report}"
    );
    std::fs::remove_dir_all(&scratch).unwrap();
}
