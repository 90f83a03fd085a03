//! A child process of a test that reports on stdout, read line by line.

/// A child process of a test that reports on stdout: its stdout is read line by line on
/// a thread, its stderr collected on another.
#[derive(Debug)]
pub struct LineChild {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    stderr: Option<std::thread::JoinHandle<String>>,
    /// Every stdout line received so far.
    pub seen: Vec<String>,
}

impl LineChild {
    /// Starts `cmd` with stdout and stderr piped (stdin is the caller's choice).
    pub fn spawn(cmd: &mut std::process::Command) -> LineChild {
        use std::io::{BufRead, Read};
        let mut child = cmd
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start the child");
        let (tx, lines) = std::sync::mpsc::channel();
        let out = child.stdout.take().expect("piped stdout");
        std::thread::spawn(move || {
            for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        let mut err = child.stderr.take().expect("piped stderr");
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        LineChild {
            child,
            lines,
            stderr: Some(stderr),
            seen: Vec::new(),
        }
    }

    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The rest of the first line starting with `prefix`, waiting up to `timeout` for it;
    /// `Err` says what was seen instead.
    pub fn wait_line(
        &mut self,
        prefix: &str,
        timeout: std::time::Duration,
    ) -> Result<String, String> {
        if let Some(l) = self.seen.iter().find_map(|l| l.strip_prefix(prefix)) {
            return Ok(l.to_owned());
        }
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    let rest = l.strip_prefix(prefix).map(str::to_owned);
                    self.seen.push(l);
                    if let Some(rest) = rest {
                        return Ok(rest);
                    }
                }
                Err(e) => return Err(format!("no line `{prefix}` ({e}); seen {:?}", self.seen)),
            }
        }
    }

    /// Waits up to `timeout` for the child to exit and reaps it; `None` if it did not.
    pub fn wait_exit(&mut self, timeout: std::time::Duration) -> Option<std::process::ExitStatus> {
        let start = std::time::Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                return Some(s);
            }
            if start.elapsed() > timeout {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// After the child exited: collects the stdout lines still in the pipe (waiting up to
    /// `timeout` for its last writer to close it) and returns the whole stderr.
    pub fn drain(&mut self, timeout: std::time::Duration) -> String {
        while let Ok(l) = self.lines.recv_timeout(timeout) {
            self.seen.push(l);
        }
        self.stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default()
    }

    /// Kills the child (SIGKILL).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
    }
}
