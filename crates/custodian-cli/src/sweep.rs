//! `custodian sweep`: crash recovery from a state dir's journals, and the age sweep of a
//! temp base, with a report of what was removed and what was skipped and why.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use tokio_custodian::{AgeReport, AgeSweep, SweepReport};

/// Options of `custodian sweep`.
#[derive(Debug, clap::Args)]
pub(crate) struct SweepArgs {
    /// The state directory whose journals to sweep: for every owner proven dead (pid
    /// gone, start time or boot id differs), stop its recorded children, remove its temp
    /// root, drop its journal. Default: `$XDG_RUNTIME_DIR/custodian`, or `/run/custodian`
    /// as root.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Also remove custodian's own abandoned leftovers in this directory older than
    /// `--older-than`: temp roots whose owner is gone (name, owner, mode 0700, mount, a free
    /// lock) and atomic writers' temp files. Nothing else unless `--all`.
    #[arg(long, value_name = "DIR", requires = "older_than")]
    base: Option<PathBuf>,
    /// The age for `--base`, e.g. `10m`, `2h`, `7d` is `168h`.
    #[arg(long, value_name = "DUR", value_parser = crate::parse_duration, requires = "base")]
    older_than: Option<Duration>,
    /// With `--base`: sweep other programs' entries too, like `systemd-tmpfiles --clean`:
    /// each entry at every depth on its own (atime, mtime and ctime all older; a directory
    /// only once empty and itself old); never a socket, fifo, device, locked entry or
    /// what contains one; only your own entries; symlinks kept. `/` itself is refused.
    #[arg(long, requires = "base")]
    all: bool,
    /// With `--base`: never sweep entries matching this glob (a name at any depth, or with
    /// a `/` a path relative to the base, or absolute if it starts with `/`). Repeatable;
    /// adds to the default exclusions (`systemd-private-*`, `.X11-unix`, `tmux-*`,
    /// `ssh-*`...).
    #[arg(long, value_name = "PAT", requires = "base")]
    exclude: Vec<String>,
    /// With `--all`: sweep other users' entries too (run as root).
    #[arg(long, requires = "all")]
    other_users: bool,
    /// With `--all`: remove old symlinks too (the link, never its target).
    #[arg(long, requires = "all")]
    symlinks: bool,
    /// How long a dead owner's children get after SIGTERM before SIGKILL.
    #[arg(long, value_name = "DUR", value_parser = crate::parse_duration, default_value = "5s")]
    grace: Duration,
    /// Report what the age sweep would remove, removing nothing and taking no lock (it
    /// reads /proc/locks instead). The journal sweep acts only on owners proven dead and
    /// has no dry run: it is skipped.
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
                    if let Some(fix) = state_dir_remedy(dir) {
                        eprintln!("custodian sweep: {fix}");
                    }
                    return 2;
                }
            }
        }
        _ => None,
    };
    let age = match (&a.base, a.older_than) {
        (Some(base), Some(age)) => match a
            .exclude
            .iter()
            .fold(AgeSweep::new(base, age), |s, p| s.exclude(p.as_str()))
            .all(a.all)
            .other_users(a.other_users)
            .symlinks(a.symlinks)
            .dry_run(a.dry_run)
            .run()
        {
            Ok(r) => Some(r),
            Err(e) => {
                eprintln!("custodian sweep: {e}");
                return 2;
            }
        },
        _ => None,
    };
    let clean = journals.as_ref().is_none_or(SweepReport::is_clean)
        && age.as_ref().is_none_or(AgeReport::is_clean);
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
        print!("{age}");
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

/// What to do about a state dir the journal sweep refused, if it is one it can tell:
/// accessible to others (the journal sweep wants it private) or another user's.
fn state_dir_remedy(dir: &std::path::Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::symlink_metadata(dir).ok()?;
    if !md.is_dir() {
        return None;
    }
    let euid = rustix::process::geteuid().as_raw();
    if md.uid() != euid {
        return Some(format!(
            "{} belongs to uid {}: run the sweep as that user, or give it a state dir of \
             your own (--state-dir)",
            dir.display(),
            md.uid()
        ));
    }
    (md.mode() & 0o077 != 0).then(|| {
        format!(
            "{} is accessible to other users (mode {:o}); make it private: chmod 700 {}",
            dir.display(),
            md.mode() & 0o7777,
            dir.display()
        )
    })
}
