//! A child's inspect entry (issue 20): its cgroup under the cgroup containment tier, and
//! a child reaped while its guard is still held is marked so (its pid may be another
//! process's now) and is no longer tied to a process of the list.

use std::time::Duration;

use tokio_custodian::{Containment, Inspection, Supervisor};

async fn look(sup: &Supervisor) -> Inspection {
    let socket = sup.inspect_socket().unwrap().to_path_buf();
    tokio::task::spawn_blocking(move || tokio_custodian::inspect(&socket))
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn a_contained_child_names_its_cgroup() {
    let sup = Supervisor::builder()
        .inspect(true)
        .containment(Containment::Auto)
        .start()
        .unwrap();
    let child = sup.command("sleep").arg("30").spawn().unwrap();
    let pid = child.id().unwrap();
    let seen = look(&sup).await;
    let entry = seen.live.iter().find(|r| r.pid == Some(pid));
    let entry = entry.unwrap_or_else(|| panic!("no entry with pid {pid}: {seen}"));
    if !sup.stats().containment.is_cgroup() {
        assert_eq!(entry.cgroup, None);
        eprintln!("skipped: no writable cgroup2 ({})", sup.stats().containment);
        sup.shutdown().await;
        return;
    }
    let cgroup = entry.cgroup.as_ref().expect("the child's cgroup");
    // The kernel's word: the child is a member of the cgroup its entry names.
    let procs = std::fs::read_to_string(cgroup.join("cgroup.procs")).unwrap();
    assert!(
        procs.lines().any(|l| l == pid.to_string()),
        "{procs} in {}",
        cgroup.display()
    );
    assert!(
        seen.to_string()
            .contains(&format!("cgroup {}", cgroup.display()))
    );
    drop(child);
    sup.shutdown().await;
}

#[tokio::test]
async fn a_reaped_child_is_marked_and_untied() {
    let sup = Supervisor::builder().inspect(true).start().unwrap();
    let mut child = sup.command("true").spawn().unwrap();
    let pid = child.id().unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
    let seen = look(&sup).await;
    let entry = &seen.live[0];
    assert_eq!((entry.pid, entry.reaped), (Some(pid), true), "{seen}");
    assert!(seen.children.iter().all(|c| c.resource.is_none()), "{seen}");
    assert!(seen.to_string().contains("(reaped)"));
    drop(child);
    sup.shutdown().await;
}
