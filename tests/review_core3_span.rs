//! Review of the scope runner's span shortcut (scope3): the runner is instrumented only
//! when a subscriber wants the span. With one, a scope body's events must still carry
//! its span (and a nested scope's, both). Alone in its binary: tracing caches each
//! callsite's interest process-wide, and tests running beside it without a subscriber
//! would race that cache.

use std::io;
use std::sync::{Arc, Mutex};

use custodian_suite::{Rt, scenario};
use tokio_custodian::Supervisor;

#[test]
fn with_a_subscriber_events_in_a_scope_body_are_inside_its_span() {
    // The span is entered only when a subscriber wants it (scope3): with one, the
    // body's events must still carry the scope's span, on a nested scope too.
    #[derive(Clone, Default)]
    struct Out(Arc<Mutex<Vec<u8>>>);
    impl io::Write for Out {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let out = Out::default();
    let w = out.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || w.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        scenario(Rt::Current, "core3-span", async |base| {
            let sup = Supervisor::builder().temp_base(&base).start().unwrap();
            sup.reaped_at_start().await;
            sup.scope("outer-span", async |s| {
                tracing::info!("in-outer");
                s.scope("inner-span", async |_| tracing::info!("in-inner"))
                    .await
                    .unwrap();
            })
            .await
            .unwrap();
            sup.shutdown().await;
        });
    });
    let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    let line = |m: &str| {
        text.lines()
            .find(|l| l.contains(m))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(
        line("in-outer").contains("scope{name=\"outer-span\""),
        "{text}"
    );
    let inner = line("in-inner");
    assert!(
        inner.contains("scope{name=\"outer-span\"") && inner.contains("scope{name=\"inner-span\""),
        "{text}"
    );
}
