//! Live progress on standard error: an indicatif bar (jobs done, live resources by kind)
//! on a terminal, plain lines otherwise (CI logs, pipes).

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use tokio_custodian::Supervisor;

/// Where progress goes.
#[derive(Debug)]
pub(crate) struct Progress {
    bar: Option<ProgressBar>,
}

/// Live resources by kind, e.g. `temp_file 3, child 2`.
pub(crate) fn live_by_kind(sup: &Supervisor) -> String {
    let stats = sup.stats();
    let parts: Vec<String> = stats
        .kinds
        .iter()
        .filter(|(_, k)| k.live > 0)
        .map(|(kind, k)| format!("{} {}", kind.as_str(), k.live))
        .collect();
    if parts.is_empty() {
        "none".to_owned()
    } else {
        parts.join(", ")
    }
}

impl Progress {
    pub(crate) fn new(jobs: usize) -> Self {
        if !std::io::stderr().is_terminal() {
            return Self { bar: None };
        }
        let bar = ProgressBar::new(jobs as u64);
        let style = ProgressStyle::with_template("{spinner} jobs {pos}/{len} {bar:24} live: {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.enable_steady_tick(Duration::from_millis(100));
        Self { bar: Some(bar) }
    }

    /// A job ended: one line above the bar, or a plain line.
    pub(crate) fn job_done(&self, line: &str, live: &str) {
        match &self.bar {
            Some(b) => {
                b.println(line);
                b.inc(1);
                b.set_message(live.to_owned());
            }
            None => eprintln!("{line}  [live: {live}]"),
        }
    }

    /// Refreshes the live counts (the bar only: plain output prints on events).
    pub(crate) fn tick(&self, live: &str) {
        if let Some(b) = &self.bar {
            b.set_message(live.to_owned());
        }
    }

    /// Something to say outside a job.
    pub(crate) fn note(&self, line: &str) {
        match &self.bar {
            Some(b) => b.println(line),
            None => eprintln!("{line}"),
        }
    }

    pub(crate) fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
