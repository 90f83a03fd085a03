//! The opt-in panic hook must not hang when the panicking thread holds a lock that a
//! resource's emergency release needs (issue 8, item 5: a decoder that panics while
//! holding its state lock). Its own test binary: the hook is process-wide.

use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use custodian_suite::{Rt, eventually, exists, scenario};
use tokio_custodian::{Cleanup, PanicCleanup, Reclaim, ResourceKind, Supervisor};

/// Releasing it takes a lock, as a decoder's state or a file slot does.
struct NeedsLock(Arc<Mutex<()>>);

impl Reclaim for NeedsLock {
    fn reclaim(self: Box<Self>) -> Cleanup {
        drop(self.0.lock());
        Cleanup::Done(Ok(()))
    }
}

#[test]
fn a_panic_under_a_lock_the_emergency_needs_does_not_hang_the_hook() {
    scenario(Rt::Multi(2), "hook-lock", async |base| {
        let sup = Supervisor::builder().temp_base(&base).start().unwrap();
        sup.install_panic_hook(PanicCleanup::OnAnyPanic);
        let lock = Arc::new(Mutex::new(()));
        let reg = sup
            .root()
            .register(
                ResourceKind::AudioDecoder,
                "decoder",
                None,
                NeedsLock(lock.clone()),
            )
            .unwrap();
        let t = sup.temp_file().await.unwrap();
        let (path, root) = (t.path().to_path_buf(), sup.temp_root().to_path_buf());
        let (tx, rx) = mpsc::channel();
        let start = Instant::now();
        std::thread::spawn(move || {
            let _held = lock.lock().unwrap();
            // The decoding thread panics while holding the lock; the hook runs here,
            // before the unwind releases it.
            let r = std::panic::catch_unwind(|| panic!("decoder bug"));
            tx.send(r.is_err()).unwrap();
        });
        let panicked = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the panic hook hung on a lock its own thread holds");
        assert!(panicked);
        let took = start.elapsed();
        assert!(took < Duration::from_secs(10), "{took:?}");
        // The temp root goes at once (no lock needed); the decoder once its lock is free.
        assert!(!exists(&path) && !exists(&root));
        eventually("the locked resource released", || !reg.is_live()).await;
        assert!(sup.is_shutting_down());
        drop((reg, t));
    });
}
