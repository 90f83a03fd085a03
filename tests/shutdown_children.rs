//! Shutdown of a real owner process (`custodian-test-owner children-*`, `audio-term`)
//! that holds, in scopes, temp files, a temp dir and managed children: `sleep 1000`, a
//! shell that ignores SIGTERM (300 ms grace) and a shell with a grandchild. After a
//! SIGTERM, a forced second SIGTERM, an abort through the panic hook, or a runtime dropped
//! without shutdown, no process of any child's group runs, the owner left no child (not
//! even a zombie), and no temp path remains.

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use custodian_suite::{LineChild, group_members, wait_groups_gone, zombie_children};
use rustix::process::{Pid, Signal, kill_process};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_custodian-test-owner");
/// Generous: a loaded 2-core CI box runs many of these at once.
const SLOW: Duration = Duration::from_secs(30);

struct Owner {
    proc: LineChild,
    root: PathBuf,
    pgids: Vec<u32>,
}

/// What the owner printed and how it ended.
struct Ended {
    status: ExitStatus,
    took: Duration,
    lines: Vec<String>,
    stderr: String,
}

impl Owner {
    /// Starts the scenario and waits for `READY` (the owner prints it once every child
    /// started, the SIGTERM trap is set and the grandchild runs).
    fn start(scenario: &str) -> Owner {
        let proc = LineChild::spawn(Command::new(BIN).arg(scenario).stdin(Stdio::null()));
        let mut o = Owner {
            proc,
            root: PathBuf::new(),
            pgids: Vec::new(),
        };
        o.root = PathBuf::from(o.expect_line("ROOT "));
        o.expect_line("READY");
        o.pgids = o
            .proc
            .seen
            .iter()
            .filter_map(|l| l.strip_prefix("PGID ")?.parse().ok())
            .collect();
        assert!(o.pgids.len() >= 3, "children's groups: {:?}", o.proc.seen);
        o
    }

    /// For owners that wait for a signal: every group and the temp root exist.
    fn assert_running(&self) {
        let running = group_members(&self.pgids);
        for g in &self.pgids {
            assert!(
                running.iter().any(|(_, pg)| pg == g),
                "group {g} runs: {running:?}"
            );
        }
        assert!(
            self.root.is_dir(),
            "the temp root exists while the owner runs"
        );
    }

    /// Waits for a line starting with `prefix`; returns the rest of it.
    fn expect_line(&mut self, prefix: &str) -> String {
        self.proc.wait_line(prefix, SLOW).unwrap_or_else(|e| {
            self.proc.kill();
            kill_groups(&self.pgids);
            panic!("owner: {e}")
        })
    }

    fn signal(&self, sig: Signal) {
        let pid = Pid::from_raw(self.proc.pid() as i32).unwrap();
        kill_process(pid, sig).expect("signal the owner");
    }

    /// Waits for the owner to exit (killing it after `SLOW`) and reaps it; then checks
    /// that nothing is left: no process in any child's group, no zombie of ours, no temp
    /// root. Kills what is left before failing, so a failure does not leak `sleep 1000`s.
    fn finish(mut self) -> Ended {
        let start = Instant::now();
        let Some(status) = self.proc.wait_exit(SLOW) else {
            self.proc.kill();
            kill_groups(&self.pgids);
            panic!("the owner did not exit within {SLOW:?}");
        };
        let took = start.elapsed();
        // Every writer of the pipe is gone (the children's stdio is /dev/null).
        let stderr = self.proc.drain(SLOW);
        let left = wait_groups_gone(&self.pgids, Duration::from_secs(5));
        kill_groups(&self.pgids);
        assert!(
            left.is_empty(),
            "processes left in the children's groups {:?}: {left:?}\n{:?}\n{stderr}",
            self.pgids,
            self.proc.seen
        );
        // Tests run in parallel: other owners may be zombies for a moment; not this one.
        let pid = self.proc.pid();
        assert!(!zombie_children().contains(&pid), "the owner was reaped");
        assert!(
            !self.root.exists(),
            "temp root {} left behind: {:?}\n{stderr}",
            self.root.display(),
            custodian_suite::entries(&self.root)
        );
        Ended {
            status,
            took,
            lines: self.proc.seen,
            stderr,
        }
    }
}

/// Best-effort SIGKILL to what a failed test left in the groups.
fn kill_groups(pgids: &[u32]) {
    for (pid, _) in group_members(pgids) {
        if let Some(p) = Pid::from_raw(pid as i32) {
            let _ = kill_process(p, Signal::KILL);
        }
    }
}

fn line<'a>(lines: &'a [String], prefix: &str) -> Option<&'a str> {
    lines.iter().find_map(|l| l.strip_prefix(prefix))
}

/// The owner's children (zombies included) once its clean-up was over: none.
fn assert_owner_left_no_child(e: &Ended, prefix: &str) {
    let kids = line(&e.lines, prefix).unwrap_or_else(|| panic!("{prefix}: {:?}", e.lines));
    assert_eq!(
        kids.trim(),
        "",
        "the owner's children after clean-up\n{}",
        e.stderr
    );
}

