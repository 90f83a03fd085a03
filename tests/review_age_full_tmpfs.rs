//! Review: a journal sweep on a full file system. Once a sweep has stopped a dead owner's
//! children it appends `Gone`... `Swept` to the journal, so that a journal it has to keep
//! never signals again. When that append failed (`ENOSPC` on a full `/run` tmpfs, the
//! journal ending on a page boundary), the sweep *kept* the journal, although nothing
//! else needed it (no root left, no survivor): the one journal that would act again,
//! without the record that stops it, was the one kept, and every later sweep and start
//! stopped its children's groups again. Now a journal the sweep is done with is dropped
//! whatever its last record; the failed append is only reported when the journal must be
//! kept anyway.
//!
//! Provoked for real: a 64 KiB tmpfs (root only; skipped otherwise) holding the state dir,
//! a dead owner's journal padded to exactly one page, the rest of the tmpfs filled.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use custodian_suite::journal_frame as frame;
use custodian_suite::{pid_running, scratch_dir, serial};

const PAGE: usize = 4096;

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .unwrap()
        .trim()
        .to_owned()
}

fn start_time(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    s[s.rfind(')').unwrap() + 2..]
        .split(' ')
        .nth(22 - 3)
        .unwrap()
        .parse()
        .unwrap()
}

/// A tmpfs mounted at a fresh directory, unmounted (lazily) on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(size: &str) -> Option<Self> {
        if !rustix::process::geteuid().is_root() {
            return None;
        }
        let dir = scratch_dir("review-full-tmpfs");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={size},mode=700"))
            .arg("tmpfs")
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = std::fs::remove_dir(&dir);
            return None;
        }
        Some(Tmpfs(dir))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// A dead owner's journal (this process's pid, start time 1) recording `child`, padded
/// with a root intent record (a path that does not exist, shaped like a root's) to
/// exactly one page: any append needs a page of its own.
fn page_journal(state: &Path, child: u32) -> PathBuf {
    let mut bytes = Vec::new();
    let mut owner = vec![1];
    owner.extend(std::process::id().to_le_bytes());
    owner.extend(1u64.to_le_bytes());
    owner.extend(boot_id().as_bytes());
    bytes.extend(frame(&owner));
    let mut rec = vec![3];
    rec.extend(child.to_le_bytes());
    rec.extend(start_time(child).to_le_bytes());
    rec.extend(child.to_le_bytes());
    bytes.extend(frame(&rec));
    // A frame is 16 bytes around its payload; the payload is the tag and the path.
    let room = PAGE - bytes.len() - 16 - 1;
    let tail = "/custodian-0123456789abcdef0123456789abcdef";
    let pad = room - "/review-no-such-dir/".len() - tail.len();
    let path = format!("/review-no-such-dir/{}{tail}", "a".repeat(pad));
    let mut intent = vec![5];
    intent.extend(path.as_bytes());
    bytes.extend(frame(&intent));
    assert_eq!(bytes.len(), PAGE);
    let name = format!("{}-1-0123456789abcdef.journal", std::process::id());
    let journal = state.join(name);
    std::fs::write(&journal, &bytes).unwrap();
    std::fs::set_permissions(&journal, std::fs::Permissions::from_mode(0o600)).unwrap();
    journal
}

/// Fills the file system of `dir` until a write fails with `ENOSPC`.
fn fill(dir: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(dir.join("filler")).unwrap();
    let block = vec![0u8; PAGE];
    loop {
        match f.write(&block) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOSPC.raw_os_error()) => break,
            Err(e) => panic!("filling: {e}"),
        }
    }
}

#[test]
fn a_journal_whose_sweep_record_cannot_be_written_is_not_kept_to_act_again() {
    let _s = serial();
    let Some(fs) = Tmpfs::mount("64k") else {
        eprintln!("skipped: needs root to mount a tmpfs");
        return;
    };
    let state = fs.0.join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    // The dead owner's child: it leads its own group, as custodian spawns children.
    let mut child = Command::new("sleep")
        .arg("1000")
        .process_group(0)
        .spawn()
        .unwrap();
    let journal = page_journal(&state, child.id());
    fill(&fs.0);

    let report = tokio_custodian::Recovery::new()
        .state_dir(&state)
        .grace(Duration::from_secs(1))
        .run()
        .unwrap();
    let report = report.journals.expect("a state dir was given");
    let stopped = child.try_wait().unwrap().is_some();
    let _ = child.kill();
    let _ = child.wait();
    assert!(stopped, "the dead owner's child was not stopped: {report}");
    assert!(!pid_running(child.id()));
    assert!(
        !journal.exists(),
        "the journal was kept without its sweep record, to act again at every later sweep: \
         {report}"
    );
    assert_eq!(report.dropped, vec![journal.clone()], "{report}");
    // With room again, a later sweep finds nothing to act on.
    std::fs::remove_file(fs.0.join("filler")).unwrap();
    let again = tokio_custodian::Recovery::new()
        .state_dir(&state)
        .run()
        .unwrap()
        .journals
        .unwrap();
    assert_eq!(again.found, 0, "{again}");
}
