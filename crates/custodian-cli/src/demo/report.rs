//! The demo's report: per kind created/released/by which path/failures, the leaks with
//! their creation sites, the outside counts (fds, children, temp entries) before and
//! after, and the leftovers that decide the exit code. Text for people, JSON for machines.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Serialize;
use tokio_custodian::{FailureRecord, LeakRecord, ShutdownReport};

/// What one job did.
#[derive(Debug, Serialize)]
pub(crate) struct JobOutcome {
    pub(crate) job: usize,
    pub(crate) fault: Option<String>,
    pub(crate) ok: bool,
    pub(crate) detail: String,
    pub(crate) ms: u64,
}

/// Counts taken from the outside (`/proc`, the file system).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Outside {
    pub(crate) fds: usize,
    pub(crate) children: usize,
    pub(crate) zombies: usize,
    /// Entries of the temp base (`$TMPDIR`), whoever made them.
    pub(crate) temp_entries: usize,
}

/// One resource kind's line.
#[derive(Debug, Serialize)]
pub(crate) struct KindRow {
    pub(crate) created: u64,
    pub(crate) released: u64,
    pub(crate) by_path: BTreeMap<String, u64>,
    pub(crate) failures: u64,
    pub(crate) leaked: u64,
    pub(crate) live: u64,
    pub(crate) peak: u64,
}

/// What is left after shutdown: all zero in a healthy run.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Leftovers {
    pub(crate) live_resources: u64,
    pub(crate) fds: usize,
    pub(crate) children: usize,
    pub(crate) temp_root_exists: usize,
    pub(crate) temp_entries: usize,
    pub(crate) failed_cleanups: usize,
}

impl Leftovers {
    pub(crate) fn total(&self) -> usize {
        self.live_resources as usize
            + self.fds
            + self.children
            + self.temp_root_exists
            + self.temp_entries
            + self.failed_cleanups
    }
}

/// The whole report.
#[derive(Debug, Serialize)]
pub(crate) struct DemoReport {
    pub(crate) seed: u64,
    pub(crate) jobs: Vec<JobOutcome>,
    pub(crate) faults: Vec<String>,
    pub(crate) interrupted: bool,
    pub(crate) wall_ms: u64,
    pub(crate) kinds: BTreeMap<String, KindRow>,
    pub(crate) leaks: Vec<LeakRecord>,
    pub(crate) failures: Vec<FailureRecord>,
    pub(crate) before: Outside,
    pub(crate) after: Outside,
    pub(crate) temp_root: PathBuf,
    /// Fds open after the run that were not before (`fd -> target`).
    pub(crate) extra_fds: Vec<String>,
    pub(crate) leftovers: Leftovers,
    pub(crate) clean: bool,
    pub(crate) shutdown: ShutdownReport,
}

/// Per-kind rows from the shutdown's counters.
pub(crate) fn kinds(report: &ShutdownReport) -> BTreeMap<String, KindRow> {
    report
        .stats
        .kinds
        .iter()
        .filter(|(_, k)| k.created > 0)
        .map(|(kind, k)| {
            let by_path = k
                .released
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(p, n)| (p.as_str().to_owned(), *n))
                .collect();
            let row = KindRow {
                created: k.created,
                released: k.released_total(),
                by_path,
                failures: k.failures,
                leaked: k.leaked(),
                live: k.live,
                peak: k.peak,
            };
            (kind.as_str().to_owned(), row)
        })
        .collect()
}

impl DemoReport {
    /// The report for people: readable at a glance, the verdict last.
    pub(crate) fn text(&self) -> String {
        let mut s = String::new();
        let ok = self.jobs.iter().filter(|j| j.ok).count();
        let _ = writeln!(
            s,
            "custodian demo: {} jobs ({ok} ok, {} failed) in {:.1} s, seed {}, faults: {}{}",
            self.jobs.len(),
            self.jobs.len() - ok,
            self.wall_ms as f64 / 1000.0,
            self.seed,
            if self.faults.is_empty() {
                "none".to_owned()
            } else {
                self.faults.join(", ")
            },
            if self.interrupted {
                " (interrupted: graceful shutdown)"
            } else {
                ""
            },
        );
        let _ = writeln!(s, "\njobs");
        for j in &self.jobs {
            let fault = j
                .fault
                .as_deref()
                .map_or(String::new(), |f| format!(" [{f}]"));
            let verdict = if j.ok { "ok    " } else { "FAILED" };
            let _ = writeln!(
                s,
                "  job {:>2}{fault:<17} {verdict} {:>5} ms  {}",
                j.job, j.ms, j.detail
            );
        }
        let _ = writeln!(
            s,
            "\n  {:<12} {:>7} {:>8} {:>8} {:>7} {:>5}  released by",
            "kind", "created", "released", "failures", "leaked", "live"
        );
        for (kind, k) in &self.kinds {
            let paths: Vec<String> = k.by_path.iter().map(|(p, n)| format!("{p} {n}")).collect();
            let _ = writeln!(
                s,
                "  {kind:<12} {:>7} {:>8} {:>8} {:>7} {:>5}  {}",
                k.created,
                k.released,
                k.failures,
                k.leaked,
                k.live,
                paths.join(", ")
            );
        }
        if !self.leaks.is_empty() {
            let _ = writeln!(
                s,
                "\nleaks caught and reclaimed ({}), with creation sites:",
                self.leaks.len()
            );
            for l in &self.leaks {
                let _ = writeln!(
                    s,
                    "  {} {:?} in scope {} at {}:{}, reclaimed by {}",
                    l.kind().as_str(),
                    l.label(),
                    l.scope(),
                    l.site().file,
                    l.site().line,
                    l.released_by().as_str()
                );
            }
        }
        for f in &self.failures {
            let _ = writeln!(
                s,
                "clean-up failure: {} {:?}: {}",
                f.kind.as_str(),
                f.label,
                f.error
            );
        }
        let (b, a) = (&self.before, &self.after);
        let _ = writeln!(
            s,
            "\n  {:<26} {:>6} {:>6}",
            "outside counts", "before", "after"
        );
        let _ = writeln!(s, "  {:<26} {:>6} {:>6}", "open fds", b.fds, a.fds);
        let _ = writeln!(
            s,
            "  {:<26} {:>6} {:>6}",
            "child processes", b.children, a.children
        );
        let _ = writeln!(s, "  {:<26} {:>6} {:>6}", "zombies", b.zombies, a.zombies);
        let _ = writeln!(
            s,
            "  {:<26} {:>6} {:>6}",
            "entries in the temp base", b.temp_entries, a.temp_entries
        );
        let l = &self.leftovers;
        let _ = writeln!(
            s,
            "\nleftovers: live resources {}, fds {}, children {}, temp root {}, new temp entries {}, failed clean-ups {}",
            l.live_resources,
            l.fds,
            l.children,
            l.temp_root_exists,
            l.temp_entries,
            l.failed_cleanups
        );
        if self.leftovers.fds > 0 {
            let _ = writeln!(s, "extra fds: {}", self.extra_fds.join(", "));
        }
        if self.clean {
            let _ = writeln!(
                s,
                "nothing left behind: every resource released exactly once ({} removed)",
                self.temp_root.display()
            );
        } else {
            let _ = writeln!(
                s,
                "LEFT BEHIND: see the leftovers above\n\n{}",
                self.shutdown
            );
        }
        s
    }
}