fn report(e: &Ended) -> Value {
    let json = line(&e.lines, "REPORT ").expect("the owner printed its report");
    serde_json::from_str(json).expect("the report is JSON")
}

fn kind<'a>(r: &'a Value, kind: &str) -> &'a Value {
    &r["stats"]["kinds"][kind]
}

#[test]
fn sigterm_stops_children_and_grandchildren_within_grace_and_leaves_nothing() {
    let owner = Owner::start("children-term");
    owner.assert_running();
    owner.signal(Signal::TERM);
    let e = owner.finish();
    assert!(e.status.success(), "{:?}\n{}", e.status, e.stderr);
    assert!(e.took < SLOW, "{:?}", e.took);
    assert_owner_left_no_child(&e, "CHILDREN ");
    let r = report(&e);
    assert_eq!(r["reason"], "shutdown", "{r}");
    assert_eq!(r["forced"], false);
    assert_eq!(r["scopes_finished"], true, "{r}");
    assert_eq!(r["cleanups_finished"], true, "{r}");
    assert!(r["failures"].as_array().unwrap().is_empty(), "{r}");
    // Within the owner's 10 s grace; at least the 300 ms grace of the child that ignores
    // SIGTERM (it needed SIGKILL).
    let took = r["took_ms"].as_f64().unwrap();
    assert!((250.0..10_000.0).contains(&took), "{r}");
    let child = kind(&r, "child");
    assert_eq!(child["created"], 3, "{r}");
    assert_eq!(child["live"], 0, "{r}");
    assert_eq!(child["failures"], 0, "{r}");
    for k in ["temp_file", "temp_dir"] {
        assert_eq!(kind(&r, k)["live"], 0, "{r}");
    }
    assert_eq!(line(&e.lines, "JOBS "), Some("Ok(())"));
}

#[test]
fn a_forced_second_sigterm_still_stops_every_child() {
    // Grace 30 s, a hook that sleeps 60 s, and a scope that ignores cancellation while it
    // holds a second set of children: only the forced path ends this quickly.
    let mut owner = Owner::start("children-term-twice");
    assert_eq!(owner.pgids.len(), 6);
    owner.assert_running();
    owner.signal(Signal::TERM);
    owner.expect_line("HOOK_STARTED");
    owner.signal(Signal::TERM);
    let e = owner.finish();
    assert!(e.status.success(), "{:?}\n{}", e.status, e.stderr);
    assert!(
        e.took < Duration::from_secs(20),
        "forced exit took {:?}",
        e.took
    );
    assert_owner_left_no_child(&e, "CHILDREN ");
    let r = report(&e);
    assert_eq!(r["forced"], true, "{r}");
    assert_eq!(r["reason"], "forced_shutdown", "{r}");
    let child = kind(&r, "child");
    assert_eq!(child["created"], 6, "{r}");
    assert_eq!(child["live"], 0, "{r}");
    assert!(r["failures"].as_array().unwrap().is_empty(), "{r}");
}

#[test]
fn an_abort_after_the_panic_hook_leaves_no_child_running() {
    let owner = Owner::start("children-panic-hook");
    let e = owner.finish();
    assert_eq!(
        e.status.signal(),
        Some(6),
        "aborted: {:?}\n{}",
        e.status,
        e.stderr
    );
    assert!(
        e.stderr.contains("emergency clean-up released"),
        "{}",
        e.stderr
    );
    // Printed by the hook chained after custodian's, before the abort: the emergency path
    // killed and reaped every child (the groups are checked by `finish`).
    assert_owner_left_no_child(&e, "EMERGENCY_CHILDREN ");
}

#[test]
fn a_runtime_dropped_without_shutdown_leaves_no_child() {
    let mut owner = Owner::start("children-drop-runtime");
    assert_eq!(owner.expect_line("LEFT "), "0");
    let e = owner.finish();
    assert!(e.status.success(), "{:?}\n{}", e.status, e.stderr);
    assert_eq!(line(&e.lines, "BEFORE "), Some("1"));
    assert_owner_left_no_child(&e, "CHILDREN ");
}

#[test]
fn an_audio_decoder_open_at_sigterm_is_released_with_the_children() {
    let owner = Owner::start("audio-term");
    owner.assert_running();
    owner.signal(Signal::TERM);
    let e = owner.finish();
    assert!(e.status.success(), "{:?}\n{}", e.status, e.stderr);
    assert_owner_left_no_child(&e, "CHILDREN ");
    let r = report(&e);
    assert_eq!(r["reason"], "shutdown", "{r}");
    let audio = kind(&r, "audio_decoder");
    assert_eq!(audio["created"], 1, "{r}");
    assert_eq!(audio["live"], 0, "{r}");
    assert_eq!(audio["failures"], 0, "{r}");
    assert_eq!(kind(&r, "child")["live"], 0, "{r}");
    assert!(r["failures"].as_array().unwrap().is_empty(), "{r}");
}
