//! Every live supervisor of the process, for the leak check (`testing` feature only).
//!
//! A list of `Weak` handles behind a mutex, written once per [`Builder::start`] and read
//! only by `testing::LeakCheck`: nothing on the hot path (a registration or a release
//! never touches it), and it never keeps a supervisor alive (a dropped supervisor's entry
//! fails to upgrade and is pruned at the next start). Without the `testing` feature it
//! does not exist: `enroll` compiles to nothing.
//!
//! [`Builder::start`]: crate::Builder::start

use std::sync::Arc;

use crate::inner::Inner;

#[cfg(feature = "testing")]
static LIVE: std::sync::Mutex<Vec<std::sync::Weak<Inner>>> = std::sync::Mutex::new(Vec::new());

/// Adds a started supervisor to the census (and prunes the dead ones).
#[cfg_attr(not(feature = "testing"), allow(unused_variables))]
pub(crate) fn enroll(inner: &Arc<Inner>) {
    #[cfg(feature = "testing")]
    {
        let mut live = LIVE
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        live.retain(|w| w.strong_count() > 0);
        live.push(Arc::downgrade(inner));
    }
}

/// Every supervisor still alive, in start order.
#[cfg(feature = "testing")]
pub(crate) fn all() -> Vec<crate::inner::Supervisor> {
    let live = LIVE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    live.iter()
        .filter_map(std::sync::Weak::upgrade)
        .map(|inner| crate::inner::Supervisor { inner })
        .collect()
}
