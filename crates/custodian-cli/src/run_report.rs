//! The report of `custodian run`: what it holds, where it goes, and its text for people.
//!
//! The destination is opened before CMD starts, so that a bad `--report-file` is a
//! usage error (exit 125) naming the path, not a discovery after CMD ran.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::ValueEnum;
use serde::Serialize;

/// How the report is printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum ReportFormat {
    Text,
    Json,
}

/// How CMD was stopped, when it did not end on its own.
#[derive(Debug, Serialize)]
pub(crate) struct Stop {
    /// `SIGINT`, `SIGTERM`, `SIGHUP`, `SIGQUIT` (forwarded) or `timeout`.
    pub(crate) trigger: String,
    /// CMD's leader ended within the grace after that first signal.
    pub(crate) term_honoured: bool,
    /// The grace ran out and the group got SIGKILL.
    pub(crate) kill_needed: bool,
    /// How long after the first signal CMD's leader ended, in milliseconds.
    pub(crate) ended_after_ms: f64,
}

/// The report of one run, in the spirit of a Kubernetes `terminated` status.
#[derive(Debug, Serialize)]
pub(crate) struct RunReport {
    pub(crate) command: Vec<String>,
    pub(crate) pid: Option<u32>,
    pub(crate) exit_code: Option<i32>,
    pub(crate) signal: Option<i32>,
    /// `completed`, `error` (non-zero exit), `signalled`, `stopped`, `timed_out`,
    /// `not_found`, `not_executable` or `failed` (custodian itself).
    pub(crate) reason: &'static str,
    /// What `custodian run` exits with.
    pub(crate) custodian_exit: u8,
    pub(crate) duration_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) stop: Option<Stop>,
    pub(crate) tmpdir: Option<PathBuf>,
    pub(crate) temp_bytes_removed: u64,
    /// Descendants that had left CMD's group, adopted and reaped by the runner (while
    /// CMD ran, as they exited, or stopped once it had ended).
    pub(crate) processes_adopted: usize,
    /// How CMD's tree was contained (`cgroup` with its path, or `process_group` with the
    /// reason no cgroup was used); absent when the supervisor did not start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) containment: Option<tokio_custodian::ContainmentTier>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
}

impl RunReport {
    pub(crate) fn new(command: Vec<String>) -> Self {
        RunReport {
            command,
            pid: None,
            exit_code: None,
            signal: None,
            reason: "failed",
            custodian_exit: 125,
            duration_ms: 0.0,
            stop: None,
            tmpdir: None,
            temp_bytes_removed: 0,
            processes_adopted: 0,
            containment: None,
            error: None,
        }
    }
}

/// Where the report goes, opened before CMD starts.
#[derive(Debug)]
pub(crate) enum Sink {
    Stderr,
    Stdout,
    File(File, PathBuf),
}

impl Sink {
    /// `None`: standard error; `-`: standard output; else the file, created or truncated.
    ///
    /// # Errors
    ///
    /// The message names the path and the reason.
    pub(crate) fn open(to: Option<&Path>) -> Result<Sink, String> {
        match to {
            None => Ok(Sink::Stderr),
            Some(p) if p == Path::new("-") => Ok(Sink::Stdout),
            Some(p) => File::create(p)
                .map(|f| Sink::File(f, p.to_path_buf()))
                .map_err(|e| format!("cannot open the report file {}: {e}", p.display())),
        }
    }

    /// Writes `text` and a newline.
    pub(crate) fn write(self, text: &str) -> Result<(), String> {
        let line = format!("{text}\n");
        match self {
            Sink::Stderr => std::io::stderr().write_all(line.as_bytes()),
            Sink::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(line.as_bytes()).and_then(|()| out.flush())
            }
            Sink::File(mut f, p) => {
                return f
                    .write_all(line.as_bytes())
                    .map_err(|e| format!("cannot write the report to {}: {e}", p.display()));
            }
        }
        .map_err(|e| format!("cannot write the report: {e}"))
    }
}

/// `n` and the noun, singular for one.
fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The report for people: words, not field names.
pub(crate) fn text(r: &RunReport) -> String {
    let cmd = r.command.first().map_or("", String::as_str);
    let how = match (r.reason, r.exit_code, r.signal) {
        ("timed_out", ..) => "timed out".to_owned(),
        ("stopped", ..) => "was stopped".to_owned(),
        ("not_found", ..) => "was not found".to_owned(),
        ("not_executable", ..) => "is not executable".to_owned(),
        (_, Some(0), _) => "completed".to_owned(),
        (_, Some(c), _) => format!("failed with exit code {c}"),
        (_, None, Some(s)) => format!("was killed by signal {s}"),
        (_, None, None) => "did not run".to_owned(),
    };
    let died = match (r.reason, r.signal) {
        ("timed_out" | "stopped", Some(s)) => format!(", killed by signal {s}"),
        _ => String::new(),
    };
    let stop = r.stop.as_ref().map_or(String::new(), |s| {
        let by = if s.trigger == "timeout" {
            "the timeout's SIGTERM"
        } else {
            &s.trigger
        };
        let outcome = if s.kill_needed {
            "the grace ran out: SIGKILL".to_owned()
        } else if s.term_honoured {
            format!("it ended {:.0} ms later{died}", s.ended_after_ms)
        } else {
            format!(
                "it ended {:.0} ms later, past the grace{died}",
                s.ended_after_ms
            )
        };
        format!("; {by}: {outcome}")
    });
    format!(
        "custodian run: {cmd} {how} after {:.0} ms{stop}; exit {}; {} removed; {} adopted",
        r.duration_ms,
        r.custodian_exit,
        count(r.temp_bytes_removed, "temp byte", "temp bytes"),
        count(r.processes_adopted as u64, "process", "processes"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_reports_use_words_and_plurals() {
        let mut r = RunReport::new(vec!["sleep".into()]);
        (r.reason, r.signal, r.custodian_exit) = ("timed_out", Some(15), 124);
        r.processes_adopted = 1;
        r.temp_bytes_removed = 1;
        r.stop = Some(Stop {
            trigger: "timeout".into(),
            term_honoured: true,
            kill_needed: false,
            ended_after_ms: 3.0,
        });
        let t = text(&r);
        let want = "sleep timed out after 0 ms; the timeout's SIGTERM: it ended 3 ms later, \
                    killed by signal 15; exit 124;";
        assert!(t.contains(want), "{t}");
        assert!(
            t.contains("1 process adopted") && t.contains("1 temp byte removed"),
            "{t}"
        );
        assert!(!t.contains('(') && !t.contains("timed_out"), "{t}");
        (r.reason, r.signal, r.exit_code) = ("error", None, Some(3));
        (r.stop, r.processes_adopted) = (None, 2);
        let t = text(&r);
        assert!(t.contains("sleep failed with exit code 3"), "{t}");
        assert!(t.contains("2 processes adopted"), "{t}");
    }
}
