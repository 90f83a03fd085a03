//! Scenarios with managed child processes (and an audio decoder) held at shutdown.
//!
//! Extra lines the tests read: `PGID <n>` for each child's process group (printed before
//! `READY`), `CHILDREN <pids>` (this process's children, zombies included, once clean-up
//! is over: must be empty) and `EMERGENCY_CHILDREN <pids>` (the same, from the panic hook
//! chained after custodian's).

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio_custodian::{ManagedChild, PanicCleanup, Scope, Supervisor};

use super::{acquire, say, start};

/// Pids of this process's children, running or zombie, from `/proc/*/stat`.
pub(crate) fn own_children() -> Vec<u32> {
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                s.rfind(')')
                    .and_then(|i| s[i + 2..].split_whitespace().nth(1)?.parse::<u32>().ok())
                    == Some(me)
            })
        })
        .collect()
}

fn say_children(prefix: &str) {
    let kids: Vec<String> = own_children().iter().map(u32::to_string).collect();
    say(&format!("{prefix} {}", kids.join(" ")));
}

/// Whether `pid` ignores SIGTERM (bit 15 of `SigIgn` in `/proc/PID/status`).
fn ignores_term(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("SigIgn:"))
            .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
            .is_some_and(|mask| mask & (1 << 14) != 0)
    })
}

fn quiet(c: tokio_custodian::Command) -> tokio_custodian::Command {
    c.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
}

/// `sleep 1000`; a shell that ignores SIGTERM (300 ms grace, so SIGKILL ends it); a shell
/// with a grandchild. Prints each group and returns once the TERM trap is set and the
/// grandchild runs, so that every test sees the full escalation.
async fn spawn_children(s: &Scope) -> tokio_custodian::Result<Vec<ManagedChild>> {
    let plain = quiet(s.command("sleep").arg("1000").label("sleep")).spawn()?;
    let deaf = quiet(
        s.command("sh")
            .args(["-c", "trap '' TERM; sleep 1000"])
            .label("ignores-term")
            .grace(Duration::from_millis(300)),
    )
    .spawn()?;
    let forks = quiet(
        s.command("sh")
            .args(["-c", "sleep 1000 & sleep 1000"])
            .label("forks"),
    )
    .spawn()?;
    let kids = vec![plain, deaf, forks];
    for k in &kids {
        say(&format!("PGID {}", k.process_group()));
    }
    let (deaf, forks) = (kids[1].process_group(), kids[2].process_group());
    let until = Instant::now() + Duration::from_secs(30);
    while !(ignores_term(deaf) && custodian_suite::group_members(&[forks]).len() >= 2) {
        assert!(Instant::now() < until, "children never got ready");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(kids)
}

/// Runs a `jobs` scope holding a temp file, a temp dir with content and the children until
/// cancelled. Returns the scope's task once everything is acquired.
async fn jobs(sup: &Supervisor) -> tokio::task::JoinHandle<tokio_custodian::Result<()>> {
    let s = sup.clone();
    let (entered, entered_rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        s.scope("jobs", async |s| -> tokio_custodian::Result<()> {
            let mut t = s.temp_file().await?;
            t.write_all(b"jobs").await.expect("write");
            let d = s.temp_dir().await?;
            std::fs::write(d.path().join("f"), b"x").expect("write");
            let _kids = spawn_children(&s).await?;
            let _ = entered.send(());
            s.cancelled().await;
            drop((t, d));
            Ok(())
        })
        .await?
    });
    entered_rx.await.expect("jobs scope entered");
    task
}

/// `children-term` / `children-term-twice`: waits for SIGTERM; prints the report, then
/// this process's remaining children. The forced variant adds a hook that sleeps past the
/// first signal and a scope that ignores cancellation while it holds a child.
pub(crate) async fn signalled(forced: bool) {
    let sup = start(Duration::from_secs(if forced { 30 } else { 10 })).await;
    let held = acquire(&sup).await;
    let jobs = jobs(&sup).await;
    if forced {
        sup.on_shutdown("slow", Duration::from_secs(30), |_| async {
            say("HOOK_STARTED");
            tokio::time::sleep(Duration::from_secs(60)).await;
        })
        .expect("hook");
        let s = sup.clone();
        let (entered, entered_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            s.root()
                .scope_with_grace("stubborn", Duration::from_secs(60), async |s| {
                    let kids = spawn_children(&s).await.expect("children");
                    let _ = entered.send(());
                    std::future::pending::<()>().await; // ignores cancellation
                    drop(kids)
                })
                .await
        });
        entered_rx.await.expect("stubborn scope entered");
    }
    say("READY");
    let report = sup.wait_for_shutdown().await;
    drop(held);
    let jobs = jobs.await.expect("jobs task");
    say(&format!("JOBS {jobs:?}"));
    eprintln!("{report}");
    say(&format!(
        "REPORT {}",
        serde_json::to_string(&report).expect("json")
    ));
    say_children("CHILDREN");
}

