//! `custodian sweep`: crash recovery from a state dir's journals, and the age sweep of a
//! temp base, with a report of what was removed and what was skipped and why.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use tokio_custodian::{AgeKeptReason, AgeReport, SweepReport};

/// Options of `custodian sweep`.
#[derive(Debug, clap::Args)]
pub(crate) struct SweepArgs {
    /// The state directory whose journals to sweep: for every owner proven dead (pid
    /// gone, start time or boot id differs), stop its recorded children, remove its temp
    /// root, drop its journal. Default: `$XDG_RUNTIME_DIR/custodian`, or `/run/custodian`
    /// as root.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Also remove the entries of this directory older than `--older-than` (atime, mtime
    /// and ctime all older; locked, mounted and symlinked entries are kept).
    #[arg(long, value_name = "DIR", requires = "older_than")]
    base: Option<PathBuf>,
    /// The age for `--base`, e.g. `10m`, `2h`, `7d` is `168h`.
    #[arg(long, value_name = "DUR", value_parser = crate::parse_duration, requires = "base")]
    older_than: Option<Duration>,
    /// How long a dead owner's children get after SIGTERM before SIGKILL.
    #[arg(long, value_name = "DUR", value_parser = crate::parse_duration, default_value = "5s")]
    grace: Duration,
    /// Report what the age sweep would remove, removing nothing. The journal sweep acts
    /// only on owners proven dead and has no dry run: it is skipped.
    #[arg(long)]
    dry_run: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Report {
    journals: Option<SweepReport>,
    age: Option<AgeReport>,
    clean: bool,
}

/// Runs the sweep; exit 0 when everything found was dealt with, 1 when something was
/// skipped or could not be removed, 2 when a directory could not be swept at all.
pub(crate) async fn main(a: SweepArgs) -> u8 {
    match tokio::task::spawn_blocking(move || sweep(a)).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("custodian sweep: {e}");
            2
        }
    }
}

fn sweep(a: SweepArgs) -> u8 {
    let state_dir = a
        .state_dir
        .clone()
        .or_else(tokio_custodian::default_state_dir);
    let journals = match (&state_dir, a.dry_run) {
        (Some(dir), false) if dir.exists() || a.state_dir.is_some() => {
            match tokio_custodian::sweep_with_grace(dir, a.grace) {
                Ok(r) => Some(r),
                Err(e) => {
                    eprintln!("custodian sweep: {e}");
                    return 2;
                }
            }
        }
        _ => None,
    };
    let age = match (&a.base, a.older_than) {
        (Some(base), Some(age)) => match tokio_custodian::clean_older_than(base, age, a.dry_run) {
            Ok(r) => Some(r),
            Err(e) => {
                eprintln!("custodian sweep: {e}");
                return 2;
            }
        },
        _ => None,
    };
    let clean = journals.as_ref().is_none_or(SweepReport::is_clean)
        && age.as_ref().is_none_or(|r| {
            r.kept
                .iter()
                .all(|k| !matches!(k.reason, AgeKeptReason::Failed { .. }))
        });
    let report = Report {
        journals,
        age,
        clean,
    };
    if a.json {
        match serde_json::to_string_pretty(&report) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("custodian sweep: {e}");
                return 2;
            }
        }
    } else {
        print_text(&report, state_dir.as_deref(), a.dry_run);
    }
    u8::from(!report.clean)
}

fn print_text(r: &Report, state_dir: Option<&std::path::Path>, dry_run: bool) {
    match (&r.journals, state_dir) {
        (Some(j), _) => print!("{j}"),
        (None, _) if dry_run => println!("journals: not swept (a dry run acts on nothing)"),
        (None, Some(d)) => println!("journals: {} does not exist, nothing to sweep", d.display()),
        (None, None) => println!("journals: no state dir (set --state-dir)"),
    }
    if let Some(age) = &r.age {
        let verb = if age.dry_run {
            "would remove"
        } else {
            "removed"
        };
        println!(
            "age sweep of {}: {verb} {}, kept {} ({:.1?})",
            age.base.display(),
            age.removed.len(),
            age.kept.len(),
            age.took
        );
        for p in &age.removed {
            println!("  {verb}: {}", p.display());
        }
        for k in &age.kept {
            println!("  kept: {} ({:?})", k.path.display(), k.reason);
        }
    }
    println!(
        "{}",
        if r.clean {
            "clean"
        } else {
            "NOT clean: see what was skipped or failed above"
        }
    );
}
