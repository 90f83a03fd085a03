use super::*;

/// This process's cgroup directory, if cgroup2 is mounted and we can create in it.
fn own_dir() -> Option<PathBuf> {
    let mount = discover::find_mount(&std::fs::read_to_string("/proc/self/mountinfo").ok()?)?;
    let own = discover::own_cgroup(&std::fs::read_to_string("/proc/self/cgroup").ok()?)?;
    let dir = discover::dir_of(&mount, &own)?;
    let probe = SupervisorCgroup::create(&dir).ok()?;
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
    let sup = Arc::new(SupervisorCgroup::create(&own).unwrap());
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
    let sup = Arc::new(SupervisorCgroup::create(&own).unwrap());
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
    let sup = Arc::new(SupervisorCgroup::create(&own).unwrap());
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
    let sup = Arc::new(SupervisorCgroup::create(&own).unwrap());
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
    let sup = Arc::new(SupervisorCgroup::create(&own).unwrap());
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
    let sup = Arc::new(SupervisorCgroup::create(&own).unwrap());
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
    let sup = Arc::new(SupervisorCgroup::create(&own).unwrap());
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
fn a_supervisor_cgroup_s_name_is_tied_to_its_creator_s_pid() {
    assert!(is_supervisor_name_of("custodian-42-0123456789abcdef", 42));
    for bad in [
        "custodian-42-0123456789abcde",   // short
        "custodian-42-0123456789abcdef0", // long
        "custodian-42-0123456789ABCDEF",  // not ours: upper case
        "custodian-420-0123456789abcdef",
        "custodian-4-0123456789abcdef",
        "custodian-042-0123456789abcdef", // another spelling of 42
        "custodian-+42-0123456789abcdef",
        "system.slice",
        "custodian-42-",
    ] {
        assert!(!is_supervisor_name_of(bad, 42), "{bad}");
    }
    let me = std::process::id();
    let own = need_cgroup!();
    let sup = SupervisorCgroup::create(&own).unwrap();
    let name = sup.path().file_name().unwrap().to_str().unwrap().to_owned();
    assert!(is_supervisor_name_of(&name, me), "{name}");
    assert!(!is_supervisor_name_of(&name, me + 1));
}

#[test]
fn unrecorded_cgroups_of_dead_pids_are_removed_only_when_empty() {
    let own = need_cgroup!();
    // A pid no process has now: a child that has exited and been reaped.
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let dead = gone.id();
    gone.wait().unwrap();
    let me = std::process::id();
    let name = |pid: u32, tag: &str| format!("custodian-{pid}-{tag:0>16}");
    let empty = own.join(name(dead, "e1"));
    let nested = own.join(name(dead, "e2"));
    let busy = own.join(name(dead, "b1"));
    let running = own.join(name(me, "r1"));
    let odd = own.join(format!("custodian-{dead}-notours"));
    for d in [&empty, &busy, &running, &odd] {
        std::fs::create_dir(d).unwrap();
    }
    std::fs::create_dir_all(nested.join("child-1")).unwrap();
    let mut member = std::process::Command::new("sleep")
        .arg("1000")
        .spawn()
        .unwrap();
    std::fs::write(busy.join("cgroup.procs"), member.id().to_string()).unwrap();
    let recorded = own.join(name(dead, "c1"));
    std::fs::create_dir(&recorded).unwrap();
    let recorded_name = name(dead, "c1");
    let removed = remove_unrecorded(&own, &[dead, me], &[recorded_name.as_str()]);
    let kept = recorded.exists();
    let _ = std::fs::remove_dir(&recorded);
    assert!(kept, "a recorded cgroup is left to its record's proof");
    let left: Vec<bool> = [&empty, &nested, &busy, &running, &odd]
        .iter()
        .map(|d| d.exists())
        .collect();
    let _ = member.kill();
    let _ = member.wait();
    for d in [
        &empty,
        &nested.join("child-1"),
        &nested,
        &busy,
        &running,
        &odd,
    ] {
        let _ = std::fs::remove_dir(d);
    }
    let mut removed = removed.unwrap();
    removed.sort();
    // Outside the initial pid namespace a pid's absence proves nothing: nothing goes.
    let provable = crate::sys::procfs::pids_in_any_namespace(&[])
        .unwrap()
        .is_some();
    let mut want = vec![empty.clone(), nested.clone()];
    want.sort();
    if !provable {
        want.clear();
    }
    assert_eq!(removed, want);
    assert_eq!(left, [!provable, !provable, true, true, true]);
}
