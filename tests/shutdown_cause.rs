//! The shutdown report says what began it (a real SIGINT to this process, or a call), a
//! spawn refused at shutdown or during the drain names its program, and JSON durations
//! carry their unit in the key (`took_ms`, `age_ms`), old names still read back.

use std::time::Duration;

use tokio_custodian::{Error, ShutdownCause, ShutdownReport, Supervisor};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_that_began_the_shutdown_is_named_in_the_report() {
    let sup = Supervisor::builder().handle_signals(true).start().unwrap();
    let pid = rustix::process::getpid();
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    let report = tokio::time::timeout(Duration::from_secs(10), sup.wait_for_shutdown())
        .await
        .expect("SIGINT began a shutdown");
    assert_eq!(report.began_by, ShutdownCause::Signal("SIGINT".into()));
    assert!(report.to_string().contains("began by SIGINT"), "{report}");
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["began_by"], serde_json::json!({"signal": "SIGINT"}));
    // A later call joins the same run: the signal still began it.
    assert_eq!(sup.shutdown().await.began_by, report.began_by);
}

#[tokio::test]
async fn a_call_is_named_and_json_durations_say_their_unit() {
    let sup = Supervisor::builder().start().unwrap();
    let leaked = sup.temp_file().await.unwrap();
    std::mem::forget(leaked);
    let report = sup.shutdown().await;
    assert_eq!(report.began_by, ShutdownCause::Call);
    assert!(
        report.to_string().contains("began by a shutdown() call"),
        "{report}"
    );
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["began_by"], "call");
    assert!(
        json["took_ms"].is_f64() && json.get("took").is_none(),
        "{json}"
    );
    assert!(json["phases"][0]["took_ms"].is_f64(), "{json}");
    let alive = &json["alive_at_shutdown"][0];
    assert!(
        alive["age_ms"].is_f64() && alive.get("age").is_none(),
        "{alive}"
    );
    let leak = &json["leaks"][0];
    assert!(leak["age_ms"].is_f64(), "{leak}");
    // People read words, not field names.
    let text = report.to_string();
    assert!(text.contains("reclaimed by shutdown (shutdown)"), "{text}");
    // A report written before the rename reads back, as a call.
    let mut old = json.clone();
    let o = old.as_object_mut().unwrap();
    o.remove("began_by");
    let took = o.remove("took_ms").unwrap();
    o.insert("took".into(), took);
    let leak = o.get_mut("leaks").unwrap()[0].as_object_mut().unwrap();
    let age = leak.remove("age_ms").unwrap();
    leak.insert("age".into(), age);
    let back: ShutdownReport = serde_json::from_value(old).unwrap();
    assert_eq!(back.began_by, ShutdownCause::Call);
    assert_eq!(back.took, report.took);
    assert_eq!(back.leaks, report.leaks);
    // An absurd duration saturates instead of panicking.
    let mut huge = json;
    huge["took_ms"] = serde_json::json!(1e300);
    let back: ShutdownReport = serde_json::from_value(huge).unwrap();
    assert_eq!(back.took, Duration::MAX);
}

#[tokio::test]
async fn a_spawn_refused_at_shutdown_names_the_program() {
    let sup = Supervisor::builder().start().unwrap();
    sup.shutdown().await;
    let refusals = [
        sup.command("sox").arg("in.wav").spawn().unwrap_err(),
        sup.command("/usr/bin/ffmpeg").output().await.unwrap_err(),
        sup.command("gzip").status().await.unwrap_err(),
        sup.command("lame").spawn_when_room().await.unwrap_err(),
    ];
    for (e, program) in refusals
        .iter()
        .zip(["sox", "/usr/bin/ffmpeg", "gzip", "lame"])
    {
        assert_eq!(
            e.to_string(),
            format!("spawn `{program}`: the supervisor is shutting down")
        );
        assert!(e.is_cancellation());
        assert_eq!(e.path(), Some(std::path::Path::new(program)));
        assert_eq!(e.operation(), tokio_custodian::Operation::Spawn);
        // What a client sees names no path.
        assert_eq!(
            e.public().to_string(),
            "spawn: the service is shutting down; retry elsewhere"
        );
        assert!(
            matches!(e, Error::SpawnRefused { reason, .. } if matches!(**reason, Error::ShuttingDown { .. }))
        );
    }
}

#[tokio::test]
async fn a_spawn_refused_during_the_drain_names_the_program() {
    let sup = Supervisor::builder()
        .drain(Duration::from_secs(5))
        .start()
        .unwrap();
    // A running top-level scope keeps the drain going.
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let s = sup.clone();
    let running = tokio::spawn(async move {
        s.scope("request", async |_| {
            let _ = rx.await;
        })
        .await
    });
    tokio::task::yield_now().await;
    let s = sup.clone();
    let stop = tokio::spawn(async move { s.shutdown().await });
    tokio::time::timeout(Duration::from_secs(5), sup.draining())
        .await
        .unwrap();
    let e = sup.command("sox").spawn().unwrap_err();
    assert_eq!(
        e.to_string(),
        "spawn `sox`: the supervisor is draining and takes no new work"
    );
    assert!(
        matches!(&e, Error::SpawnRefused { reason, .. } if matches!(**reason, Error::Draining { .. }))
    );
    tx.send(()).unwrap();
    running.await.unwrap().unwrap();
    assert!(stop.await.unwrap().is_clean());
}
