//! Shared helpers for custodian's cross-crate tests: counting open fds, listing a
//! directory, finding zombie children, running scenarios; the crash journals', the age
//! sweep's and the cgroup tier's scaffolding in their modules.

use std::path::Path;

pub mod age;
pub mod containment;
mod isolated;
pub mod journal;
mod line_child;
mod procs;
pub mod reclaims;
pub use isolated::{is_isolated, run_isolated};
pub use line_child::LineChild;
pub use procs::{
    group_alive, group_members, mentioning, pid_exists, pid_running, poll_until, ppid,
    running_mentioning, sleeps, wait_group_size, wait_groups_gone,
};

/// Open file descriptors of this process, from `/proc/self/fd`.
pub fn open_fds() -> usize {
    // The directory handle used to read the listing is itself one entry.
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count().saturating_sub(1))
        .unwrap_or(0)
}

/// Names inside `dir` (empty if it does not exist).
pub fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Pids of this process's children that are zombies (state `Z` in `/proc/PID/stat`).
pub fn zombie_children() -> Vec<u32> {
    let me = std::process::id();
    let mut z = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return z;
    };
    for e in dir.filter_map(|e| e.ok()) {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the command name, which is in parentheses and may contain spaces.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
            continue;
        };
        let mut f = rest.split_whitespace();
        let state = f.next();
        let ppid = f.next().and_then(|p| p.parse::<u32>().ok());
        if state == Some("Z") && ppid == Some(me) {
            z.push(pid);
        }
    }
    z
}

/// What each open file descriptor of this process points at (for diagnostics).
pub fn fd_targets() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| {
                    let target = std::fs::read_link(e.path())
                        .map(|p| p.display().to_string())
                        .unwrap_or_default();
                    format!("{} -> {target}", e.file_name().to_string_lossy())
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Serialises the tests of one test binary.
///
/// Fd counts are per process and the tests of a binary run on parallel threads, so every
/// test that counts fds (all of them, in this suite) holds this lock for its whole run,
/// including the creation and the drop of its runtime. A test that failed while holding it
/// does not poison the others.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A fresh, empty directory under the system temp dir, unique to this process and call.
pub fn scratch_dir(tag: &str) -> std::path::PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "custodian-suite-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// The runtime a scenario runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rt {
    /// A current-thread runtime.
    Current,
    /// A current-thread runtime with paused time (auto-advancing).
    Paused,
    /// A multi-thread runtime with this many workers.
    Multi(usize),
}

fn runtime(rt: Rt) -> tokio::runtime::Runtime {
    let mut b = match rt {
        Rt::Current | Rt::Paused => tokio::runtime::Builder::new_current_thread(),
        Rt::Multi(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
    };
    b.enable_all();
    if rt == Rt::Paused {
        b.start_paused(true);
    }
    b.build().expect("build runtime")
}

/// Waits (up to 10 s) for the fd count to come back to `expected` or below: a runtime's
/// threads may close their last fds a moment after the runtime is dropped. Below is
/// fine: an fd that was open when the baseline was taken (another test's clean-up
/// finishing late) has closed meanwhile; a leak keeps the count above. Panics with the
/// list of open fds if it stays above.
pub fn assert_fds_settle(expected: usize, what: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let now = open_fds();
        if now <= expected {
            return;
        }
        if std::time::Instant::now() > deadline {
            panic!(
                "{what}: {now} fds open, expected {expected}:\n{}",
                fd_targets().join("\n")
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Runs one scenario: takes the [`serial`] lock, records the fd count, gives `f` a fresh
/// scratch directory, runs it on a new runtime, drops the runtime, then asserts that the
/// fd count is back to its baseline and that the scratch directory is empty (and removes
/// it).
pub fn scenario<F, Fut, T>(rt: Rt, tag: &str, f: F) -> T
where
    F: FnOnce(std::path::PathBuf) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let _serial = serial();
    // Tokio's signal driver opens a process-wide socket pair the first time a runtime is
    // built and keeps it for the life of the process: build one before the baseline.
    static WARM_UP: std::sync::Once = std::sync::Once::new();
    WARM_UP.call_once(|| drop(runtime(Rt::Current)));
    let base = scratch_dir(tag);
    let _tidy = Tidy(base.clone());
    let fds = open_fds();
    let runtime = runtime(rt);
    let out = runtime.block_on(f(base.clone()));
    drop(runtime);
    assert_fds_settle(fds, tag);
    let left = entries(&base);
    assert!(left.is_empty(), "{tag}: left in the scratch dir: {left:?}");
    std::fs::remove_dir(&base).expect("remove scratch dir");
    out
}

/// Removes a failed scenario's scratch directory, so that failures do not litter /tmp.
struct Tidy(std::path::PathBuf);

impl Drop for Tidy {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Polls `cond` until it holds, for up to 10 s of real time (clean-ups handed to the
/// blocking pool finish a moment after the release). Panics naming `what` if it never does.
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
}

/// Whether anything (a file, a dir, a dangling symlink) exists at `path`.
pub fn exists(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

/// The checks every process test ends with: no process of `pgids` left (after a short
/// settle for SIGKILLed grandchildren), no zombie children of this process, and the fd
/// count back to `fd_baseline`.
pub fn assert_clean_after(pgids: &[u32], fd_baseline: usize) {
    let left = wait_groups_gone(pgids, std::time::Duration::from_secs(5));
    assert!(
        left.is_empty(),
        "processes left in managed groups: {left:?}"
    );
    let z = zombie_children();
    assert!(z.is_empty(), "zombie children: {z:?}");
    let fds = open_fds();
    assert_eq!(fds, fd_baseline, "fd count changed: {:#?}", fd_targets());
}

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
static WARM: std::sync::Once = std::sync::Once::new();

/// Runs one process test alone (tests of one binary run on parallel threads, and fd
/// counts are process-wide), on a fresh current-thread runtime. The fd baseline is
/// taken before the runtime exists and checked after it is dropped, with the groups the
/// body returns and the zombie check of [`assert_clean_after`].
pub fn serial_process_test<F, Fut>(body: F)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Vec<u32>>,
{
    let _g = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let rt = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    };
    // Tokio's SIGCHLD machinery is process-wide and keeps its fds once set up.
    WARM.call_once(|| {
        rt().block_on(async {
            let st = tokio::process::Command::new("true").status().await;
            assert!(st.expect("spawn true").success());
        });
    });
    let fds = open_fds();
    let rt = rt();
    let pgids = rt.block_on(body());
    drop(rt);
    assert_clean_after(&pgids, fds);
}

/// The open fd count once it has not changed for 100 ms (at most 5 s): a baseline that
/// does not catch a background clean-up half-way.
pub async fn settled_fds() -> usize {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut last = open_fds();
    let mut since = std::time::Instant::now();
    while since.elapsed() < std::time::Duration::from_millis(100)
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let now = open_fds();
        if now != last {
            last = now;
            since = std::time::Instant::now();
        }
    }
    last
}

/// A crash-journal record framed as the journal frames it (the format is documented in
/// `docs/crash-recovery.md`): magic `cjr1`, the payload's length, the payload, and an
/// FNV-1a of length and payload. For tests that write journals by hand (forged, torn,
/// of another boot).
pub fn journal_frame(payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() as u32).to_le_bytes();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in len.iter().chain(payload) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let mut f = b"cjr1".to_vec();
    f.extend(len);
    f.extend(payload);
    f.extend(h.to_le_bytes());
    f
}
