//! A scope's end skips cancelling its token when nobody can watch it (issue 22: the
//! cancel was a sixth of a scope's cost). Whatever can watch it must still see it: an
//! escaped handle, a token handed out, a scoped task, a nested scope's handle.

use std::time::Duration;

use tokio_custodian::Supervisor;

#[tokio::test]
async fn whatever_can_watch_a_scope_sees_its_end() {
    let sup = Supervisor::builder().start().unwrap();

    // An escaped handle.
    let escaped = sup.scope("handle", async |s| s).await.unwrap();
    assert!(escaped.is_cancelled());
    escaped.cancelled().await;

    // A token handed out, the handle itself not kept.
    let token = sup.scope("token", async |s| s.token()).await.unwrap();
    assert!(token.is_cancelled());

    // A nested scope's handle that escaped both scopes.
    let nested = sup
        .scope("outer", async |s| {
            s.scope("inner", async |inner| inner).await.unwrap()
        })
        .await
        .unwrap();
    assert!(nested.is_cancelled());

    // A scoped task watching its scope through a clone of the token it was given.
    let (tx, rx) = tokio::sync::oneshot::channel();
    sup.scope("task", async |s| {
        let watcher = s.clone();
        s.spawn(async move {
            watcher.cancelled().await;
            let _ = tx.send(());
        })
        .unwrap();
    })
    .await
    .unwrap();
    tokio::time::timeout(Duration::from_secs(5), rx)
        .await
        .expect("the task saw its scope end")
        .unwrap();

    // A task spawned without a handle of the scope: it still ends with it (its grace
    // runs from the scope's token). Returned in a tuple: the task's handle is awaited
    // below, not by the scope.
    let (task,) = sup
        .root()
        .scope_with_grace("bare task", Duration::from_millis(10), async |s| {
            (s.spawn(std::future::pending::<()>()).unwrap(),)
        })
        .await
        .unwrap();
    let joined = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the task was aborted after its scope's grace");
    assert!(joined.unwrap_err().is_cancelled());

    assert!(sup.shutdown().await.is_clean());
}
