//! Forged crash journals and the sweeps that read them, for the crash journal tests:
//! records framed as the journal frames them ([`journal_frame`]), a journal written
//! where the sweep looks, the sweep itself, and the processes and users the records name.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio_custodian::SweepReport;

use crate::journal_frame;

/// The uid and gid of `nobody`, the other user of the tests that need one.
pub const NOBODY: u32 = 65534;

/// This boot's id, as an owner record carries it.
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .expect("read the boot id")
        .trim()
        .to_owned()
}

/// An owner record (tag 1): `pid`, its start time, the boot it ran in.
pub fn owner_record(pid: u32, start: u64, boot: &str) -> Vec<u8> {
    let mut p = vec![1];
    p.extend(pid.to_le_bytes());
    p.extend(start.to_le_bytes());
    p.extend(boot.as_bytes());
    journal_frame(&p)
}

/// An owner record of an owner that is certainly dead: this process's pid, start time 1.
pub fn dead_owner() -> Vec<u8> {
    owner_record(std::process::id(), 1, &boot_id())
}

/// A root record (tag 2) of `path` with the device and inode it has now (0, 0 if it
/// does not exist).
pub fn root_record(path: &Path) -> Vec<u8> {
    use std::os::unix::fs::MetadataExt;
    let (dev, ino) = std::fs::symlink_metadata(path).map_or((0, 0), |m| (m.dev(), m.ino()));
    root_record_with_id(path, dev, ino)
}

/// A root record (tag 2) of `path` claiming device `dev` and inode `ino`.
pub fn root_record_with_id(path: &Path, dev: u64, ino: u64) -> Vec<u8> {
    let mut p = vec![2];
    p.extend(dev.to_le_bytes());
    p.extend(ino.to_le_bytes());
    p.extend(path.as_os_str().as_encoded_bytes());
    journal_frame(&p)
}

/// A child record (tag 3) as custodian writes it: the child leads its own group.
pub fn child_record(pid: u32, start: u64) -> Vec<u8> {
    let mut p = vec![3];
    p.extend(pid.to_le_bytes());
    p.extend(start.to_le_bytes());
    p.extend(pid.to_le_bytes());
    journal_frame(&p)
}

/// Field `n` (1-based, as `proc(5)` numbers them) of `/proc/PID/stat`, as a number.
///
/// # Panics
/// If the process is gone or the field is not a number.
pub fn stat_field(pid: u32, n: usize) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    // Fields after the command name: index 0 is field 3.
    s[s.rfind(')').expect("a command name") + 2..]
        .split(' ')
        .nth(n - 3)
        .expect("the field")
        .parse()
        .expect("a number")
}

/// The start time of `pid` (field 22 of its stat), as the records carry it.
pub fn start_time(pid: u32) -> u64 {
    stat_field(pid, 22)
}

/// The marker of the journal [`write_journal`] writes: its file stem.
pub fn marker() -> String {
    format!("{}-1-0123456789abcdef", std::process::id())
}

/// Writes `bytes` as the journal named by [`marker`] in `state`, mode 0600.
pub fn write_journal(state: &Path, bytes: &[u8]) -> PathBuf {
    write_journal_named(state, &marker(), bytes)
}

/// Writes `bytes` as the journal `<stem>.journal` in `state`, mode 0600.
pub fn write_journal_named(state: &Path, stem: &str, bytes: &[u8]) -> PathBuf {
    let path = state.join(format!("{stem}.journal"));
    std::fs::write(&path, bytes).expect("write the journal");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .expect("chmod the journal");
    path
}

/// Creates `path` (and its parents) with mode 0700, as a state dir or temp base.
pub fn private_dir(path: &Path) -> PathBuf {
    std::fs::create_dir_all(path).expect("create the dir");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).expect("chmod 0700");
    path.to_path_buf()
}

/// A private dir in `parent` shaped like a temp root (`custodian-` and 32 times `hex`),
/// with a canary file inside.
pub fn fake_root(parent: &Path, hex: char) -> PathBuf {
    let dir = private_dir(&parent.join(format!("custodian-{}", hex.to_string().repeat(32))));
    std::fs::write(dir.join("canary"), b"keep").expect("write the canary");
    dir
}

/// Sweeps `state` with a grace of 2 s and returns the journals' report.
///
/// # Panics
/// If the sweep fails.
pub fn sweep(state: &Path) -> SweepReport {
    let recovery = tokio_custodian::Recovery::new().state_dir(state);
    let report = recovery
        .grace(Duration::from_secs(2))
        .run()
        .expect("the sweep");
    report.journals.expect("a state dir was given")
}

/// A test's process, killed and reaped when dropped (a failing test included).
#[derive(Debug)]
pub struct Reaped(pub std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `sleep 1000` that leads its own process group, as custodian starts children.
pub fn sleeper() -> Reaped {
    Reaped(
        Command::new("sleep")
            .arg("1000")
            .process_group(0)
            .spawn()
            .expect("start sleep"),
    )
}

/// The calling test binary, running only its ignored test `test` with `env` set to
/// `role`: the part of a test that must run in another process (as another user, in
/// another namespace).
pub fn role_cmd(test: &str, env: &str, role: &str) -> Command {
    let mut c = Command::new(std::env::current_exe().expect("this test binary"));
    c.args([
        "--exact",
        test,
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(env, role)
    .stdin(Stdio::null());
    c
}

/// `cmd` (program, arguments, environment) run under `setpriv` as [`NOBODY`].
pub fn as_nobody(cmd: &Command) -> Command {
    let mut c = Command::new("setpriv");
    c.args([
        &format!("--reuid={NOBODY}"),
        &format!("--regid={NOBODY}"),
        "--clear-groups",
        "--",
    ])
    .arg(cmd.get_program())
    .args(cmd.get_args())
    .stdin(Stdio::null());
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            c.env(k, v);
        }
    }
    c
}

/// Runs `cmd` to its end and returns the rest of its first line containing `prefix`.
///
/// # Panics
/// With the output, if no line has it.
pub fn line_of(mut cmd: Command, prefix: &str) -> String {
    let out = cmd.output().expect("run the command");
    let stdout = String::from_utf8_lossy(&out.stdout);
    // The test harness prints `test role ... ` on the same line.
    stdout
        .lines()
        .find_map(|l| l.split_once(prefix).map(|(_, rest)| rest))
        .map(str::to_owned)
        .unwrap_or_else(|| {
            panic!(
                "no `{prefix}` line ({}):\n{stdout}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
        })
}

/// Gives `path` to uid and gid `id`.
pub fn chown(path: &Path, id: u32) {
    std::os::unix::fs::chown(path, Some(id), Some(id)).expect("chown");
}

/// The role `sweep`, in the process [`role_cmd`] started: sweeps the state dir named by
/// the environment variable `state_env` and prints `REPORT <json>`.
pub fn sweep_role(state_env: &str) {
    let state = std::env::var(state_env).expect("the state dir variable");
    let report = sweep(Path::new(&state));
    println!(
        "REPORT {}",
        serde_json::to_string(&report).expect("the report as JSON")
    );
}
