//! Review of issue 22: the cost of the leak path. With no per-scope id list, a scope that
//! ends with a leftover (an escaped or forgotten guard) filters the whole registry.
//! Printed with `--nocapture`; not bounded (a debug build on a shared machine).

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use custodian_suite::reclaims::Count;
use custodian_suite::{Rt, scenario};
use tokio_custodian::{Registration, ResourceKind, Supervisor};

/// The cost of the leak path: a scope that ends with one forgotten guard scans the whole
/// registry. Measured with 100k entries live in the root scope (best of 20, printed);
/// checks that the leftover is reclaimed and recorded each time.
#[test]
fn a_scope_end_with_one_leftover_among_100k_live_entries() {
    scenario(Rt::Current, "perf2-scan-cost", async |base| {
        let sup = Supervisor::builder().temp_base(&base).start().unwrap();
        let root = sup.root();
        let slots = Arc::new((0..100_001).map(|_| AtomicU8::new(0)).collect::<Vec<_>>());
        let held: Vec<Registration> = (0..100_000)
            .map(|at| {
                let c = Count {
                    slots: slots.clone(),
                    at,
                };
                root.register(ResourceKind::Lock, "bulk", None, c).unwrap()
            })
            .collect();
        let time = async |leave: bool| {
            let slots = slots.clone();
            let mut best = Duration::MAX;
            for _ in 0..20 {
                let t = Instant::now();
                sup.scope("one", async |s| {
                    let c = Count {
                        slots: slots.clone(),
                        at: 100_000,
                    };
                    let r = s.register(ResourceKind::Lock, "one", None, c).unwrap();
                    if leave {
                        std::mem::forget(r);
                    }
                })
                .await
                .unwrap();
                best = best.min(t.elapsed());
            }
            best
        };
        let clean = time(false).await;
        let leftover = time(true).await;
        eprintln!(
            "scope with 1 registration, 100k live elsewhere: released by its guard {clean:?}, \
             left over (registry scanned) {leftover:?}"
        );
        assert_eq!(slots[100_000].load(Ordering::SeqCst), 40);
        assert_eq!(sup.leaked().len(), 20);
        drop(held);
        sup.shutdown().await;
    });
}
