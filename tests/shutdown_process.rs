//! Shutdown of a real owner process (`custodian-test-owner`): signals, a forced second
//! signal, hooks past their budget, scopes that ignore cancellation, panics, a dropped
//! runtime. Each test checks that no temp path and no zombie is left.

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use custodian_suite::LineChild;
use rustix::process::{Pid, Signal, kill_process};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_custodian-test-owner");
/// Generous: a loaded 2-core CI box runs many of these at once.
const SLOW: Duration = Duration::from_secs(30);

struct Owner {
    proc: LineChild,
    root: PathBuf,
}

impl Owner {
    fn start(scenario: &str) -> Owner {
        let proc = LineChild::spawn(Command::new(BIN).arg(scenario));
        let mut o = Owner {
            proc,
            root: PathBuf::new(),
        };
        let root = o.expect_line("ROOT ");
        o.root = PathBuf::from(root);
        o.expect_line("READY");
        if o.proc.seen.iter().any(|l| l.starts_with("BEFORE ")) {
            // The scenario goes on at once: it reported the root itself.
            assert_eq!(o.expect_line("BEFORE "), "1", "the root existed");
        } else {
            assert!(
                o.root.is_dir(),
                "the owner's temp root exists while it runs"
            );
        }
        o
    }

    /// Waits for a line starting with `prefix`; returns the rest of it.
    fn expect_line(&mut self, prefix: &str) -> String {
        self.proc.wait_line(prefix, SLOW).unwrap_or_else(|e| {
            self.proc.kill();
            panic!("owner: {e}")
        })
    }

    fn signal(&self, sig: Signal) {
        let pid = Pid::from_raw(self.proc.pid() as i32).unwrap();
        kill_process(pid, sig).expect("signal the owner");
    }

    /// Waits for the owner to exit (killing it after `SLOW`); returns its status, the time
    /// it took, every stdout line and its stderr.
    fn finish(mut self) -> (ExitStatus, Duration, Vec<String>, String) {
        let start = Instant::now();
        let Some(status) = self.proc.wait_exit(SLOW) else {
            self.proc.kill();
            panic!("the owner did not exit within {SLOW:?}");
        };
        let took = start.elapsed();
        let stderr = self.proc.drain(SLOW);
        let pid = self.proc.pid();
        assert!(
            !custodian_suite::zombie_children().contains(&pid),
            "the owner was reaped"
        );
        assert!(
            !self.root.exists(),
            "temp root {} left behind: {:?}\n{stderr}",
            self.root.display(),
            custodian_suite::entries(&self.root)
        );
        (status, took, self.proc.seen, stderr)
    }
}

fn line<'a>(lines: &'a [String], prefix: &str) -> Option<&'a str> {
    lines.iter().find_map(|l| l.strip_prefix(prefix))
}

fn report(lines: &[String]) -> Value {
    let json = line(lines, "REPORT ").expect("the owner printed its report");
    serde_json::from_str(json).expect("the report is JSON")
}

fn hook<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["hooks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["name"] == name)
        .unwrap_or_else(|| panic!("hook {name} in {report}"))
}

fn ms(v: &Value) -> f64 {
    v.as_f64().unwrap()
}

#[test]
fn sigterm_shuts_down_gracefully_within_grace_and_leaves_nothing() {
    let owner = Owner::start("term");
    owner.signal(Signal::TERM);
    let (status, _took, lines, stderr) = owner.finish();
    assert!(status.success(), "{status:?}\n{stderr}");
    let r = report(&lines);
    assert_eq!(r["reason"], "shutdown");
    assert_eq!(r["forced"], false);
    assert_eq!(r["scopes_finished"], true);
    assert_eq!(r["cleanups_finished"], true);
    assert!(r["temp_root_error"].is_null());
    assert!(
        ms(&r["took_ms"]) < 3000.0,
        "within the 3 s grace period: {r}"
    );
    assert_eq!(hook(&r, "flush")["outcome"], "completed");
    // The root-scope guards held by main were still alive: released by shutdown, listed
    // with their creation sites.
    let alive = r["alive_at_shutdown"].as_array().unwrap();
    assert_eq!(alive.len(), 2, "{r}");
    assert!(alive.iter().all(|a| {
        a["site"]["file"]
            .as_str()
            .unwrap()
            .ends_with("custodian-test-owner.rs")
    }));
    let phases: Vec<&str> = r["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        phases,
        [
            "refuse and cancel",
            "run hooks",
            "wait for scopes",
            "release remaining",
            "remove temp root"
        ]
    );
    // The cancel reason, as a scope body and a hook saw it.
    assert_eq!(
        line(&lines, "SCOPE_REASON "),
        Some("Shutdown"),
        "{lines:?}\n{stderr}"
    );
    assert_eq!(line(&lines, "HOOK_REASON "), Some("Shutdown"));
    assert!(stderr.contains("shutdown (graceful"), "{stderr}");
}

