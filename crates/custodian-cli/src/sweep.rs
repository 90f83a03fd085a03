//! `custodian sweep`: crash recovery from a state dir's journals, and the age sweep of a
//! temp base, with a report of what was removed and what was skipped and why.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use tokio_custodian::{AgeSweep, Recovery, RecoveryReport};

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

/// The JSON report: the library's [`RecoveryReport`] and, for scripts, whether it is clean.
#[derive(Serialize)]
struct Report {
    #[serde(flatten)]
    recovery: RecoveryReport,
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

/// The options as one [`Recovery`]: this command is a thin wrapper over
/// [`tokio_custodian::recover`].
fn recovery(a: &SweepArgs) -> Recovery {
    let mut r = Recovery::new().grace(a.grace).dry_run(a.dry_run);
    r = match &a.state_dir {
        Some(dir) => r.state_dir(dir),
        None => r.default_state_dir(),
    };
    if let (Some(base), Some(age)) = (&a.base, a.older_than) {
        let sweep = a
            .exclude
            .iter()
            .fold(AgeSweep::new(base, age), |s, p| s.exclude(p.as_str()))
            .all(a.all)
            .other_users(a.other_users)
            .symlinks(a.symlinks);
        r = r.temp_base(sweep);
    }
    r
}

fn sweep(a: SweepArgs) -> u8 {
    let recovery = match recovery(&a).run() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("custodian sweep: {e}");
            let dir = a
                .state_dir
                .clone()
                .or_else(tokio_custodian::default_state_dir);
            if e.operation() == tokio_custodian::Operation::Sweep
                && let Some(fix) = dir.as_deref().and_then(state_dir_remedy)
            {
                eprintln!("custodian sweep: {fix}");
            }
            return 2;
        }
    };
    let clean = recovery.is_clean();
    if a.json {
        match serde_json::to_string_pretty(&Report { recovery, clean }) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("custodian sweep: {e}");
                return 2;
            }
        }
    } else {
        print!("{recovery}");
    }
    u8::from(!clean)
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
