//! `Builder::watcher`: the process forked at start that recovers the owner's journal if
//! the owner dies without a shutdown. What it holds (nothing of the owner's but two fds),
//! a clean shutdown (it exits without acting and is reaped: no zombie, no fd left), its
//! own death (the owner warns, its own releases still work), a supervisor dropped
//! without a shutdown, no state dir, and the leak check. The owner's death is in
//! `watcher_crash.rs`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_custodian::{Supervisor, WatcherState};

/// The tests that count this process's fds run one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Brings up what a supervisor and a spawn create once per process (Tokio's SIGCHLD
/// pipe...), so that an fd count before and after a test sees only the test's own.
async fn warm_up() {
    let sup = Supervisor::builder().start().unwrap();
    sup.command("true").spawn().unwrap().close().await.unwrap();
    sup.shutdown().await;
}

fn state_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("watcher-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn fds() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
        .collect();
    v.sort();
    v
}

/// Waits (up to 2 s: the monitor task and the last `Arc`s let go asynchronously) for
/// this process's fds to be `before` again; names the targets of those left.
async fn assert_fds_back(before: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while fds() != before && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // An fd seen in two listings 50 ms apart: not a transient one of another thread.
    let first = fds();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let extra: Vec<String> = fds()
        .into_iter()
        .filter(|f| !before.contains(f) && first.contains(f))
        .map(|f| {
            format!(
                "{f} -> {:?}",
                std::fs::read_link(format!("/proc/self/fd/{f}"))
            )
        })
        .collect();
    assert!(extra.is_empty(), "fds left: {extra:?}");
}