#[test]
fn sigint_is_handled_like_sigterm() {
    let owner = Owner::start("term");
    owner.signal(Signal::INT);
    let (status, _, lines, _) = owner.finish();
    assert!(status.success());
    assert_eq!(report(&lines)["reason"], "shutdown");
}

#[test]
fn a_second_sigterm_forces_shutdown_past_hooks_and_stubborn_scopes() {
    // Grace 30 s, a hook with a 30 s budget that sleeps 60 s, a scope that ignores
    // cancellation with a 60 s grace: only the forced path ends this quickly.
    let mut owner = Owner::start("term-twice");
    owner.signal(Signal::TERM);
    owner.expect_line("HOOK_STARTED");
    owner.signal(Signal::TERM);
    let (status, took, lines, stderr) = owner.finish();
    assert!(status.success(), "{status:?}\n{stderr}");
    assert!(took < Duration::from_secs(20), "forced exit took {took:?}");
    let r = report(&lines);
    assert_eq!(r["forced"], true);
    assert_eq!(r["reason"], "forced_shutdown");
    assert_eq!(hook(&r, "slow")["outcome"], "cut");
    assert_eq!(hook(&r, "flush")["outcome"], "skipped");
    assert!(ms(&r["took_ms"]) < 20_000.0);
}

#[test]
fn a_hook_past_its_budget_is_cut_off_and_named() {
    let owner = Owner::start("slow-hook");
    owner.signal(Signal::TERM);
    let (status, _took, lines, _) = owner.finish();
    assert!(status.success());
    let r = report(&lines);
    let slow = hook(&r, "slow");
    assert_eq!(slow["outcome"], "overran");
    assert!(ms(&slow["took_ms"]) >= 190.0, "{slow}");
    assert!(
        ms(&slow["took_ms"]) < 10_000.0,
        "cut near its 200 ms budget: {slow}"
    );
    // Hooks run last registered first; the earlier one still ran.
    assert_eq!(r["hooks"][0]["name"], "slow");
    assert_eq!(hook(&r, "flush")["outcome"], "completed");
    assert_eq!(r["forced"], false);
}

#[test]
fn a_scope_ignoring_cancellation_is_released_at_the_grace_deadline() {
    let owner = Owner::start("stubborn");
    owner.signal(Signal::TERM);
    let (status, _took, lines, _) = owner.finish();
    assert!(status.success());
    let r = report(&lines);
    assert_eq!(r["reason"], "deadline");
    assert_eq!(r["scopes_finished"], false);
    let wait = r["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "wait for scopes")
        .unwrap();
    // Grace is 500 ms (the stubborn scope's own grace is 60 s).
    assert!(ms(&wait["took_ms"]) >= 450.0, "{wait}");
    assert!(ms(&r["took_ms"]) < 15_000.0, "{r}");
    // The forgotten guard of the stubborn scope was released without it.
    let leaks = r["leaks"].as_array().unwrap();
    assert!(leaks.iter().any(|l| l["scope"] == "stubborn"), "{r}");
}

#[test]
fn a_runtime_dropped_without_shutdown_leaves_nothing() {
    let mut owner = Owner::start("drop-runtime");
    assert_eq!(owner.expect_line("LEFT "), "0");
    let (status, ..) = owner.finish();
    assert!(status.success());
}

#[test]
fn a_panic_unwinding_past_the_supervisor_leaves_nothing() {
    let owner = Owner::start("panic-unwind");
    let (status, _, _, stderr) = owner.finish();
    assert_eq!(status.code(), Some(101));
    assert!(stderr.contains("owner panics while holding temp files"));
    // Cleaned by the supervisor's Drop; the OnAbort hook stays quiet when unwinding.
    assert!(!stderr.contains("custodian: panic"), "{stderr}");
}

#[test]
fn the_panic_hook_cleans_up_before_an_abort_and_chains_the_previous_hook() {
    let owner = Owner::start("panic-hook");
    let (status, _, _, stderr) = owner.finish();
    assert_eq!(status.signal(), Some(6), "aborted: {status:?}\n{stderr}");
    assert!(stderr.contains("PREVIOUS_HOOK_RAN"), "{stderr}");
    assert!(
        stderr.contains("emergency clean-up released 2 resource(s), 0 failed"),
        "{stderr}"
    );
}
