//! Review of the parallel shutdown (issue 22): leftovers released in chunks on the
//! blocking pool must emit their "leaked resource reclaimed" warnings in the caller's
//! `tracing` context, as the serial release did (and as `spawn_unit` does for the
//! creation units). A thread's default subscriber over a current-thread runtime saw
//! every warning before; with chunks on pool threads it lost all but the newest chunk's.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use custodian_suite::{Rt, scenario};
use tokio_custodian::{ReleasePath, Supervisor};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};

/// More than two chunks' worth of temp files (a run is split from 512), few enough for
/// a soft fd limit of 1,024.
const FILES: usize = 600;

/// The ids of "leaked resource reclaimed" events.
#[derive(Clone, Default)]
struct Leaks(Arc<Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Leaks {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        struct V(bool, String);
        impl Visit for V {
            fn record_debug(&mut self, f: &Field, v: &dyn std::fmt::Debug) {
                match f.name() {
                    "message" => self.0 = format!("{v:?}") == "leaked resource reclaimed",
                    "id" => self.1 = format!("{v:?}"),
                    _ => {}
                }
            }
        }
        let mut v = V(false, String::new());
        event.record(&mut v);
        if v.0 {
            self.0.lock().unwrap().push(v.1);
        }
    }
}

#[test]
fn leak_warnings_of_a_split_release_reach_the_callers_subscriber() {
    let leaks = Leaks::default();
    let _default =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(leaks.clone()));
    scenario(Rt::Current, "rv-shut3-tracing", async |base| {
        let sup = Supervisor::builder().temp_base(&base).start().unwrap();
        let mut files = Vec::new();
        for _ in 0..FILES {
            files.push(sup.temp_file().await.unwrap());
        }
        let report = sup.shutdown().await;
        assert_eq!(report.alive_at_shutdown.len(), FILES);
        assert_eq!(
            report.released_by_path()[&ReleasePath::Shutdown],
            FILES as u64
        );
        let seen = leaks.0.lock().unwrap().clone();
        let ids: HashSet<&str> = seen.iter().map(String::as_str).collect();
        assert_eq!(
            (seen.len(), ids.len()),
            (FILES, FILES),
            "leak warnings lost (released on threads without the caller's subscriber)"
        );
        drop(files);
    });
}
