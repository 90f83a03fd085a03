//! The supervisor task warns, once, about a resource alive longer than its kind's leak
//! threshold, naming the line that acquired it; resources under the threshold, and kinds
//! without one, are not reported.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_custodian::{ResourceKind, Supervisor};

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Captures WARN events on this thread (the scanner task runs on it: current-thread
/// runtime) until the guard drops.
fn capture_warnings() -> (Capture, tracing::subscriber::DefaultGuard) {
    let out = Capture::default();
    let writer = out.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .finish();
    (out, tracing::subscriber::set_default(subscriber))
}

#[tokio::test]
async fn old_resources_are_reported_once_with_their_site() {
    let (out, _guard) = capture_warnings();

    let sup = Supervisor::builder()
        .leak_after(ResourceKind::TempFile, Duration::from_millis(50))
        .leak_scan_interval(Duration::from_millis(10))
        .start()
        .unwrap();
    let site_line = line!() + 1;
    let old = sup.temp().label("held-too-long").file().await.unwrap();
    let dir = sup.temp_dir().await.unwrap(); // no threshold for dirs
    tokio::time::sleep(Duration::from_millis(300)).await;
    let young = sup.temp().label("young").file().await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;

    let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    let warnings: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("leak threshold"))
        .collect();
    assert_eq!(warnings.len(), 1, "exactly one warning expected:\n{text}");
    assert!(warnings[0].contains("held-too-long"), "{text}");
    assert!(
        warnings[0].contains(&format!("leak_scan.rs:{site_line}")),
        "site missing: {text}"
    );
    assert!(!text.contains("young"));
    assert_eq!(sup.leaks(Duration::from_millis(250)).len(), 2); // the file and the dir
    drop((old, young, dir));
    assert!(sup.shutdown().await.is_clean());
}

/// A zero scan interval is clamped (a zero `tokio::time::interval` would panic the
/// scanner task and silently stop leak detection).
#[tokio::test]
async fn a_zero_scan_interval_still_scans() {
    let (out, _guard) = capture_warnings();
    let sup = Supervisor::builder()
        .leak_after(ResourceKind::TempDir, Duration::from_millis(20))
        .leak_scan_interval(Duration::ZERO)
        .start()
        .unwrap();
    let dir = sup.temp().label("zero-interval").dir().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    assert!(text.contains("zero-interval"), "no warning:\n{text}");
    drop(dir);
    assert!(sup.shutdown().await.is_clean());
}
