//! The stats through the [`metrics`](https://docs.rs/metrics) crate's facade (`metrics`
//! feature): whichever recorder the service installs (`metrics-exporter-prometheus`,
//! an OpenTelemetry bridge...) picks them up; custodian chooses no backend.
//!
//! Published per kind (label `kind`): `custodian_live`, `custodian_peak` and
//! `custodian_pending_cleanups` (gauges), `custodian_created_total`,
//! `custodian_failed_total`, `custodian_leaked_total` and `custodian_released_total`
//! (label `by`: `close`, `drop`, `scope_end`...) (counters, set to the supervisor's
//! absolute counts). Per quota (label `quota`, as it prints: `live temp_file ≤ 2`):
//! `custodian_quota_limit`, `custodian_quota_in_use`, `custodian_quota_waiting` (gauges),
//! `custodian_quota_waited_total`, `custodian_quota_refused_total` (counters). And
//! `custodian_draining`, `custodian_shutting_down` (gauges, 0 or 1).
//!
//! Nothing is recorded on the hot path: a registration only bumps custodian's own
//! atomics, and [`publish`] copies them into the facade (a few dozen handles) when
//! called, by [`spawn_publisher`] every interval or by a scrape handler just before it
//! renders. With several supervisors in one process, the last one published wins.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
//! let sup = tokio_custodian::Supervisor::builder().start()?;
//! let publisher = tokio_custodian::metrics::spawn_publisher(&sup, std::time::Duration::from_secs(10));
//! // ... a scrape handler may also call `tokio_custodian::metrics::publish(&sup)` ...
//! sup.shutdown().await;
//! publisher.await.unwrap(); // ends with the supervisor
//! # Ok(()) }
//! ```

use std::time::Duration;

use crate::inner::Supervisor;

/// Copies `sup`'s counters, quota use and shutdown state into the facade's recorder
/// (a no-op without one).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
/// let sup = tokio_custodian::Supervisor::builder().start()?;
/// let _t = sup.temp_file().await?;
/// tokio_custodian::metrics::publish(&sup); // custodian_live{kind="temp_file"} 1
/// # sup.shutdown().await; Ok(()) }
/// ```
pub fn publish(sup: &Supervisor) {
    let stats = sup.stats();
    for (kind, k) in &stats.kinds {
        let kind = kind.as_str();
        ::metrics::gauge!("custodian_live", "kind" => kind).set(k.live as f64);
        ::metrics::gauge!("custodian_peak", "kind" => kind).set(k.peak as f64);
        ::metrics::gauge!("custodian_pending_cleanups", "kind" => kind).set(k.pending as f64);
        ::metrics::counter!("custodian_created_total", "kind" => kind).absolute(k.created);
        ::metrics::counter!("custodian_failed_total", "kind" => kind).absolute(k.failures);
        ::metrics::counter!("custodian_leaked_total", "kind" => kind).absolute(k.leaked());
        for (by, n) in &k.released {
            ::metrics::counter!("custodian_released_total", "kind" => kind, "by" => by.as_str())
                .absolute(*n);
        }
    }
    for q in &stats.quotas {
        let quota = q.quota.to_string();
        ::metrics::gauge!("custodian_quota_limit", "quota" => quota.clone())
            .set(q.quota.limit() as f64);
        ::metrics::gauge!("custodian_quota_in_use", "quota" => quota.clone()).set(q.in_use as f64);
        ::metrics::gauge!("custodian_quota_waiting", "quota" => quota.clone())
            .set(q.waiting as f64);
        ::metrics::counter!("custodian_quota_waited_total", "quota" => quota.clone())
            .absolute(q.waited);
        ::metrics::counter!("custodian_quota_refused_total", "quota" => quota).absolute(q.refused);
    }
    let inner = &sup.inner;
    ::metrics::gauge!("custodian_draining").set(f64::from(u8::from(inner.drain.is_draining())));
    ::metrics::gauge!("custodian_shutting_down").set(f64::from(u8::from(inner.is_shutting_down())));
}

/// Publishes `sup`'s stats every `every` (at least 1 ms) until it has shut down, once
/// more at the end. The task holds only a `Weak` to the supervisor.
///
/// # Panics
///
/// Outside a Tokio runtime.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
/// let sup = tokio_custodian::Supervisor::builder().start()?;
/// let _task = tokio_custodian::metrics::spawn_publisher(&sup, std::time::Duration::from_secs(5));
/// # sup.shutdown().await; Ok(()) }
/// ```
pub fn spawn_publisher(sup: &Supervisor, every: Duration) -> tokio::task::JoinHandle<()> {
    let weak = std::sync::Arc::downgrade(&sup.inner);
    let done = sup.inner.done.clone();
    let every = every.max(Duration::from_millis(1));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let last = tokio::select! {
                _ = tick.tick() => false,
                () = done.cancelled() => true,
            };
            match weak.upgrade() {
                Some(inner) => publish(&Supervisor { inner }),
                None => return,
            }
            if last {
                return;
            }
        }
    })
}