/// `children-panic-hook`: a panic on another thread runs custodian's hook, then ours
/// (which lists what is left of our children), then the process aborts.
pub(crate) async fn panic_hook() {
    let sup = Supervisor::builder().start().expect("supervisor");
    std::panic::set_hook(Box::new(|_| say_children("EMERGENCY_CHILDREN")));
    sup.install_panic_hook(PanicCleanup::OnAnyPanic);
    say(&format!("ROOT {}", sup.temp_root().display()));
    let _held = acquire(&sup).await;
    let _jobs = jobs(&sup).await;
    say("READY");
    let _ = std::thread::spawn(|| panic!("fatal in worker")).join();
    std::process::abort();
}

/// `children-drop-runtime`: the jobs scope is stuck and a child guard is forgotten; then
/// the runtime is dropped without `shutdown()`, then the last supervisor handle.
pub(crate) fn drop_runtime(rt: tokio::runtime::Runtime) {
    let sup = rt.block_on(async {
        let sup = Supervisor::builder().start().expect("supervisor");
        say(&format!("ROOT {}", sup.temp_root().display()));
        std::mem::forget(acquire(&sup).await);
        let s = sup.clone();
        let (entered, entered_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            s.scope("stuck", async |s| {
                let _kids = spawn_children(&s).await.expect("children");
                let _ = entered.send(());
                std::future::pending::<()>().await
            })
            .await
        });
        entered_rx.await.expect("stuck scope entered");
        let lost = quiet(sup.command("sleep").arg("1000").label("forgotten"))
            .spawn()
            .expect("spawn");
        say(&format!("PGID {}", lost.process_group()));
        std::mem::forget(lost);
        sup
    });
    let root = sup.temp_root().to_path_buf();
    say(&format!("BEFORE {}", usize::from(root.is_dir())));
    say("READY");
    drop(rt);
    drop(sup);
    say_children("CHILDREN");
    say(&format!("LEFT {}", usize::from(root.exists())));
}

/// A 16-bit mono PCM WAV of `frames` frames of silence at 8 kHz.
fn wav(frames: u32) -> Vec<u8> {
    let data = frames * 2;
    let mut v = Vec::with_capacity(44 + data as usize);
    v.extend_from_slice(b"RIFF");
    v.extend_from_slice(&(36 + data).to_le_bytes());
    v.extend_from_slice(b"WAVEfmt ");
    v.extend_from_slice(&16u32.to_le_bytes());
    v.extend_from_slice(&1u16.to_le_bytes()); // PCM
    v.extend_from_slice(&1u16.to_le_bytes()); // mono
    v.extend_from_slice(&8_000u32.to_le_bytes());
    v.extend_from_slice(&16_000u32.to_le_bytes()); // byte rate
    v.extend_from_slice(&2u16.to_le_bytes()); // block align
    v.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
    v.extend_from_slice(b"data");
    v.extend_from_slice(&data.to_le_bytes());
    v.resize(44 + data as usize, 0);
    v
}

/// `audio-term`: an audio decoder (on a WAV written to a managed temp file) open in a
/// scope, and the children, at SIGTERM.
pub(crate) async fn audio() {
    let sup = start(Duration::from_secs(10)).await;
    let jobs = jobs(&sup).await;
    let s = sup.clone();
    let (entered, entered_rx) = tokio::sync::oneshot::channel();
    let audio = tokio::spawn(async move {
        s.scope("audio", async |s| {
            let mut f = s.temp_file().await.expect("temp file");
            f.write_all(&wav(8_000)).await.expect("write");
            f.flush().await.expect("flush");
            let mut dec = tokio_custodian_audio::AudioDecoder::open(&s, f.path())
                .await
                .expect("open the WAV");
            let first = dec.read_i16(100).await.expect("read");
            assert_eq!(first.len(), 100);
            let _ = entered.send(());
            s.cancelled().await;
            drop((dec, f));
        })
        .await
    });
    entered_rx.await.expect("audio scope entered");
    say("READY");
    let report = sup.wait_for_shutdown().await;
    let _ = jobs.await;
    let _ = audio.await;
    say(&format!(
        "REPORT {}",
        serde_json::to_string(&report).expect("json")
    ));
    say_children("CHILDREN");
}

/// `children-drop-exit`: a forgotten child (a group with a grandchild), the last handle
/// dropped without `shutdown()`, then `process::exit` at once: the blocking pool never
/// gets to the emergency work, so only what the drop did inline counts.
pub(crate) async fn drop_then_exit() {
    let sup = Supervisor::builder().start().expect("supervisor");
    say(&format!("ROOT {}", sup.temp_root().display()));
    let child = sup
        .command("sh")
        .args(["-c", "sleep 1000 & sleep 1000"])
        .spawn()
        .expect("child");
    say(&format!("PGID {}", child.id().expect("pid")));
    std::mem::forget(child);
    say("READY");
    drop(sup);
    std::process::exit(0);
}
