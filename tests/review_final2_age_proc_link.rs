//! Review: the age sweep's base resolution (`CHASE_SAFE`, `recovery/age/base.rs`) read
//! every symlink's text and resolved it from `/`. A procfs "magic" link is not a path:
//! `/proc/PID/root` reads back as `/` while it leads to PID's root, in PID's mount
//! namespace; `/proc/self/fd/N` reads back as the path the file had. So `--base
//! /proc/PID/root/var/tmp`, an operator's way to sweep a container's `/var/tmp`, swept
//! the host's `/var/tmp` instead: the host's old files were removed, the container's
//! left. Now a link on procfs is followed by the kernel (to the object it names) and
//! checked like any other step.
//!
//! Needs root (a mount namespace); says so and returns otherwise.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use custodian_suite::age::base_in;
use tokio_custodian::AgeSweep;

#[test]
fn a_base_through_proc_pid_root_is_swept_in_that_process_mount_namespace() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: needs root for a mount namespace");
        return;
    }
    let (scratch, base) = base_in("rvf2-proclink");
    let host_file = base.join("host-file");
    std::fs::write(&host_file, b"the host's").unwrap();
    // A process whose mount namespace has a tmpfs at `base`, with a file of its own.
    let script = format!(
        "mount -t tmpfs -o mode=0700 rvf2 '{b}' && echo x > '{b}/ns-file' && echo ready \
         && exec sleep 60",
        b = base.display()
    );
    let mut ns = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .stdout(Stdio::piped())
        .spawn()
        .expect("unshare");
    let mut line = String::new();
    BufReader::new(ns.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    if line.trim() != "ready" {
        let _ = ns.kill();
        let _ = ns.wait();
        eprintln!("skipped: no mount namespace here");
        return;
    }
    std::thread::sleep(Duration::from_millis(50));
    let through: PathBuf = format!("/proc/{}/root{}", ns.id(), base.display()).into();
    let ns_file = through.join("ns-file");
    assert!(ns_file.exists(), "the namespace's file is reachable");
    let report = AgeSweep::new(&through, Duration::ZERO).all(true).run();
    let ns_file_left = ns_file.exists();
    ns.kill().unwrap();
    ns.wait().unwrap();
    let report = report.expect("sweep");
    assert!(
        host_file.exists(),
        "the host's file, not under the named base, was removed: {report}"
    );
    assert!(
        !ns_file_left,
        "the file under the named base (in the process's mount namespace) was left: {report}"
    );
    std::fs::remove_dir_all(&scratch).unwrap();
}