fn stat_field(pid: u32, n: usize) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name: 3 (state) is the first.
    let rest = stat.rsplit_once(')')?.1;
    rest.split_whitespace().nth(n - 3).map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watcher_holds_nothing_of_its_owner_and_a_clean_shutdown_reaps_it() {
    let _serial = SERIAL.lock().await;
    warm_up().await;
    let dir = state_dir("clean");
    // An fd the watcher must not keep: a listening socket (it would keep the port bound).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let before = fds();
    let sup = Supervisor::builder()
        .state_dir(&dir)
        .watcher(true)
        .start()
        .unwrap();
    let w = sup.stats().watcher;
    assert_eq!(w.state, WatcherState::Watching, "{w}");
    let pid = w.pid.unwrap();
    assert!(sup.stats().to_string().contains("watcher: watching"));
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    assert_eq!(comm.trim(), "custodian-watch");
    // Its own session and group: the owner's group signals and terminal miss it.
    assert_eq!(stat_field(pid, 6).unwrap(), pid.to_string(), "session");
    assert_eq!(stat_field(pid, 5).unwrap(), pid.to_string(), "group");
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap(),
        Path::new("/")
    );
    // 0-2 on /dev/null, its end of the link and the owner's pidfd: nothing else (no
    // journal, so no flock keeping the owner alive-looking; no listening socket).
    let mut held: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            std::fs::read_link(e.path())
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    held.sort();
    assert_eq!(held.len(), 5, "{held:?}");
    assert_eq!(&held[..3], ["/dev/null"; 3], "{held:?}");
    assert!(held.iter().any(|h| h == "anon_inode:[pidfd]"), "{held:?}");
    assert!(held.iter().any(|h| h.starts_with("socket:")), "{held:?}");
    let listener_ino = std::fs::read_link(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&listener)
    ))
    .unwrap();
    assert!(!held.contains(&listener_ino.to_string_lossy().into_owned()));
    // SIGTERM, SIGINT, SIGHUP are for the owner's group or unit: ignored.
    let p = rustix::process::Pid::from_raw(pid as i32).unwrap();
    for sig in [
        rustix::process::Signal::TERM,
        rustix::process::Signal::INT,
        rustix::process::Signal::HUP,
    ] {
        rustix::process::kill_process(p, sig).unwrap();
    }
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(
        stat_field(pid, 3).as_deref(),
        Some("S"),
        "it must still run"
    );

    let child = sup.command("sleep").arg("30").spawn().unwrap();
    let t = sup.temp_file().await.unwrap();
    child.close().await.unwrap();
    t.close().await.unwrap();
    let report = sup.shutdown().await;
    assert!(report.is_clean(), "{report}");
    let w = sup.stats().watcher;
    assert_eq!(w.state, WatcherState::Finished, "{w}");
    assert_eq!(w.ended.as_deref(), Some("exit 0"), "{w}");
    // Reaped by its owner before `shutdown` returned: not even a zombie.
    assert!(!Path::new(&format!("/proc/{pid}")).exists());
    drop(sup);
    assert_fds_back(&before).await;
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    std::fs::remove_dir(&dir).unwrap();
}

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_sigkilled_watcher_is_reported_and_the_owners_own_release_still_works() {
    let logs = Captured::default();
    let sink = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .finish();
    // This thread runs every task (current-thread runtime): the monitor's warning too.
    let _log = tracing::subscriber::set_default(subscriber);
    let _serial = SERIAL.lock().await;
    warm_up().await;
    let dir = state_dir("died");
    let before = fds();
    let sup = Supervisor::builder()
        .state_dir(&dir)
        .watcher(true)
        .start()
        .unwrap();
    let pid = sup.stats().watcher.pid.unwrap();
    let child = sup.command("sleep").arg("30").spawn().unwrap();
    let child_pid = child.id().unwrap();
    let temp = sup.temp_file().await.unwrap();
    let temp_path = temp.path().to_path_buf();
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid as i32).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while sup.stats().watcher.state != WatcherState::Died {
        assert!(Instant::now() < deadline, "{}", sup.stats().watcher);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let w = sup.stats().watcher;
    assert_eq!(w.ended.as_deref(), Some("signal 9"), "{w}");
    // Reaped by the owner's monitor: no zombie.
    assert!(!Path::new(&format!("/proc/{pid}")).exists());
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains("WARN") && text.contains("the watcher died"),
        "{text}"
    );
    // The owner's own releases do not depend on it.
    child.close().await.unwrap();
    temp.close().await.unwrap();
    let report = sup.shutdown().await;
    assert!(report.is_clean(), "{report}");
    assert!(
        report.stats.to_string().contains("watcher: DIED"),
        "{report}"
    );
    assert!(!temp_path.exists());
    assert!(
        stat_field(child_pid, 3).is_none_or(|s| s == "Z"),
        "the child still runs"
    );
    assert_eq!(sup.stats().watcher.state, WatcherState::Died);
    drop(sup);
    assert_fds_back(&before).await;
    std::fs::remove_dir(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervisor_dropped_without_shutdown_lets_its_watcher_go_once_the_journal_is() {
    let _serial = SERIAL.lock().await;
    warm_up().await;
    let dir = state_dir("dropped");
    let before = fds();
    let sup = Supervisor::builder()
        .state_dir(&dir)
        .watcher(true)
        .start()
        .unwrap();
    let pid = sup.stats().watcher.pid.unwrap();
    let t = sup.temp_file().await.unwrap();
    let root = sup.temp_root().to_path_buf();
    drop((t, sup)); // the emergency path: the journal goes after the root
    // The watcher saw its link close, waited for the journal to go, exited without
    // acting, and the monitor task reaped it: no zombie.
    let deadline = Instant::now() + Duration::from_secs(5);
    while Path::new(&format!("/proc/{pid}")).exists() {
        assert!(
            Instant::now() < deadline,
            "watcher {pid}: {:?}",
            stat_field(pid, 3)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!root.exists());
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    assert_fds_back(&before).await;
    std::fs::remove_dir(&dir).unwrap();
}

#[test]
fn a_watcher_without_a_state_dir_is_a_typed_error_and_nothing_is_created() {
    let _serial = SERIAL.blocking_lock();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let base = state_dir("nostate-base");
    std::fs::create_dir_all(&base).unwrap();
    let err = rt
        .block_on(async { Supervisor::builder().temp_base(&base).watcher(true).start() })
        .unwrap_err();
    assert_eq!(err.operation(), tokio_custodian::Operation::Watcher);
    assert_eq!(err.io_kind(), Some(std::io::ErrorKind::InvalidInput));
    assert!(err.to_string().contains("state dir"), "{err}");
    assert_eq!(std::fs::read_dir(&base).unwrap().count(), 0);
    std::fs::remove_dir(&base).unwrap();
}

/// A supervisor with a watcher, started and shut down inside a leak check: the watcher
/// (a child process of this one) is not a leak, because shutdown reaps it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watcher_is_not_a_leak() {
    let _serial = SERIAL.lock().await;
    warm_up().await;
    let dir = state_dir("leak");
    // The state dir is the test's, made before the check.
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let check = tokio_custodian::testing::LeakCheck::start();
    let sup = Supervisor::builder()
        .state_dir(&dir)
        .watcher(true)
        .start()
        .unwrap();
    sup.command("true").spawn().unwrap().close().await.unwrap();
    sup.shutdown().await;
    drop(sup);
    let report = check.finish().await;
    assert!(report.is_clean(), "{report}");
    std::fs::remove_dir(&dir).unwrap();
}
