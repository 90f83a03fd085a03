use super::*;

/// This process's cgroup directory, if cgroup2 is mounted and we can create in it.
fn own_dir() -> Option<PathBuf> {
    let mount = discover::find_mount(&std::fs::read_to_string("/proc/self/mountinfo").ok()?)?;
    let own = discover::own_cgroup(&std::fs::read_to_string("/proc/self/cgroup").ok()?)?;
    let dir = discover::dir_of(&mount, &own)?;
    let probe = SupervisorCgroup::create(&dir, |_| Ok(())).ok()?;
    drop(probe);
    Some(dir)
}

macro_rules! need_cgroup {
    () => {
        match own_dir() {
            Some(d) => d,
            None => {
                eprintln!("skipped: no writable cgroup2");
                return;
            }
        }
    };
}

/// Spawns `prog args` into the cgroup whose `cgroup.procs` is `procs`, before it runs
/// any code, as the cgroup tier's spawn does.
fn spawn_into(procs: std::os::fd::OwnedFd, prog: &str, args: &[&str]) -> std::process::Child {
    let mut cmd = std::process::Command::new(prog);
    cmd.args(args);
    // SAFETY: one raw `write` between fork and exec (see `SupervisorCgroup::probe`).
    #[allow(unsafe_code)]
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
            rustix::io::write(&procs, b"0")?;
            Ok(())
        });
    }
    cmd.spawn().unwrap()
}

#[test]
fn probe_moves_a_forked_process_and_cleans_up() {
    let own = need_cgroup!();
    let sup = Arc::new(SupervisorCgroup::create(&own, |_| Ok(())).unwrap());
    sup.probe().unwrap();
    assert_eq!(
        std::fs::read_dir(sup.path())
            .unwrap()
            .filter(|e| { e.as_ref().unwrap().file_type().unwrap().is_dir() })
            .count(),
        0,
        "the probe's cgroup was removed"
    );
    let path = sup.path().to_path_buf();
    drop(sup);
    assert!(!path.exists(), "dropped: removed");
}

