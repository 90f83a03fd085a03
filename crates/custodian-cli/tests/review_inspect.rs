//! Review of `custodian inspect`'s trust (issue 20): which socket it believes to speak
//! for a pid or a state dir. Each test plants what an attacker (or an unlucky setup)
//! can: another user's process holding the state dir open, a socket answering for
//! another pid, a socket at the owner's path in another mount namespace; and a temp
//! root whose path holds a space (`/proc/net/unix` then splits it).

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{BIN, FreshTmp, poll};
use serde_json::Value;

fn inspect(args: &[&str]) -> (i32, Value, String) {
    let out = Command::new(BIN)
        .arg("inspect")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Waits until `custodian inspect PID` answers, and returns the answer's owner.
fn answered(pid: u32) -> Value {
    let mut seen = Value::Null;
    let ok = poll(Duration::from_secs(20), || {
        let (code, json, _) = inspect(&[&pid.to_string(), "--json"]);
        seen = json["owners"][0].clone();
        code == 0 && seen["live"].as_array().is_some_and(|l| l.len() == 2)
    });
    assert!(ok, "process {pid} never answered");
    seen
}

fn stop(mut run: Child) {
    let pid = rustix::process::Pid::from_raw(run.id() as i32).unwrap();
    let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    run.wait().unwrap();
}

/// Answers every connection with `json`, in the background, as this process.
fn fake_server(path: &Path, json: Vec<u8>) {
    let l = UnixListener::bind(path).unwrap();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            let _ = c.write_all(&json);
        }
    });
}

fn pids(json: &Value) -> Vec<u64> {
    let owners = json["owners"].as_array().cloned().unwrap_or_default();
    owners.iter().filter_map(|o| o["pid"].as_u64()).collect()
}

/// Root runs `custodian inspect --state-dir DIR`. Another user's process holds an
/// `O_PATH` fd of DIR (search permission on its parents is enough to open one; here
/// it inherits it) and runs an inspect server of its own: it is not an owner of DIR,
/// and its answer must not be listed as one.
#[test]
fn state_dir_ignores_another_users_process_holding_the_dir() {
    let tmp = FreshTmp::new("rv-insp-holder");
    let state = tmp.0.join("state");
    let victim = tmp
        .cmd(&[
            "run",
            "--state-dir",
            state.to_str().unwrap(),
            "--",
            "sleep",
            "30",
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    answered(victim.id());

    let evil_tmp = tmp.0.join("evil");
    std::fs::create_dir(&evil_tmp).unwrap();
    std::fs::set_permissions(&tmp.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    rustix::fs::chown(&evil_tmp, Some(rustix::fs::Uid::from_raw(65534)), None).unwrap();
    // Without O_CLOEXEC: the attacker inherits it across setpriv's exec.
    use rustix::fs::{Mode, OFlags};
    let held = rustix::fs::open(&state, OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
    let evil = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN])
        .args(["run", "--", "sleep", "30"])
        .env("TMPDIR", &evil_tmp)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    drop(held);
    answered(evil.id());
    let holds = std::fs::read_dir(format!("/proc/{}/fd", evil.id()))
        .unwrap()
        .flatten()
        .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t == state));
    assert!(
        holds,
        "the other user's process does not hold the state dir"
    );

    let (code, json, err) = inspect(&["--state-dir", state.to_str().unwrap(), "--json"]);
    let victim_pid = u64::from(victim.id());
    stop(evil);
    stop(victim);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        pids(&json),
        [victim_pid],
        "another user's process listed: {json}"
    );
}

