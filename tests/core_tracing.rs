//! `tracing` events on acquire, release, leak and the leak scanner, captured by a small
//! layer and checked field by field.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use custodian_suite::{Rt, scenario};
use tokio_custodian::{ResourceKind, Supervisor};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};

type Fields = BTreeMap<String, String>;

/// Records every event's fields (the message under `message`).
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Fields>>>);

impl Capture {
    fn with_message(&self, message: &str) -> Vec<Fields> {
        let events = self.0.lock().unwrap();
        events
            .iter()
            .filter(|e| e.get("message").map(String::as_str) == Some(message))
            .cloned()
            .collect()
    }
}

struct Visitor<'a>(&'a mut Fields);

impl Visit for Visitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), value.to_string());
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let mut fields = Fields::new();
        fields.insert("level".into(), event.metadata().level().to_string());
        event.record(&mut Visitor(&mut fields));
        self.0.lock().unwrap().push(fields);
    }
}

fn field<'a>(e: &'a Fields, name: &str) -> &'a str {
    e.get(name).map_or("<missing>", String::as_str)
}

#[test]
fn acquire_and_release_events_carry_id_kind_and_label() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::registry().with(capture.clone());
    // Current-thread runtime: every event below is emitted on this thread.
    let _default = tracing::subscriber::set_default(subscriber);
    scenario(Rt::Current, "tracing", async |base| {
        let sup = Supervisor::builder().temp_base(&base).start().unwrap();
        let t = sup.temp().label("upload").file().await.unwrap();
        let id = t.id().get().to_string();
        t.close().await.unwrap();
        let d = sup.temp_dir().await.unwrap();
        let did = d.id().get().to_string();
        drop(d);
        let forgotten = sup
            .scope("s", async |s| {
                let f = s.open("/dev/null").await.unwrap();
                let id = f.id().get().to_string();
                std::mem::forget(f);
                id
            })
            .await
            .unwrap();
        sup.shutdown().await;

        let acquired = capture.with_message("acquired");
        assert_eq!(acquired.len(), 3, "{acquired:?}");
        let a = &acquired[0];
        assert_eq!(field(a, "id"), id);
        assert_eq!(field(a, "kind"), "temp_file");
        assert_eq!(field(a, "label"), "upload");
        assert_eq!(field(a, "level"), "DEBUG");
        assert_eq!(field(&acquired[1], "kind"), "temp_dir");
        assert_eq!(field(&acquired[2], "label"), "null");
        assert_eq!(field(&acquired[2], "scope"), "s");

        let released = capture.with_message("released");
        assert_eq!(released.len(), 2, "{released:?}");
        let r = &released[0];
        assert_eq!(
            (
                field(r, "id"),
                field(r, "kind"),
                field(r, "label"),
                field(r, "by")
            ),
            (id.as_str(), "temp_file", "upload", "close")
        );
        let r = &released[1];
        assert_eq!(
            (field(r, "id"), field(r, "kind"), field(r, "by")),
            (did.as_str(), "temp_dir", "drop")
        );

        let leaked = capture.with_message("leaked resource reclaimed");
        assert_eq!(leaked.len(), 1, "{leaked:?}");
        let l = &leaked[0];
        assert_eq!(field(l, "id"), forgotten);
        assert_eq!(field(l, "kind"), "file");
        assert_eq!(field(l, "released_by"), "scope_end");
        assert!(field(l, "site").starts_with(file!()), "{l:?}");
        assert_eq!(field(l, "level"), "WARN");
    });
}

/// The leak scanner warns once about a resource older than its kind's threshold (paused
/// time: the minute passes at once).
#[test]
fn the_leak_scanner_warns_once_about_an_old_resource() {
    let capture = Capture::default();
    let _default =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(capture.clone()));
    scenario(Rt::Paused, "tracing-scan", async |base| {
        let sup = Supervisor::builder()
            .temp_base(&base)
            .leak_after(ResourceKind::TempFile, Duration::from_secs(60))
            .leak_scan_interval(Duration::from_secs(1))
            .start()
            .unwrap();
        let young = sup.temp_dir().await.unwrap();
        let old = sup.temp_file().await.unwrap();
        let warning = "resource alive longer than its leak threshold";
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(capture.with_message(warning).is_empty());
        tokio::time::sleep(Duration::from_secs(90)).await;
        let w = capture.with_message(warning);
        assert_eq!(w.len(), 1, "one warning, not one per scan: {w:?}");
        assert_eq!(field(&w[0], "id"), old.id().get().to_string());
        assert!(field(&w[0], "site").starts_with(file!()));
        drop((young, old));
        assert!(sup.shutdown().await.is_clean());
    });
}
