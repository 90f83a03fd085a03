//! Scopes: every resource has an owner, and an owner's end releases what it still holds.
//!
//! A request scope nests a decode scope; a temp file acquired in the nested scope is gone
//! the moment that scope returns, even though the code never closes it. A second scope is
//! cancelled from outside and given a short grace period: its body ignores the
//! cancellation, so it is dropped when the grace runs out and the result is
//! `Error::Cancelled`, with its temp dir removed all the same. A third scope panics while
//! holding a temp file: the file is removed before the panic continues. A fourth
//! `mem::forget`s its guard: the scope still removes the file and the supervisor reports
//! the leak with the line that acquired it. Nothing is left at the end.
//!
//! Run it with `cargo run --example 01_scopes`.

use std::time::Duration;

use tokio_custodian::{Error, Supervisor};

#[tokio::main]
async fn main() -> tokio_custodian::Result<()> {
    let sup = Supervisor::builder().start()?;

    // 1. Nesting: the inner scope's temp file is removed when the inner scope returns.
    let spooled = sup
        .scope("request", async |request| {
            let path = request
                .scope("decode", async |decode| {
                    let tmp = decode.temp().suffix(".pcm").file().await?;
                    Ok::<_, tokio_custodian::Error>(tmp.path().to_path_buf()) // `tmp` is not closed
                })
                .await??;
            println!(
                "after `decode` ended, its temp file exists: {}",
                path.exists()
            );
            assert!(!path.exists());
            Ok::<_, tokio_custodian::Error>(path)
        })
        .await??;
    println!("request done; spooled to {}", spooled.display());

    // 2. Cancellation with a grace period: a body that ignores it is dropped after 50 ms.
    let root = sup.root();
    let (tx, rx) = tokio::sync::oneshot::channel::<(tokio_custodian::Scope, std::path::PathBuf)>();
    let stubborn = root.scope_with_grace(
        "stubborn",
        Duration::from_millis(50),
        async |s| -> tokio_custodian::Result<()> {
            let dir = s.temp_dir().await?;
            let _ = tx.send((s.clone(), dir.path().to_path_buf()));
            std::future::pending::<()>().await; // never looks at `s.cancelled()`
            Ok::<_, tokio_custodian::Error>(())
        },
    );
    let canceller = async {
        let (scope, dir) = rx.await.expect("the scope started");
        scope.cancel();
        dir
    };
    let (result, dir) = tokio::join!(stubborn, canceller);
    println!(
        "stubborn scope: {result:?}; its dir exists: {}",
        dir.exists()
    );
    assert!(matches!(result, Err(Error::Cancelled { .. })));
    assert!(!dir.exists());

    // 3. A panic: the scope releases what it holds, then the panic continues (caught here
    //    by the task boundary, as a server's per-request task would be).
    let sup2 = sup.clone();
    let joined = tokio::spawn(async move {
        sup2.scope("panics", async |s| {
            let tmp = s.temp_file().await.expect("temp file");
            println!("panicking while holding {}", tmp.path().display());
            panic!("a bug in the handler");
        })
        .await
    })
    .await;
    println!("the panicking task ended with a panic: {}", joined.is_err());
    assert!(joined.is_err());

    // 4. A forgotten guard: removed at scope end, reported as a leak with its site.
    let forgotten = sup
        .scope("forgets", async |s| {
            let tmp = s.temp_file().await?;
            let path = tmp.path().to_path_buf();
            std::mem::forget(tmp);
            Ok::<_, tokio_custodian::Error>(path)
        })
        .await??;
    println!(
        "forgotten file exists after its scope: {}",
        forgotten.exists()
    );
    assert!(!forgotten.exists());
    for leak in sup.leaked() {
        println!("leak reported: {leak}");
    }
    assert_eq!(sup.leaked().len(), 1);

    let report = sup.shutdown().await;
    println!("{report}");
    assert!(sup.live().is_empty());
    assert!(!sup.temp_root().exists());
    Ok(())
}
