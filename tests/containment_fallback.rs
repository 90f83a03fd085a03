//! The containment tier's fallback (issue 19): where no writable cgroup v2 is there,
//! `Containment::Auto` picks the process-group tier and says why, and
//! `Containment::Required` fails `start` with a typed error naming what is missing.
//!
//! Each case runs in a child process of the test binary inside a private mount namespace
//! (`unshare --mount`), where the cgroup2 mount is made read-only (a read-only bind mount
//! over it) or hidden (a tmpfs over it); the host's mounts are untouched.

use std::path::PathBuf;
use std::process::Command;

use custodian_suite::{is_isolated, run_isolated};
use tokio_custodian::{Containment, ContainmentTier, Operation, Supervisor, Unavailable};

const ISOLATED: &str = "CUSTODIAN_CONTAINMENT_ISOLATED";

/// The cgroup2 mount point, from mountinfo.
fn cgroup2_mount() -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().rev().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        let dash = f.iter().position(|&x| x == "-")?;
        (f.get(dash + 1) == Some(&"cgroup2")).then(|| PathBuf::from(f[4]))
    })
}

fn mount(args: &[&str]) {
    let st = Command::new("mount")
        .args(args)
        .status()
        .expect("run mount");
    assert!(st.success(), "mount {args:?}: {st}");
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Auto falls back and says why; Required fails naming the same; a child still runs, in
/// the process-group tier.
fn check_fallback(expected: impl Fn(&Unavailable) -> bool, kind: std::io::ErrorKind) {
    rt().block_on(async {
        let sup = Supervisor::builder()
            .containment(Containment::Auto)
            .start()
            .unwrap();
        let tier = sup.stats().containment;
        match &tier {
            ContainmentTier::ProcessGroup { reason } => {
                assert!(expected(reason), "unexpected reason: {reason:?}");
            }
            other => panic!("the cgroup tier was chosen: {other}"),
        }
        println!("auto: {tier}");
        let child = sup.command("true").spawn().unwrap();
        assert_eq!(child.cgroup(), None);
        child.close().await.unwrap();
        let report = sup.shutdown().await;
        assert!(report.is_clean(), "{report}");
        assert_eq!(report.stats.containment, tier, "the report says the tier");
        assert!(
            report.to_string().contains("process group (no cgroup:"),
            "{report}"
        );

        let err = Supervisor::builder()
            .containment(Containment::Required)
            .start()
            .unwrap_err();
        println!("required: {err}");
        assert_eq!(err.operation(), Operation::Containment);
        assert_eq!(err.io_kind(), Some(kind));
        let why = Unavailable::of(&err).expect("the reason is in the error");
        assert!(expected(why), "unexpected reason: {why:?}");
    });
}

#[test]
fn a_read_only_cgroup2_falls_back_or_fails_required() {
    if cgroup2_mount().is_none() {
        eprintln!("skipped: no cgroup2 mount");
        return;
    }
    run_isolated("read_only_isolated", ISOLATED, true);
}

#[test]
#[ignore = "run isolated by a_read_only_cgroup2_falls_back_or_fails_required"]
fn read_only_isolated() {
    if !is_isolated(ISOLATED, "read_only_isolated") {
        return;
    }
    let m = cgroup2_mount().unwrap();
    let m = m.to_str().unwrap();
    mount(&["--bind", m, m]);
    mount(&["-o", "remount,bind,ro", m]);
    check_fallback(
        |r| matches!(r, Unavailable::ReadOnly { mount } if mount.to_str() == Some(m)),
        std::io::ErrorKind::ReadOnlyFilesystem,
    );
}

#[test]
fn a_hidden_cgroup2_falls_back_or_fails_required() {
    if cgroup2_mount().is_none() {
        eprintln!("skipped: no cgroup2 mount");
        return;
    }
    run_isolated("hidden_isolated", ISOLATED, true);
}

#[test]
#[ignore = "run isolated by a_hidden_cgroup2_falls_back_or_fails_required"]
fn hidden_isolated() {
    if !is_isolated(ISOLATED, "hidden_isolated") {
        return;
    }
    let m = cgroup2_mount().unwrap();
    mount(&["-t", "tmpfs", "none", m.to_str().unwrap()]);
    check_fallback(
        |r| *r == Unavailable::NotMounted,
        std::io::ErrorKind::NotFound,
    );
}

/// Another user, without delegation: creating a cgroup in this process's cgroup fails.
/// Run as `nobody` through `setpriv`, in a child process that runs this test binary.
#[test]
fn an_undelegated_user_falls_back_or_fails_required() {
    if cgroup2_mount().is_none() || !rustix::process::geteuid().is_root() {
        eprintln!("skipped: no cgroup2 mount, or not root");
        return;
    }
    if Command::new("setpriv").arg("--help").output().is_err() {
        eprintln!("skipped: no setpriv");
        return;
    }
    let _serial = custodian_suite::serial();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "undelegated_isolated",
            "--ignored",
            "--nocapture",
        ])
        .env(ISOLATED, "undelegated_isolated")
        .env("TMPDIR", "/tmp")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[ignore = "run as nobody by an_undelegated_user_falls_back_or_fails_required"]
fn undelegated_isolated() {
    if !is_isolated(ISOLATED, "undelegated_isolated") {
        return;
    }
    check_fallback(
        |r| matches!(r, Unavailable::NotWritable { .. }),
        std::io::ErrorKind::PermissionDenied,
    );
}
