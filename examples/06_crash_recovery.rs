//! Crash recovery: a SIGKILLed owner leaves nothing behind once the next one starts.
//!
//! The example runs itself twice. The first copy, the "owner", starts a supervisor with a
//! state dir (its crash journal), creates a temp file, a temp dir with a file in it and
//! a child that has a grandchild (`sh -c 'sleep 1000 & wait'`), says "ready", and is then
//! SIGKILLed by the second copy: no destructor, no shutdown, nothing runs. Its temp root
//! and its processes are still there. The second copy then starts a supervisor on the
//! same state dir, which proves the owner dead by its identity (pid, start time, boot id:
//! no waiting for an age) and sweeps what its journal recorded: the child's group is
//! stopped (SIGTERM, then SIGKILL after the grace), the temp root removed, the journal
//! dropped. The program prints the sweep report and checks that nothing of the owner is
//! left. `custodian sweep --state-dir DIR` does the same from the command line.
//!
//! Run it with `cargo run --example 06_crash_recovery`.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tokio_custodian::Supervisor;

/// Whether any running (not zombie) process is in process group `pgid`.
fn group_alive(pgid: u32) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return false;
    };
    dir.filter_map(|e| e.ok()).any(|e| {
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let Some(rest) = stat.rfind(')').and_then(|i| stat.get(i + 2..)) else {
            return false;
        };
        let f: Vec<&str> = rest.split_whitespace().take(3).collect();
        f.len() == 3 && f[0] != "Z" && f[2] == pgid.to_string()
    })
}

/// The first copy: acquires resources, then waits to be SIGKILLed.
async fn owner(state: &Path, base: &Path) -> tokio_custodian::Result<()> {
    let sup = Supervisor::builder()
        .state_dir(state)
        .temp_base(base)
        .start()?;
    let file = sup.temp().suffix(".wav").file().await?;
    let dir = sup.temp_dir().await?;
    std::fs::write(dir.path().join("frames.raw"), [0u8; 4096]).expect("write");
    let child = sup
        .command("sh")
        .args(["-c", "sleep 1000 & wait"])
        .spawn()?;
    let mut out = std::io::stdout();
    writeln!(out, "root {}", sup.temp_root().display()).expect("stdout");
    writeln!(out, "group {}", child.process_group()).expect("stdout");
    writeln!(out, "ready").expect("stdout");
    out.flush().expect("stdout");
    std::future::pending::<()>().await;
    drop((file, dir, child));
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, state, base] = &args[..]
        && flag == "--owner"
    {
        return Ok(owner(Path::new(state), Path::new(base)).await?);
    }

    let work = std::env::temp_dir().join(format!("custodian-06-{}", std::process::id()));
    let (state, base) = (work.join("state"), work.join("tmp"));
    std::fs::create_dir_all(&base)?;

    // 1. The owner runs, acquires, and is SIGKILLed.
    let mut owner = Command::new(std::env::current_exe()?)
        .args(["--owner".as_ref(), state.as_os_str(), base.as_os_str()])
        .stdout(Stdio::piped())
        .spawn()?;
    let (mut root, mut group) = (PathBuf::new(), 0u32);
    for line in BufReader::new(owner.stdout.take().expect("piped")).lines() {
        let line = line?;
        if let Some(p) = line.strip_prefix("root ") {
            root = PathBuf::from(p);
        } else if let Some(g) = line.strip_prefix("group ") {
            group = g.parse()?;
        } else if line == "ready" {
            break;
        }
    }
    owner.kill()?; // SIGKILL: nothing of the owner's code runs any more
    owner.wait()?;
    println!(
        "owner SIGKILLed; its temp root exists: {}, its child runs: {}",
        root.exists(),
        group_alive(group)
    );
    assert!(root.exists() && group_alive(group));

    // 2. The next start sweeps what the dead owner's journal recorded.
    let sup = Supervisor::builder()
        .state_dir(&state)
        .temp_base(&base)
        .start()?;
    let report = sup.swept_at_start().await;
    print!("{report}");
    println!("{}", serde_json::to_string_pretty(&report)?);

    // The group's members were stopped; init reaps them, which may take a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    while group_alive(group) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    println!(
        "after the sweep: temp root exists: {}, child runs: {}",
        root.exists(),
        group_alive(group)
    );
    assert!(!root.exists() && !group_alive(group));
    assert_eq!(report.dead_owners.len(), 1);

    sup.shutdown().await;
    std::fs::remove_dir_all(&work)?;
    Ok(())
}
