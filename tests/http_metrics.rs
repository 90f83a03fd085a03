//! The HTTP service example's `/metrics` (issue 20): the Prometheus exposition, scraped
//! from the running `http-service` bin, holds custodian's stats: live per kind (while an
//! upload is in flight, then after), created and released by path, quota use, and the
//! drain state.

mod http_load;

use std::collections::BTreeMap;
use std::time::Duration;

use http_load::{Outcome, eventually};
use tokio::io::AsyncWriteExt;

/// Every sample of an exposition: `name{labels}` -> value (comments skipped).
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}

async fn scrape(addr: std::net::SocketAddr) -> BTreeMap<String, f64> {
    let text = http_load::get(addr, "/metrics")
        .await
        .expect("GET /metrics answered 200");
    samples(&text)
}

fn value(m: &BTreeMap<String, f64>, key: &str) -> f64 {
    *m.get(key)
        .unwrap_or_else(|| panic!("{key} not in the exposition: {:#?}", m.keys()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_expose_live_created_released_quota_and_drain_state() {
    let tmp = custodian_suite::scratch_dir("http-metrics");
    let mut svc = http_load::start(&tmp);
    let addr = svc.addr;

    // Every kind has its series from the first scrape on; nothing is live yet.
    let m = scrape(addr).await;
    for kind in [
        "file",
        "temp_file",
        "temp_dir",
        "child",
        "audio_decoder",
        "lock",
    ] {
        assert_eq!(
            value(&m, &format!("custodian_live{{kind=\"{kind}\"}}")),
            0.0
        );
    }
    assert_eq!(value(&m, "custodian_draining"), 0.0);
    assert_eq!(value(&m, "custodian_shutting_down"), 0.0);

    // An upload in flight: its spool file is live and holds the open-files quota.
    let mut stalled = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = "POST /ingest HTTP/1.1\r\nhost: t\r\ncontent-length: 100000\r\n\r\n";
    stalled.write_all(head.as_bytes()).await.unwrap();
    stalled.write_all(&[0u8; 1000]).await.unwrap();
    let open_files = "custodian_quota_in_use{quota=\"open files ≤ 16\"}";
    let mut m = scrape(addr).await;
    // Up to 10 s: under load the upload's first bytes may take a while to be handled.
    for _ in 0..500 {
        if value(&m, open_files) == 1.0 && value(&m, "custodian_live{kind=\"temp_file\"}") == 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        m = scrape(addr).await;
    }
    assert_eq!(value(&m, "custodian_live{kind=\"temp_file\"}"), 1.0);
    assert_eq!(value(&m, open_files), 1.0);
    assert_eq!(
        value(&m, "custodian_quota_limit{quota=\"open files ≤ 16\"}"),
        16.0
    );
    assert_eq!(
        value(&m, "custodian_quota_waiting{quota=\"open files ≤ 16\"}"),
        0.0
    );
    drop(stalled);

    // Two good uploads and a malformed one, answered.
    let good = http_load::wav(4000);
    for body in [&good, &good, &http_load::malformed()] {
        let out = http_load::post(addr, "/ingest", body, None).await;
        assert!(matches!(out, Outcome::Status(200 | 422, _)), "{out:?}");
    }
    let settled = || async {
        let m = scrape(addr).await;
        (m.get("custodian_live{kind=\"temp_file\"}") == Some(&0.0)).then_some(m)
    };
    let mut m = None;
    for _ in 0..250 {
        m = settled().await;
        if m.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let m = m.expect("the cut-off upload's file was never released");
    // The stalled one, the two good ones and the malformed one each spooled a file.
    assert_eq!(
        value(&m, "custodian_created_total{kind=\"temp_file\"}"),
        4.0
    );
    let released: f64 = m
        .iter()
        .filter(|(k, _)| k.starts_with("custodian_released_total{kind=\"temp_file\","))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(released, 4.0, "every spool file released once");
    // The good ones closed theirs explicitly; each ran its tool as a managed child.
    let closed = value(
        &m,
        "custodian_released_total{kind=\"temp_file\",by=\"close\"}",
    );
    assert_eq!(closed, 2.0);
    assert_eq!(value(&m, "custodian_created_total{kind=\"child\"}"), 2.0);
    assert_eq!(
        value(&m, "custodian_created_total{kind=\"audio_decoder\"}"),
        3.0
    );
    assert_eq!(value(&m, "custodian_leaked_total{kind=\"temp_file\"}"), 0.0);
    assert_eq!(value(&m, open_files), 0.0);

    let pid = rustix::process::Pid::from_raw(svc.child.pid() as i32).expect("a pid");
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
    let status = tokio::task::block_in_place(|| svc.child.wait_exit(Duration::from_secs(15)));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    assert!(
        eventually(Duration::from_secs(5), || custodian_suite::entries(&tmp)
            .is_empty()),
        "left: {:?}",
        custodian_suite::entries(&tmp)
    );
    let _ = std::fs::remove_dir(&tmp);
}

/// The drain as the exposition shows it: `custodian_draining 1` while a top-level scope
/// finishes during the drain, `custodian_shutting_down 1` once shutdown has run (the
/// service's own router stops answering when its drain begins, so this reads the
/// exporter's rendering in-process, with the same recorder the example installs).
#[tokio::test]
async fn the_exposition_says_draining_then_shut_down() {
    let prom = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = prom.handle();
    let render = |sup: &tokio_custodian::Supervisor| {
        metrics::with_local_recorder(&prom, || tokio_custodian::metrics::publish(sup));
        samples(&handle.render())
    };
    let sup = tokio_custodian::Supervisor::builder()
        .drain(Duration::from_secs(10))
        .start()
        .unwrap();
    let (go, wait) = tokio::sync::oneshot::channel::<()>();
    let s = sup.clone();
    let request = tokio::spawn(async move {
        s.scope("request", async |scope| {
            let _spool = scope.temp_file().await.unwrap();
            let _ = wait.await;
        })
        .await
    });
    let m = render(&sup);
    assert_eq!(value(&m, "custodian_draining"), 0.0);
    // (Polled on the runtime: the request runs on this thread too.)
    for _ in 0..500 {
        if sup.stats().live() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let s = sup.clone();
    let shutdown = tokio::spawn(async move { s.shutdown().await });
    for _ in 0..500 {
        if sup.is_draining() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let m = render(&sup);
    assert_eq!(value(&m, "custodian_draining"), 1.0);
    assert_eq!(value(&m, "custodian_live{kind=\"temp_file\"}"), 1.0);
    go.send(()).unwrap();
    request.await.unwrap().unwrap();
    let report = shutdown.await.unwrap();
    assert!(report.is_clean(), "{report}");
    let m = render(&sup);
    assert_eq!(value(&m, "custodian_shutting_down"), 1.0);
    assert_eq!(value(&m, "custodian_live{kind=\"temp_file\"}"), 0.0);
    assert_eq!(
        value(
            &m,
            "custodian_released_total{kind=\"temp_file\",by=\"drop\"}"
        ),
        1.0
    );
}
