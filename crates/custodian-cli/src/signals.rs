//! The signals `custodian run` catches and forwards to CMD's process group, as tini and
//! coreutils `timeout` do: every one whose default action would kill the runner (and so
//! orphan CMD), except the synchronous fault signals (SIGSEGV, SIGBUS, SIGILL, SIGFPE,
//! SIGTRAP, SIGABRT, SIGSYS), which say something about the runner itself; and those
//! that do not kill but mean something to CMD (SIGWINCH, SIGCONT, SIGURG).
//!
//! A handler is installed for each, which is also what makes them reach the runner as a
//! pid namespace's PID 1: the kernel drops a signal sent to a namespace's init that has
//! no handler for it (except SIGKILL and SIGSTOP, from an ancestor namespace).

use rustix::process::Signal;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

/// Named signals forwarded; those in [`STOPPING`] also start the stop (grace, SIGKILL).
const NAMED: [Signal; 18] = [
    Signal::HUP,
    Signal::INT,
    Signal::QUIT,
    Signal::TERM,
    Signal::USR1,
    Signal::USR2,
    Signal::ALARM,
    Signal::PIPE,
    Signal::VTALARM,
    Signal::PROF,
    Signal::XCPU,
    Signal::XFSZ,
    Signal::IO,
    Signal::POWER,
    Signal::STKFLT,
    Signal::WINCH,
    Signal::CONT,
    Signal::URG,
];

/// Forwarded signals after which CMD has `--grace` to end before SIGKILL.
pub(crate) const STOPPING: [Signal; 4] = [Signal::INT, Signal::TERM, Signal::HUP, Signal::QUIT];

/// Installs the handlers; the receiver yields each signal as it arrives (a burst of the
/// same one may arrive as one, as the kernel merges pending standard signals).
///
/// # Errors
///
/// A handler could not be installed.
pub(crate) fn listen() -> std::io::Result<mpsc::UnboundedReceiver<Signal>> {
    let (tx, rx) = mpsc::unbounded_channel();
    let realtime = nix::libc::SIGRTMIN()..=nix::libc::SIGRTMAX();
    let named = NAMED.iter().map(|s| (s.as_raw(), Some(*s)));
    let all = named.chain(realtime.map(|n| (n, None)));
    for (raw, named) in all {
        let Some(sig) = named.or_else(|| realtime_signal(raw)) else {
            continue;
        };
        let mut stream = signal(SignalKind::from_raw(raw))?;
        let tx = tx.clone();
        // Each stream lives as long as the runtime: the handler stays installed, so a
        // late signal is never the default action (death) for the runner.
        tokio::spawn(async move {
            while stream.recv().await.is_some() {
                if tx.send(sig).is_err() {
                    break;
                }
            }
        });
    }
    Ok(rx)
}

/// A realtime signal's number as a [`Signal`].
fn realtime_signal(raw: i32) -> Option<Signal> {
    let valid = (nix::libc::SIGRTMIN()..=nix::libc::SIGRTMAX()).contains(&raw);
    // SAFETY: `raw` lies in libc's SIGRTMIN..=SIGRTMAX, the realtime signals available
    // to applications (libc's own reserved ones are below SIGRTMIN); sending it is all
    // that is done with it. Covered by the realtime case in tests/run_signals.rs.
    #[allow(unsafe_code)]
    valid.then(|| unsafe { Signal::from_raw_unchecked(raw) })
}

/// The name of a signal for reports: `SIGTERM`, or `signal N`.
pub(crate) fn name(sig: Signal) -> String {
    let known = [
        (Signal::INT, "SIGINT"),
        (Signal::TERM, "SIGTERM"),
        (Signal::HUP, "SIGHUP"),
        (Signal::QUIT, "SIGQUIT"),
    ];
    known.iter().find(|(s, _)| *s == sig).map_or_else(
        || format!("signal {}", sig.as_raw()),
        |(_, n)| (*n).to_owned(),
    )
}
