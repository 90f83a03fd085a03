//! The scope runner's shortcuts keep their promises: no drain token without a drain, and
//! a scope whose handle escaped is closed and cancelled at its end even though the
//! runner skips the close when it holds the last reference.

use std::time::Duration;

use crate::{Cleanup, Error, Reclaim, ResourceKind, Supervisor};

struct Nothing;

impl Reclaim for Nothing {
    fn reclaim(self: Box<Self>) -> Cleanup {
        Cleanup::Done(Ok(()))
    }
}

/// How many top-level scopes the drain's tracker counts from inside a top-level scope's
/// body, and from inside one nested in it.
async fn top_tokens(sup: &Supervisor) -> (usize, usize) {
    sup.scope("top", async |s| {
        let outer = s.inner().drain.top_len();
        let inner = s
            .scope("nested", async |n| n.inner().drain.top_len())
            .await
            .unwrap();
        (outer, inner)
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn a_top_level_scope_takes_a_drain_token_only_with_a_drain() {
    // Without a drain nobody reads the count: no token.
    let sup = Supervisor::builder().start().unwrap();
    assert_eq!(top_tokens(&sup).await, (0, 0));
    assert_eq!(sup.inner.drain.top_len(), 0);
    sup.shutdown().await;
    // With one, the top-level scope is counted (once: not its nested scope) until its end.
    let sup = Supervisor::builder()
        .drain(Duration::from_secs(5))
        .start()
        .unwrap();
    assert_eq!(top_tokens(&sup).await, (1, 1));
    assert_eq!(sup.inner.drain.top_len(), 0);
    sup.shutdown().await;
}

#[tokio::test]
async fn an_escaped_handle_is_closed_and_cancelled_at_its_scopes_end() {
    let sup = Supervisor::builder().start().unwrap();
    let escaped = sup.scope("s", async |s| s).await.unwrap();
    assert!(escaped.is_cancelled());
    assert!(matches!(
        escaped.register(ResourceKind::Lock, "late", None, Nothing),
        Err(Error::ScopeClosed { .. })
    ));
    // The same scope without an escaped handle: the runner's is the last reference.
    let ended = sup
        .scope("t", async |s| {
            s.register(ResourceKind::Lock, "kept", None, Nothing)
        })
        .await
        .unwrap()
        .unwrap();
    // The guard escaped, its scope's end released it (the sweep ran).
    assert_eq!(sup.stats().live(), 0);
    drop(ended);
    sup.shutdown().await;
}
