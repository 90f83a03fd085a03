//! The `metrics` feature (issue 20): the stats reach whichever recorder the service
//! installed, through the `metrics` facade (here a recorder of the test's own).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, Key, KeyName, Metadata, Recorder, SharedString,
    Unit,
};
use tokio_custodian::{Quota, ResourceKind, Supervisor};

/// Every metric by `name{label=value,...}`, its last value.
#[derive(Default)]
struct Rec(Mutex<BTreeMap<String, Arc<Cell>>>);

#[derive(Default)]
struct Cell(AtomicU64);

impl CounterFn for Cell {
    fn increment(&self, v: u64) {
        self.0.fetch_add(v, Ordering::Relaxed);
    }
    fn absolute(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }
}

impl GaugeFn for Cell {
    fn increment(&self, _: f64) {}
    fn decrement(&self, _: f64) {}
    fn set(&self, v: f64) {
        self.0.store(v as u64, Ordering::Relaxed);
    }
}

impl Rec {
    fn cell(&self, key: &Key) -> Arc<Cell> {
        let labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        let name = format!("{}{{{}}}", key.name(), labels.join(","));
        self.0.lock().unwrap().entry(name).or_default().clone()
    }
    fn get(&self, name: &str) -> Option<u64> {
        self.0
            .lock()
            .unwrap()
            .get(name)
            .map(|c| c.0.load(Ordering::Relaxed))
    }
}

impl Recorder for Rec {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.cell(key))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.cell(key))
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

#[tokio::test]
async fn stats_quotas_and_state_are_published() {
    let sup = Supervisor::builder()
        .quota(Quota::live(ResourceKind::TempFile, 2))
        .start()
        .unwrap();
    let a = sup.temp_file().await.unwrap();
    drop(sup.temp_file().await.unwrap());
    sup.scope("s", async |s| std::mem::forget(s.temp_file().await))
        .await
        .unwrap();
    let rec = Rec::default();
    metrics::with_local_recorder(&rec, || tokio_custodian::metrics::publish(&sup));
    let m = |n: &str| {
        rec.get(n)
            .unwrap_or_else(|| panic!("{n} missing: {:?}", rec.0.lock().unwrap().keys()))
    };
    assert_eq!(m("custodian_live{kind=temp_file}"), 1);
    assert_eq!(m("custodian_created_total{kind=temp_file}"), 3);
    assert_eq!(m("custodian_released_total{kind=temp_file,by=drop}"), 1);
    assert_eq!(m("custodian_leaked_total{kind=temp_file}"), 1);
    assert_eq!(m("custodian_failed_total{kind=temp_file}"), 0);
    assert_eq!(m("custodian_quota_in_use{quota=live temp_file ≤ 2}"), 1);
    assert_eq!(m("custodian_quota_limit{quota=live temp_file ≤ 2}"), 2);
    assert_eq!(m("custodian_quota_waiting{quota=live temp_file ≤ 2}"), 0);
    assert_eq!(m("custodian_shutting_down{}"), 0);
    drop(a);
    sup.shutdown().await;
    metrics::with_local_recorder(&rec, || tokio_custodian::metrics::publish(&sup));
    assert_eq!(m("custodian_live{kind=temp_file}"), 0);
    assert_eq!(m("custodian_released_total{kind=temp_file,by=drop}"), 2);
    assert_eq!(m("custodian_shutting_down{}"), 1);
}
