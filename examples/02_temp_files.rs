//! Temp files and temp dirs: private, removed on every path, and easy to keep.
//!
//! Every supervisor has its own temp root (mode 0700, a random name, `flock`ed). A temp
//! file written by a job is persisted atomically into an output directory when the job
//! succeeds (`persist`, or `persist_noclobber` to never replace anything), and removed
//! when it does not. A temp dir full of intermediate files is removed, whatever is in it,
//! when its guard drops. Modes are exactly 0600 and 0700 even under `umask 000`. An
//! acquisition cancelled half-way (its future dropped) leaves no name behind, and `live()`
//! shows what is alive right now with the line that acquired it.
//!
//! Run it with `cargo run --example 02_temp_files`.

use std::os::unix::fs::PermissionsExt;

use tokio::io::AsyncWriteExt;
use tokio_custodian::Supervisor;

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

#[tokio::main]
async fn main() -> tokio_custodian::Result<()> {
    // A careless umask does not widen custodian's modes.
    rustix::process::umask(rustix::fs::Mode::empty());
    let sup = Supervisor::builder().start()?;
    let out = std::env::temp_dir().join(format!("custodian-02-{}", std::process::id()));
    std::fs::create_dir_all(&out).expect("output dir");

    // A job's output: written to a temp file, persisted once complete.
    let mut report = sup.temp().prefix("report-").suffix(".json").file().await?;
    report.write_all(br#"{"words": 42}"#).await.expect("write");
    println!(
        "temp file {} has mode {:o}",
        report.path().display(),
        mode(report.path())
    );
    assert_eq!(mode(report.path()), 0o600);
    let kept = report
        .persist(out.join("report.json"))
        .await
        .map_err(|e| e.error)?; // on failure, `e.into_guard()` hands the temp file back
    println!("persisted to {}", kept.path().display());
    drop(kept);

    // A second attempt must not replace the first: persist_noclobber refuses, and the
    // temp file it hands back is still managed (removed when dropped).
    let second = sup.temp_file().await?;
    let refused = second
        .persist_noclobber(out.join("report.json"))
        .await
        .expect_err("the target exists");
    println!("persist_noclobber: {}", refused.error);
    let back = refused.into_guard().expect("the temp file came back");
    let back_path = back.path().to_path_buf();
    drop(back);

    // A scratch dir with a small tree in it, removed as a whole when the guard drops.
    let scratch = sup.temp().prefix("frames-").dir().await?;
    assert_eq!(mode(scratch.path()), 0o700);
    for i in 0..3 {
        let sub = scratch.path().join(format!("chunk-{i}"));
        std::fs::create_dir(&sub).expect("mkdir");
        std::fs::write(sub.join("frame.raw"), [0u8; 1024]).expect("write");
    }
    for r in sup.live() {
        println!("live: {r}");
    }
    let scratch_path = scratch.path().to_path_buf();
    drop(scratch); // removal runs off the async threads; `close().await` would wait for it

    // A cancelled acquisition: no temp name is left behind, none is registered.
    // (Polled once, so the creation has started on the blocking pool, then dropped at
    // the end of the block.)
    let finished = {
        let mut creation = std::pin::pin!(sup.temp().prefix("cancelled-").file());
        tokio::select! {
            biased;
            made = &mut creation => Some(made?),
            () = std::future::ready(()) => None,
        }
    };
    println!("creation dropped half-way: {}", finished.is_none());
    drop(finished);

    let report = sup.shutdown().await;
    println!("{report}");
    assert!(!back_path.exists() && !scratch_path.exists());
    assert!(
        !sup.temp_root().exists(),
        "the temp root is removed at shutdown"
    );
    assert_eq!(
        std::fs::read(out.join("report.json")).expect("kept"),
        br#"{"words": 42}"#
    );
    std::fs::remove_dir_all(&out).expect("clean up the output dir");
    Ok(())
}
