//! Keeping a state file that other processes read, with an owner for every step.
//!
//! Two workers update one JSON counter file. Each takes the exclusive `FileLock` next to
//! it (retrying with backoff while the other holds it), reads the counter, and writes the
//! new value with `atomic_write`: a reader, at any instant, sees the complete old or the
//! complete new file. `live()` shows the held lock with the line that took it. A third
//! writer is dropped half-way: its temp file disappears and the state file is untouched.
//! At the end no temp name is left in the directory and the shutdown report is clean.
//!
//! Run it with `cargo run --example 07_atomic_state`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio_custodian::{Retry, Supervisor};

fn counter(path: &Path) -> u64 {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.trim_start_matches("{\"count\":")
        .trim_end_matches('}')
        .parse()
        .unwrap_or(0)
}

async fn bump(
    sup: &Supervisor,
    state: &Path,
    lock: &Path,
    who: &str,
) -> tokio_custodian::Result<()> {
    let policy = Retry::new()
        .attempts(50)
        .base_delay(Duration::from_millis(1));
    let held = policy
        .run(|_| sup.file_lock(lock).try_acquire())
        .await
        .map_err(|e| e.into_last())?;
    if let Some(l) = sup
        .live()
        .iter()
        .find(|l| l.kind() == tokio_custodian::ResourceKind::Lock)
    {
        println!(
            "{who}: holds `{}` (taken at line {})",
            l.label(),
            l.site().line
        );
    }
    let next = counter(state) + 1;
    sup.atomic_write(state, format!("{{\"count\":{next}}}"))
        .await?;
    held.unlock().await
}

#[tokio::main]
async fn main() -> tokio_custodian::Result<()> {
    let sup = Supervisor::builder().start()?;
    let dir: PathBuf = sup.temp_root().join("service");
    std::fs::create_dir(&dir).expect("create the service dir");
    let (state, lock) = (dir.join("state.json"), dir.join("state.lock"));

    let workers = ["a", "b"].map(|who| {
        let (sup, state, lock) = (sup.clone(), state.clone(), lock.clone());
        tokio::spawn(async move {
            for _ in 0..5 {
                bump(&sup, &state, &lock, who).await?;
            }
            Ok::<_, tokio_custodian::Error>(())
        })
    });
    for w in workers {
        w.await.expect("worker panicked")?;
    }
    println!("count: {}", counter(&state));
    assert_eq!(counter(&state), 10);

    // A writer abandoned half-way leaves nothing and changes nothing.
    let mut f = sup.atomic_file(&state).await?;
    f.write_all(b"{\"count\":").await.expect("write");
    drop(f);
    assert_eq!(counter(&state), 10);
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .expect("read the service dir")
        .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
        .collect();
    names.sort();
    println!("left in the directory: {names:?}");
    assert_eq!(names, ["state.json", "state.lock"]);

    let report = sup.shutdown().await;
    println!("{report}");
    assert!(report.is_clean());
    Ok(())
}
