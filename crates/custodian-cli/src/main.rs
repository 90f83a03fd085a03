//! `custodian`: the command-line face of the custodian library.
//!
//! - `custodian demo`: a short-video factory (speech in, captions and clips out) run
//!   under a supervisor with faults injected on purpose, then the report of what was
//!   created, released by which path, leaked and left over.
//! - `custodian run [OPTIONS] [--] CMD [ARGS...]`: runs CMD in its own process group with
//!   a private `TMPDIR` (and the terminal, when the runner has it), forwards every signal
//!   that would kill the runner, escalates to SIGKILL after a grace period, reaps adopted
//!   orphans as they exit (a container's PID 1 too), and exits like coreutils `timeout`.
//! - `custodian probe FILE...`: opens each file through the managed decoder and prints
//!   its format, or the typed error naming the file.
//! - `custodian sweep`: reaps what crashed owners left (the crash journal of a state dir)
//!   and, optionally, custodian's own abandoned leftovers in a temp base (`--all`: every
//!   old entry judged on its own, nothing live, locked or someone else's removed).

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

mod adopt;
mod demo;
mod inspect;
mod job;
mod os;
mod probe;
mod run;
mod run_report;
mod signals;
mod sweep;
mod tty;
mod wav;

/// Give every file, temp file, child process and decoder an owner, and release each
/// exactly once on every path.
#[derive(Debug, Parser)]
#[command(name = "custodian", version)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run a short-video factory (speech in, captions and clips out) with faults injected
    /// on purpose, then report what was created, released, leaked and left over.
    ///
    /// Exits 0 when nothing is left over, 1 when something is (and says what), 2 on a
    /// usage or input error (an unreadable `--inputs`), 130 after Ctrl-C (the first
    /// starts a graceful shutdown, the second forces it).
    Demo(demo::DemoArgs),
    /// Run CMD in its own process group with a private TMPDIR, forward signals to the
    /// group, and SIGKILL it when the grace runs out. `--` before CMD is optional.
    ///
    /// Every signal that would kill the runner is forwarded to CMD's group (HUP, INT,
    /// QUIT, TERM, USR1, USR2, ALRM, PIPE, ... and the realtime ones), and WINCH, CONT
    /// and URG too; after INT, TERM, HUP or QUIT the group has --grace to exit. On a
    /// terminal, when the runner is in the foreground, CMD's group gets the terminal
    /// while it runs (Ctrl-Z stops the whole job; `fg` resumes it). Descendants that
    /// leave the group (`setsid`, double fork) are adopted (the runner is their child
    /// subreaper, or PID 1 in a container), reaped as they exit, and stopped once CMD
    /// has ended. With `--state-dir DIR` the run is journalled: if the runner itself is
    /// SIGKILLed, `custodian sweep --state-dir DIR` stops CMD's tree and removes its
    /// TMPDIR.
    ///
    /// Exit codes as coreutils `timeout`: CMD's own code; 124 timed out; 125 custodian
    /// failed (usage errors, a report file that cannot be opened); 126 CMD found but not
    /// executable; 127 CMD not found; 128+N CMD killed by signal N (137 when the grace
    /// ran out and SIGKILL was needed).
    Run(run::RunArgs),
    /// Open each audio file through the managed decoder and print its format, codec,
    /// rate, channels, bit depth, frames and duration, or the error naming the file.
    ///
    /// Exits 1 when any file failed or, with `--strict`, is truncated (fewer frames than
    /// its header declares).
    Probe(probe::ProbeArgs),
    /// Reap what crashed owners left: for each journal in the state dir whose owner is
    /// proven dead, stop its children and remove its temp root; optionally remove a base
    /// directory's entries older than an age.
    ///
    /// Exit 0 when clean, 1 when something was skipped or could not be removed, 2 when a
    /// directory could not be swept.
    Sweep(sweep::SweepArgs),
    /// Show what a running custodian program holds: live resources (kind, label, scope,
    /// age, creation site, path), quotas, children, clean-ups, its state and containment
    /// tier, read from its inspect socket (on in `run` and `demo`; a library user turns it
    /// on with `Builder::inspect`). Read-only.
    ///
    /// Exits 0 when every owner answered, 1 when one did not (dead, refused, not
    /// custodian), 2 on a usage error.
    Inspect(inspect::InspectArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // `run` exits as coreutils `timeout`: its own usage errors are 125.
            let run = std::env::args().nth(1).is_some_and(|a| a == "run");
            return ExitCode::from(match e.exit_code() {
                0 => 0,
                _ if run => 125,
                _ => 2,
            });
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("custodian: cannot start the Tokio runtime: {e}");
            return ExitCode::from(125);
        }
    };
    let code = rt.block_on(async move {
        match cli.command {
            Cmd::Demo(a) => demo::main(a).await,
            Cmd::Run(a) => run::main(a).await,
            Cmd::Probe(a) => probe::main(a).await,
            Cmd::Sweep(a) => sweep::main(a).await,
            Cmd::Inspect(a) => inspect::main(a).await,
        }
    });
    // Background clean-ups were awaited by each command's shutdown; do not wait for
    // blocking threads that a hostile decode may still occupy.
    rt.shutdown_timeout(Duration::from_millis(200));
    ExitCode::from(code)
}

/// Parses a duration: a number with an optional unit as coreutils `timeout` has them
/// (`10`, `1.5s`, `500ms`, `2m`, `1h`, `1d`; a bare number is seconds), or a compound
/// one through `humantime` (`1m30s`, `1h 5m`). Values too large to represent saturate.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let scale = match unit {
        "" | "s" => 1.0,
        "ms" => 0.001,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        // Compound (`1m30s`) or another unit humantime knows (`us`, `min`, `days`).
        _ => {
            return humantime::parse_duration(s)
                .map_err(|e| format!("invalid duration {s:?}: {e} (e.g. 10s, 500ms, 2m, 1m30s)"));
        }
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?}: expected e.g. 10s, 500ms, 2m, 1m30s"))?;
    let secs = n * scale;
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("invalid duration {s:?}"));
    }
    // `try_from_secs_f64` fails on overflow: saturate instead.
    Ok(Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX))
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations_parse_and_saturate() {
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1e400").ok(), None);
        assert_eq!(
            parse_duration("99999999999999999999999d").unwrap(),
            Duration::MAX
        );
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("5x").unwrap_err().contains("5x"));
    }

    #[test]
    fn compound_durations_parse() {
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1h 5m").unwrap(), Duration::from_secs(3900));
        assert_eq!(
            parse_duration("2s500ms").unwrap(),
            Duration::from_millis(2500)
        );
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
    }
}
