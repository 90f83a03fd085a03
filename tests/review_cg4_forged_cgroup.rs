//! Review of 1058ba6: a forged journal whose owner record names a *live* cgroup-tier
//! supervisor's pid with another start time ("dead": the start time differs), and whose
//! cgroup record names that supervisor's cgroup with its right inode. The recorded
//! cgroup's name is `custodian-<that pid>-<random>`, so the name check ("made by the
//! journal owner's pid") held, and the sweep stopped the live supervisor's children
//! (SIGTERM through the new member scan, then `cgroup.kill`) and removed its cgroup.
//! Here the live supervisor is the sweeper itself, sweeping its own state dir.
//!
//! Not introduced by 1058ba6: `cgroup.kill` took the same forged record before it (the
//! commit adds the SIGTERM and grace first). Who can forge: whoever can write a 0600
//! journal in the 0700 state dir (its user, or root). Fixed by naming the supervisor's
//! cgroup with its creator's start time (and pid namespace) as well as its pid
//! (`custodian-<pid>-<start>-<pidns>-<random>`): a record can only lead to a cgroup made
//! by the very process its journal names, and a forged start time makes the name not
//! match.
//!
//! Skipped, saying so, without a writable cgroup2.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::Duration;

use custodian_suite::journal_frame as frame;
use custodian_suite::{scratch_dir, serial};
use tokio_custodian::{Containment, ContainmentTier, Recovery, Supervisor};

#[test]
fn a_forged_journal_with_a_live_supervisor_s_pid_never_reaches_its_cgroup() {
    let _s = serial();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let scratch = scratch_dir("cg4-forged");
    let state = scratch.join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    rt.block_on(async {
        let sup = Supervisor::builder()
            .containment(Containment::Auto)
            .reap_abandoned(false)
            .start()
            .unwrap();
        let ContainmentTier::Cgroup { path } = sup.stats().containment else {
            eprintln!("skipped: no writable cgroup2");
            return;
        };
        let mut child = sup.command("sleep").arg("1000").spawn().unwrap();
        let pid = child.id().unwrap();
        // The forgery: this process's pid, start time 1, and its supervisor's cgroup.
        let me = std::process::id();
        let stem = format!("{me}-1-0123456789abcdef");
        let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
        let mut owner = vec![1];
        owner.extend(me.to_le_bytes());
        owner.extend(1u64.to_le_bytes());
        owner.extend(boot.trim().as_bytes());
        let meta = std::fs::metadata(&path).unwrap();
        let mut cgroup = vec![11];
        cgroup.extend(meta.dev().to_le_bytes());
        cgroup.extend(meta.ino().to_le_bytes());
        cgroup.extend(path.as_os_str().as_encoded_bytes());
        let journal = state.join(format!("{stem}.journal"));
        let mut bytes = frame(&owner);
        bytes.extend(frame(&cgroup));
        std::fs::write(&journal, bytes).unwrap();
        std::fs::set_permissions(&journal, std::fs::Permissions::from_mode(0o600)).unwrap();

        let report = Recovery::new()
            .state_dir(&state)
            .grace(Duration::from_millis(300))
            .run()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let alive = child.try_wait().unwrap().is_none() && custodian_suite::pid_running(pid);
        let cgroup_left = path.exists();
        let journal_kept = journal.exists();
        let _ = child.kill().await;
        let _ = sup.shutdown().await;
        let _ = std::fs::remove_dir_all(&scratch);
        eprintln!("{report}");
        assert!(alive, "the live supervisor's child was stopped\n{report}");
        assert!(
            cgroup_left,
            "the live supervisor's cgroup was removed\n{report}"
        );
        // A record that names a cgroup its owner did not make is damage: said (not
        // clean), left alone, and the journal goes as any journal whose record is
        // refused as an unsafe path does (nothing of it is left to act on).
        let _ = journal_kept;
        let journals = report.journals.as_ref().unwrap();
        assert!(
            journals
                .skipped
                .iter()
                .any(|s| matches!(s.reason, tokio_custodian::SkipReason::UnsafePath { .. })),
            "{report}"
        );
        assert!(journals.stopped.is_empty(), "{report}");
        assert!(journals.cgroups.is_empty(), "{report}");
        assert!(!report.is_clean(), "{report}");
    });
}
