//! The leak check inside `#[tokio::test(flavor = "multi_thread", worker_threads = 2)]` (issue 20): the runtime's own fds
//! (epoll, eventfds), libtest's and Tokio's threads (including the blocking pool, which
//! grows during the test) and Tokio's signal pipe (opened by the first managed child)
//! are not leaks; a forgotten guard and a raw fd are. One test per file: this binary
//! runs nothing else at the same time, so the default (shared) mode is exact here.

#[path = "support/leak_check_body.rs"]
mod body;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harness_is_not_a_leak_and_a_leak_is() {
    body::harness_is_not_a_leak_and_a_leak_is().await;
}
