//! `custodian inspect`: what a running custodian program holds, read from its inspect
//! socket (read-only; the program answers a snapshot and never takes commands).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use tokio::signal::unix::{SignalKind, signal};
use tokio_custodian::Inspection;

/// Options of `custodian inspect`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["pid", "state_dir", "socket"])))]
pub(crate) struct InspectArgs {
    /// The process to inspect (its inspect sockets are found through its fds).
    pid: Option<u32>,
    /// Inspect every live owner journalled in this state dir (its socket is in its temp
    /// root, named by its journal).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Inspect the owner of this socket.
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Print JSON (one document per refresh with --watch).
    #[arg(long)]
    json: bool,
    /// Refresh every DUR (default 2s) until interrupted.
    #[arg(long, value_name = "DUR", value_parser = crate::parse_duration,
          num_args = 0..=1, default_missing_value = "2s")]
    watch: Option<Duration>,
}

/// What one round found: every owner that answered, and every socket that did not.
#[derive(Serialize)]
struct Round {
    owners: Vec<Inspection>,
    errors: Vec<Failed>,
}

#[derive(Serialize)]
struct Failed {
    socket: Option<PathBuf>,
    error: String,
}

pub(crate) async fn main(a: InspectArgs) -> u8 {
    let InspectArgs {
        pid,
        state_dir,
        socket,
        json,
        watch,
    } = a;
    // Listening from before the first round: a Ctrl-C that lands while a round is read
    // or printed is kept for the pause (`ctrl_c()` made anew per pause would lose it,
    // and `--watch` would then run on).
    let mut interrupt = match watch {
        Some(_) => match signal(SignalKind::interrupt()) {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("custodian inspect: listening for Ctrl-C: {e}");
                return 1;
            }
        },
        None => None,
    };
    loop {
        let (pid, dir, sock) = (pid, state_dir.clone(), socket.clone());
        let round = tokio::task::spawn_blocking(move || look(pid, dir, sock))
            .await
            .unwrap_or_else(|e| Round {
                owners: Vec::new(),
                errors: vec![Failed {
                    socket: None,
                    error: e.to_string(),
                }],
            });
        let code = u8::from(!round.errors.is_empty() || round.owners.is_empty());
        print(&round, json, watch.is_some());
        let (Some(every), Some(interrupt)) = (watch, interrupt.as_mut()) else {
            return code;
        };
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = interrupt.recv() => return code,
        }
    }
}

fn look(pid: Option<u32>, dir: Option<PathBuf>, socket: Option<PathBuf>) -> Round {
    let mut round = Round {
        owners: Vec::new(),
        errors: Vec::new(),
    };
    let found = match (pid, dir, socket) {
        (_, _, Some(s)) => Ok(vec![s]),
        (Some(pid), _, _) => tokio_custodian::inspect_sockets_of(pid).inspect(|v| {
            if v.is_empty() {
                round.errors.push(Failed {
                    socket: None,
                    error: format!(
                        "process {pid} has no inspect socket (not a custodian program, or \
                         one started without Builder::inspect)"
                    ),
                });
            }
        }),
        (None, Some(dir), None) => tokio_custodian::inspect_sockets_in(&dir),
        (None, None, None) => Ok(Vec::new()),
    };
    match found {
        Ok(sockets) => {
            for s in sockets {
                match tokio_custodian::inspect(&s) {
                    // The path was PID's in its mount namespace; here another process
                    // may listen at it (`inspect` has proved the answer is its owner's).
                    Ok(i) if pid.is_some_and(|p| p != i.pid) => {
                        round.errors.push(Failed {
                            socket: Some(s),
                            error: format!(
                                "answered by pid {}, not by process {}",
                                i.pid,
                                pid.unwrap_or_default()
                            ),
                        });
                    }
                    Ok(i) => round.owners.push(i),
                    Err(e) => round.errors.push(Failed {
                        socket: Some(s),
                        error: e.to_string(),
                    }),
                }
            }
        }
        Err(e) => round.errors.push(Failed {
            socket: None,
            error: e.to_string(),
        }),
    }
    round
}

fn print(round: &Round, json: bool, watching: bool) {
    let mut out = std::io::stdout().lock();
    if json {
        let _ = serde_json::to_writer(&mut out, round);
        let _ = writeln!(out);
    } else {
        if watching && std::io::stdout().is_terminal() {
            let _ = write!(out, "\x1b[2J\x1b[H");
        }
        for o in &round.owners {
            let _ = writeln!(out, "{o}\n");
        }
        if round.owners.is_empty() && round.errors.is_empty() {
            let _ = writeln!(out, "no inspect socket found");
        }
    }
    let _ = out.flush();
    for e in &round.errors {
        match &e.socket {
            Some(s) => eprintln!("custodian inspect: {}: {}", s.display(), e.error),
            None => eprintln!("custodian inspect: {}", e.error),
        }
    }
}
