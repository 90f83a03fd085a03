//! Helpers for the tests of the real `custodian` binary: a fresh `TMPDIR` per test, and
//! the processes that inherited it (so "no process of it survives" needs no pid list).

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_custodian");

/// A fresh, empty directory to use as `TMPDIR`, removed when dropped.
///
/// A watchdog SIGKILLs every process that carries this `TMPDIR` (custodian itself
/// included) once the test has run for [`WATCHDOG`]: a broken runner fails its test
/// instead of hanging the suite.
pub struct FreshTmp(pub PathBuf, Arc<AtomicBool>);

/// How long a test may run before the watchdog kills what it started.
pub const WATCHDOG: Duration = Duration::from_secs(60);

impl FreshTmp {
    pub fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(format!("cli-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        let done = Arc::new(AtomicBool::new(false));
        let (dir, over) = (p.clone(), done.clone());
        std::thread::spawn(move || {
            let finished = poll(WATCHDOG, || over.load(Ordering::Relaxed));
            if !finished {
                for (pid, _) in processes_with_tmpdir(&dir) {
                    let pid = rustix::process::Pid::from_raw(pid as i32).unwrap();
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
            }
        });
        Self(p, done)
    }

    /// `custodian ARGS` with `TMPDIR` set to this directory.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args).env("TMPDIR", &self.0);
        c
    }

    pub fn entries(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    /// Processes (pid, command name) whose `TMPDIR` is this directory or inside it.
    pub fn processes(&self) -> Vec<(u32, String)> {
        processes_with_tmpdir(&self.0)
    }

    /// A private (0700) state dir, `state`, in this directory.
    pub fn state_dir(&self) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let d = self.0.join("state");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
        d
    }

    /// `custodian run --no-watcher --state-dir STATE -- CMD...` started (stdin null): a
    /// journaled runner with no watcher, for a test to SIGKILL and then sweep after.
    pub fn journaled_runner(&self, state: &Path, cmd: &[&str]) -> Child {
        let state = state.to_str().unwrap();
        let mut args = vec!["run", "--no-watcher", "--state-dir", state, "--"];
        args.extend_from_slice(cmd);
        self.cmd(&args).stdin(Stdio::null()).spawn().unwrap()
    }

    /// `custodian sweep --state-dir STATE --grace 300ms --json` run to its end (its report
    /// is on stdout: [`stdout_json`]).
    pub fn sweep(&self, state: &Path) -> Output {
        let state = state.to_str().unwrap();
        self.cmd(&["sweep", "--state-dir", state, "--grace", "300ms", "--json"])
            .output()
            .unwrap()
    }
}

/// A command's stdout as JSON; panics with the text if it is not.
pub fn stdout_json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// SIGKILLs `child` and reaps it: nothing of its clean-up runs.
pub fn sigkill(child: &mut Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

impl Drop for FreshTmp {
    fn drop(&mut self) {
        self.1.store(true, Ordering::Relaxed);
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn processes_with_tmpdir(dir: &Path) -> Vec<(u32, String)> {
    let want = format!("TMPDIR={}", dir.display());
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().filter_map(|e| e.ok()) {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        let hit = env
            .split(|b| *b == 0)
            .any(|var| String::from_utf8_lossy(var).starts_with(&want));
        if hit {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            v.push((pid, comm.trim().to_owned()));
        }
    }
    v
}

/// Polls `f` until it returns true or `limit` passes; returns whether it did.
pub fn poll(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `line` run by `sh` on a fresh pseudo-terminal (util-linux `script`), with `TMPDIR` the
/// test's and `$CUSTODIAN` the binary; what it prints is collected as it comes.
pub struct Pty {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    text: Arc<std::sync::Mutex<String>>,
}

impl Pty {
    /// Starts `line` on a pseudo-terminal.
    pub fn start(t: &FreshTmp, line: &str) -> Pty {
        use std::process::Stdio;
        let mut child = Command::new("script")
            .args(["-qec", line, "/dev/null"])
            .env("TMPDIR", &t.0)
            .env("CUSTODIAN", BIN)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("util-linux script");
        let stdin = child.stdin.take();
        let mut out = child.stdout.take().expect("stdout");
        let text = Arc::new(std::sync::Mutex::new(String::new()));
        let t = text.clone();
        std::thread::spawn(move || {
            use std::io::Read;
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = out.read(&mut buf) {
                t.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Pty { child, stdin, text }
    }

    /// Types `bytes` on the terminal.
    pub fn send(&mut self, bytes: &[u8]) {
        use std::io::Write;
        self.stdin
            .as_mut()
            .expect("input open")
            .write_all(bytes)
            .unwrap();
    }

    /// Whether the terminal shows `what` within `limit`.
    pub fn saw(&self, what: &str, limit: Duration) -> bool {
        poll(limit, || self.text.lock().unwrap().contains(what))
    }

    /// What the terminal has shown so far.
    pub fn text(&self) -> String {
        self.text.lock().unwrap().clone()
    }

    /// Ends the input and waits up to `limit` for the session to end; a session still
    /// running then is killed (with every process of `t`) and `false` returned.
    pub fn finish(&mut self, t: &FreshTmp, limit: Duration) -> bool {
        drop(self.stdin.take());
        let finished = poll(limit, || self.child.try_wait().unwrap().is_some());
        if !finished {
            let _ = self.child.kill();
            for (pid, _) in t.processes() {
                let pid = rustix::process::Pid::from_raw(pid as i32).unwrap();
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
        let _ = self.child.wait();
        finished
    }
}