#[test]
fn a_child_cgroup_is_killed_emptied_and_removed_by_its_fd() {
    let own = need_cgroup!();
    let sup = Arc::new(SupervisorCgroup::create(&own, |_| Ok(())).unwrap());
    let (cg, procs) = sup.child(&[]).unwrap();
    let mut child = spawn_into(procs, "sh", &["-c", "setsid sleep 1000 & exec sleep 1000"]);
    let members = cg.path().join("cgroup.procs");
    let until = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(&members).unwrap().lines().count() < 2 {
        assert!(Instant::now() < until, "the setsid sleep never started");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(cg.populated().unwrap());
    assert_eq!(
        cg.remove().unwrap_err().raw_os_error(),
        Some(Errno::BUSY.raw_os_error()),
        "a populated cgroup is not removed"
    );
    cg.kill().unwrap();
    child.wait().unwrap();
    cg.wait_empty_blocking(Duration::from_secs(5)).unwrap();
    cg.remove().unwrap();
    assert!(!cg.path().exists());
    // Removed: the fd no longer reaches anything, and a kill is a no-op.
    cg.kill().unwrap();
    assert!(!cg.populated().unwrap());
    drop(cg);
    sup.remove().unwrap();
    assert!(!sup.path().exists());
}

#[test]
fn a_name_that_is_not_the_cgroup_created_is_left_alone() {
    let own = need_cgroup!();
    let sup = Arc::new(SupervisorCgroup::create(&own, |_| Ok(())).unwrap());
    let (cg, procs) = sup.child(&[]).unwrap();
    drop(procs);
    // Another cgroup takes the name: removed by someone else, made again.
    std::fs::remove_dir(cg.path()).unwrap();
    std::fs::create_dir(cg.path()).unwrap();
    assert!(
        cg.kill().is_err(),
        "cgroup.kill reached a cgroup that is not ours"
    );
    cg.remove().unwrap();
    assert!(cg.path().exists(), "a cgroup that is not ours was removed");
    std::fs::remove_dir(cg.path()).unwrap();
    drop(cg);
    drop(sup);
}

#[test]
fn a_recorded_cgroup_is_killed_by_path_only_if_its_inode_matches() {
    let own = need_cgroup!();
    let sup = Arc::new(SupervisorCgroup::create(&own, |_| Ok(())).unwrap());
    let (cg, procs) = sup.child(&[]).unwrap();
    let mut child = spawn_into(procs, "sh", &["-c", "setsid sleep 1000 & exec sleep 1000"]);
    let (path, id) = (cg.path(), cg.id());
    let wrong = FileId {
        dev: id.dev,
        ino: id.ino + 1,
    };
    let bound = Duration::from_secs(5);
    assert_eq!(
        kill_recorded(&path, wrong, bound, &[]).unwrap(),
        Recorded::NotOurs
    );
    assert!(
        cg.populated().unwrap(),
        "a cgroup not proven ours was killed"
    );
    assert_eq!(
        kill_recorded(&path, id, bound, &[]).unwrap(),
        Recorded::Removed
    );
    assert!(!path.exists());
    child.wait().unwrap();
    assert_eq!(
        kill_recorded(&path, id, bound, &[]).unwrap(),
        Recorded::Gone
    );
    drop(cg);
    sup.remove().unwrap();
}

#[test]
fn cgroups_a_child_made_below_its_own_are_removed_with_it() {
    let own = need_cgroup!();
    let sup = Arc::new(SupervisorCgroup::create(&own, |_| Ok(())).unwrap());
    let (cg, procs) = sup.child(&[]).unwrap();
    drop(procs);
    // What a child running as root could do: nest cgroups in its own.
    std::fs::create_dir_all(cg.path().join("a/b")).unwrap();
    std::fs::create_dir(cg.path().join("c")).unwrap();
    cg.remove().unwrap();
    assert!(!cg.path().exists());
    drop(cg);
    // The supervisor's cgroup with a child cgroup left in it (an earlier removal failed).
    let (left, procs) = sup.child(&[]).unwrap();
    drop(procs);
    let path = left.path();
    std::mem::forget(left);
    sup.remove().unwrap();
    assert!(!path.exists() && !sup.path().exists());
}

#[test]
fn a_recorded_supervisor_cgroup_is_killed_whole_and_removed_with_its_children() {
    let own = need_cgroup!();
    let sup = Arc::new(SupervisorCgroup::create(&own, |_| Ok(())).unwrap());
    let (cg, procs) = sup.child(&[]).unwrap();
    let mut child = spawn_into(procs, "sh", &["-c", "setsid sleep 1000 & exec sleep 1000"]);
    // What recovery knows of a dead owner: its cgroup's path and inode.
    let done = kill_recorded(sup.path(), sup.id(), Duration::from_secs(5), &[]).unwrap();
    assert_eq!(done, Recorded::Removed);
    assert!(!cg.path().exists() && !sup.path().exists());
    child.wait().unwrap();
    drop(cg);
}

#[test]
fn a_recorded_cgroup_holding_a_spared_process_is_not_written_to() {
    let own = need_cgroup!();
    let sup = Arc::new(SupervisorCgroup::create(&own, |_| Ok(())).unwrap());
    let (cg, procs) = sup.child(&[]).unwrap();
    let mut child = spawn_into(procs, "sleep", &["1000"]);
    let pid = child.id();
    // The sweeper (here: the child stands in for it) is a member of a cgroup below.
    let done = kill_recorded(sup.path(), sup.id(), Duration::from_secs(5), &[1, pid]).unwrap();
    assert_eq!(done, Recorded::HoldsSpared(pid));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the spared process was killed"
    );
    assert!(sup.path().exists());
    let done = kill_recorded(sup.path(), sup.id(), Duration::from_secs(5), &[]).unwrap();
    assert_eq!(done, Recorded::Removed);
    child.wait().unwrap();
    drop(cg);
}