/// A socket whose answer claims a pid other than its listener's (a forged snapshot of
/// a real owner) is refused, naming `SO_PEERCRED`.
#[test]
fn an_answer_claiming_another_pid_is_refused() {
    let tmp = FreshTmp::new("rv-insp-claim");
    let victim = tmp
        .cmd(&["run", "--", "sleep", "30"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let real = answered(victim.id());
    let path = tmp.0.join("inspect-000000000000.sock");
    fake_server(&path, serde_json::to_vec(&real).unwrap());

    let (code, json, err) = inspect(&["--socket", path.to_str().unwrap(), "--json"]);
    stop(victim);
    assert_eq!(code, 1, "a forged answer was believed: {json}");
    assert_eq!(pids(&json), Vec::<u64>::new());
    assert!(err.contains("SO_PEERCRED"), "{err}");
}

/// `custodian inspect PID` finds PID's socket path in `/proc/PID/net/unix`, which
/// names it in PID's mount namespace. Here PID runs with a private tmpfs on its
/// TMPDIR; in ours another process listens at that same path: its (truthful) answer
/// is not PID's and must not be shown as PID's.
#[test]
fn inspect_pid_is_not_answered_by_the_same_path_in_another_mount_namespace() {
    let tmp = FreshTmp::new("rv-insp-mntns");
    let script = format!("mount -t tmpfs tmpfs \"$TMPDIR\" && exec {BIN} run -- sleep 30");
    let victim = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .env("TMPDIR", &tmp.0)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = victim.id();
    let mut path = None;
    let found = poll(Duration::from_secs(20), || {
        let table = std::fs::read_to_string(format!("/proc/{pid}/net/unix")).unwrap_or_default();
        path = table
            .lines()
            .filter_map(|l| l.split_whitespace().nth(7))
            .find(|p| p.starts_with(tmp.0.to_str().unwrap()) && p.ends_with(".sock"))
            .map(std::path::PathBuf::from);
        path.is_some()
            && std::fs::read_link(format!("/proc/{pid}/exe"))
                .is_ok_and(|e| e.ends_with("custodian"))
    });
    assert!(found, "the runner never bound its socket");
    let path = path.unwrap();
    // The same path in our namespace, answered by this test process, truthfully.
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let template = tmp
        .cmd(&["run", "--", "sleep", "30"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut mine = answered(template.id());
    stop(template);
    mine["pid"] = std::process::id().into();
    fake_server(&path, serde_json::to_vec(&mine).unwrap());

    let (code, json, err) = inspect(&[&pid.to_string(), "--json"]);
    stop(victim);
    assert_eq!(code, 1, "another process answered for {pid}: {json}");
    assert_eq!(pids(&json), Vec::<u64>::new());
    assert!(err.contains(&format!("not by process {pid}")), "{err}");
}

/// A temp root under a `TMPDIR` with a space: `/proc/net/unix` prints the path as is,
/// so the path is the rest of the line, not its eighth word.
#[test]
fn inspect_pid_finds_a_socket_whose_path_has_a_blank() {
    // Short enough for a socket address (a longer path is bound through an fd of its
    // dir, and `/proc/net/unix` then shows that `/proc/self/fd/N/...` name instead).
    let spaced = std::env::temp_dir().join(format!("rv i {}", std::process::id()));
    let _ = std::fs::remove_dir_all(&spaced);
    std::fs::create_dir(&spaced).unwrap();
    let run = Command::new(BIN)
        .args(["run", "--", "sleep", "30"])
        .env("TMPDIR", &spaced)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let found = poll(Duration::from_secs(20), || {
        let (code, json, _) = inspect(&[&run.id().to_string(), "--json"]);
        code == 0
            && json["owners"][0]["live"]
                .as_array()
                .is_some_and(|l| l.len() == 2)
    });
    let (_, json, err) = inspect(&[&run.id().to_string(), "--json"]);
    stop(run);
    std::fs::remove_dir_all(&spaced).unwrap();
    assert!(found, "no socket found under {}: {err}", spaced.display());
    let socket = json["owners"][0]["socket"].as_str().unwrap();
    assert!(socket.starts_with(spaced.to_str().unwrap()), "{json}");
}

/// A server that never accepts, its backlog full (a wedged owner, or a hostile one):
/// `connect` used to block for ever; now `custodian inspect` gives up after 5 s.
#[test]
fn a_server_with_a_full_backlog_does_not_hang_the_client() {
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
    let tmp = FreshTmp::new("rv-insp-backlog");
    let path = tmp.0.join("inspect-000000000000.sock");
    let addr = SocketAddrUnix::new(path.as_path()).unwrap();
    let sock =
        |flags| rustix::net::socket_with(AddressFamily::UNIX, SocketType::STREAM, flags, None);
    let listener = sock(SocketFlags::CLOEXEC).unwrap();
    rustix::net::bind(&listener, &addr).unwrap();
    rustix::net::listen(&listener, 0).unwrap();
    let mut queued = Vec::new();
    loop {
        let c = sock(SocketFlags::CLOEXEC | SocketFlags::NONBLOCK).unwrap();
        match rustix::net::connect(&c, &addr) {
            Ok(()) => queued.push(c),
            Err(rustix::io::Errno::AGAIN) => break,
            Err(e) => panic!("{e}"),
        }
    }
    let mut client = Command::new(BIN)
        .args(["inspect", "--socket", path.to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut code = None;
    poll(Duration::from_secs(15), || {
        code = client.try_wait().unwrap();
        code.is_some()
    });
    if code.is_none() {
        let _ = client.kill();
    }
    let out = client.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        code.and_then(|c| c.code()),
        Some(1),
        "still connecting after 15 s: {err}"
    );
    assert!(err.contains("backlog is full"), "{err}");
    drop((queued, listener));
}

/// A server that trickles its answer, a byte a second: the client used to wait 5 s
/// per read, so for ever in effect; now 5 s for the whole answer.
#[test]
fn a_server_that_trickles_its_answer_is_cut_off() {
    let tmp = FreshTmp::new("rv-insp-trickle");
    let path = tmp.0.join("inspect-000000000000.sock");
    let l = UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            std::thread::spawn(move || {
                while c.write_all(b" ").is_ok() {
                    std::thread::sleep(Duration::from_secs(1));
                }
            });
        }
    });
    let mut client = Command::new(BIN)
        .args(["inspect", "--socket", path.to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut code = None;
    poll(Duration::from_secs(15), || {
        code = client.try_wait().unwrap();
        code.is_some()
    });
    if code.is_none() {
        let _ = client.kill();
    }
    let out = client.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        code.and_then(|c| c.code()),
        Some(1),
        "still reading after 15 s: {err}"
    );
    assert!(err.contains("longer than 5 s"), "{err}");
}

/// Root runs `custodian run` with a `TMPDIR` another user may write to (not sticky:
/// `sudo -E` from a user's own tmp dir). Between the socket's `bind` and its mode being
/// set, that user swaps the temp root for a dir of theirs with a symlink at the
/// socket's name (the name is public in `/proc/net/unix`). The server used to
/// `chmod` by path, following the symlink: a root file of the user's choice became
/// 0600. `strace` widens the window to 1.5 s so that the swap lands in it every time.
#[test]
fn the_socket_mode_is_never_set_through_a_planted_symlink() {
    if Command::new("strace").arg("-V").output().is_err() {
        eprintln!("strace not installed: the bind-to-chmod window cannot be widened");
        return;
    }
    let tmp = FreshTmp::new("rv-insp-chmod");
    std::fs::set_permissions(&tmp.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    let base = tmp.0.join("base");
    std::fs::create_dir(&base).unwrap();
    rustix::fs::chown(&base, Some(rustix::fs::Uid::from_raw(65534)), None).unwrap();
    let victim = tmp.0.join("victim");
    std::fs::write(&victim, "root's\n").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut run = Command::new("strace")
        .args(["-f", "-qq", "-o", "/dev/null", "-e", "trace=bind"])
        .args([
            "-e",
            "inject=bind:delay_exit=1500000",
            BIN,
            "run",
            "--",
            "sleep",
            "5",
        ])
        .env("TMPDIR", &base)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut bound = None;
    let base_s = base.to_str().unwrap().to_owned();
    poll(Duration::from_secs(10), || {
        let table = std::fs::read_to_string("/proc/net/unix").unwrap_or_default();
        bound = table
            .lines()
            .filter_map(|l| l.split_whitespace().nth(7))
            .find(|p| p.starts_with(&base_s) && p.contains("/inspect-"))
            .map(str::to_owned);
        bound.is_some()
    });
    let Some(socket) = bound else {
        let _ = run.kill();
        panic!("the runner never bound its socket under {base_s}");
    };
    let root = Path::new(&socket)
        .parent()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let swap = format!(
        "mv {root} {base_s}/moved && mkdir {root} && ln -s {} {socket}",
        victim.display()
    );
    let swapped = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "sh",
            "-c",
            &swap,
        ])
        .status()
        .unwrap();
    assert!(swapped.success(), "the swap failed");
    let ended = poll(Duration::from_secs(15), || {
        run.try_wait().unwrap().is_some()
    });
    if !ended {
        let _ = run.kill();
    }
    let _ = run.wait();
    let mode = std::fs::metadata(&victim).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode, 0o644,
        "root's file was chmodded through the planted symlink"
    );
}