#[test]
fn a_supervisor_cgroup_s_name_is_tied_to_its_creator_s_pid_and_start() {
    // A version before the start time in the name: the pid alone.
    assert!(is_supervisor_name_of(
        "custodian-42-0123456789abcdef",
        42,
        7,
        5
    ));
    assert!(is_supervisor_name_of(
        "custodian-42-7-5-0123456789abcdef",
        42,
        7,
        5
    ));
    for bad in [
        "custodian-42-0123456789abcde",   // short
        "custodian-42-0123456789abcdef0", // long
        "custodian-42-0123456789ABCDEF",  // not ours: upper case
        "custodian-420-0123456789abcdef",
        "custodian-4-0123456789abcdef",
        "custodian-042-0123456789abcdef", // another spelling of 42
        "custodian-+42-0123456789abcdef",
        "custodian-42-8-5-0123456789abcdef", // another process with pid 42
        "custodian-42-7-6-0123456789abcdef", // pid 42 of another pid namespace
        "custodian-42-7-0123456789abcdef",   // no namespace (9264c5e's shape)
        "custodian-42-07-5-0123456789abcdef",
        "custodian-42-7-05-0123456789abcdef",
        "custodian-42--5-0123456789abcdef",
        "custodian-42-7-5-5-0123456789abcdef",
        "custodian--7-5-0123456789abcdef",
        "system.slice",
        "custodian-42-",
    ] {
        assert!(!is_supervisor_name_of(bad, 42, 7, 5), "{bad}");
    }
    let me = std::process::id();
    let start = crate::sys::procfs::self_start().unwrap();
    let ns = super::own_pid_ns();
    let own = need_cgroup!();
    let sup = SupervisorCgroup::create(&own, |_| Ok(())).unwrap();
    let name = sup.path().file_name().unwrap().to_str().unwrap().to_owned();
    assert!(is_supervisor_name_of(&name, me, start, ns), "{name}");
    assert!(!is_supervisor_name_of(&name, me + 1, start, ns));
    assert!(!is_supervisor_name_of(&name, me, start + 1, ns), "{name}");
    assert!(!is_supervisor_name_of(&name, me, start, ns + 1), "{name}");
}

#[test]
fn the_intent_is_given_the_path_before_the_mkdir_and_its_error_creates_nothing() {
    let own = need_cgroup!();
    let mut seen = None;
    let sup = SupervisorCgroup::create(&own, |p| {
        seen = Some((p.to_path_buf(), p.exists()));
        Ok(())
    })
    .unwrap();
    assert_eq!(seen, Some((sup.path().to_path_buf(), false)));
    drop(sup);
    let mut refused = None;
    let err = SupervisorCgroup::create(&own, |p| {
        refused = Some(p.to_path_buf());
        Err(io::Error::other("journal full"))
    })
    .err();
    assert_eq!(err.map(|e| e.to_string()), Some("journal full".to_owned()));
    assert!(
        !refused.unwrap().exists(),
        "made without its intent recorded"
    );
}

#[test]
fn an_intended_cgroup_is_removed_only_when_empty_and_a_cgroup() {
    let own = need_cgroup!();
    let name = |tag: &str| format!("custodian-{}-{tag:0>16}", std::process::id());
    let empty = own.join(name("e1"));
    let nested = own.join(name("e2"));
    let busy = own.join(name("b1"));
    std::fs::create_dir(&empty).unwrap();
    std::fs::create_dir_all(nested.join("child-1")).unwrap();
    std::fs::create_dir(&busy).unwrap();
    let mut member = std::process::Command::new("sleep")
        .arg("1000")
        .spawn()
        .unwrap();
    std::fs::write(busy.join("cgroup.procs"), member.id().to_string()).unwrap();
    let results = [&empty, &nested, &busy, &own.join(name("g1"))].map(|p| remove_intended(p));
    // Not on cgroup2: an empty directory elsewhere is never removed.
    let plain = std::env::temp_dir().join(name("p1"));
    std::fs::create_dir_all(&plain).unwrap();
    let elsewhere = remove_intended(&plain);
    let plain_left = plain.exists();
    let _ = std::fs::remove_dir(&plain);
    let busy_left = busy.exists();
    let _ = member.kill();
    let _ = member.wait();
    let _ = std::fs::remove_dir(&busy);
    let results = results.map(|r| r.unwrap());
    assert_eq!(
        results,
        [
            Intended::Removed,
            Intended::Removed,
            Intended::Populated,
            Intended::Gone
        ]
    );
    assert!(!empty.exists() && !nested.exists());
    assert!(busy_left, "a populated cgroup is never removed");
    assert_eq!(elsewhere.unwrap(), Intended::NotOurs);
    assert!(plain_left);
}
