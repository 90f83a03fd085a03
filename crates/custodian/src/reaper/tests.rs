use super::*;

#[test]
fn markers_are_read_with_neither_lock_held() {
    // A slow `/proc/PID/environ` read must not stall spawns or reports: the scan reads
    // the markers before it takes the gate and the state. Here both are held by this
    // thread while another reads: it must finish.
    let reaper = std::sync::Arc::new(Reaper::start(None).unwrap());
    let (seq, marker) = reaper.marker(Duration::from_secs(1));
    let mut child = std::process::Command::new("sleep")
        .arg("30")
        .env(crate::sys::marker::VAR, &marker)
        .spawn()
        .unwrap();
    let kid = procfs::stat(child.id()).unwrap();
    let gate = reaper.gate.write().unwrap();
    let state = reaper.lock();
    let (tx, rx) = std::sync::mpsc::channel();
    let r = reaper.clone();
    std::thread::spawn(move || {
        let _ = tx.send(r.read_markers(vec![kid]));
    });
    let read = rx.recv_timeout(Duration::from_secs(10));
    drop((state, gate));
    let _ = child.kill();
    let _ = child.wait();
    let mut read = read.expect("the read waited for a lock");
    let got = read.remove(&(kid.pid, kid.start)).unwrap().unwrap();
    assert_eq!(got, Some(seq));
}

#[test]
fn what_is_still_adopted_after_a_stop_is_named_by_pid() {
    use std::io::Read;
    let reaper = Reaper::start(None).unwrap();
    let (seq, marker) = reaper.marker(Duration::from_secs(1));
    // A stand-in for a managed child: it orphans a marked sleeper to us, then exits.
    let mut sh = std::process::Command::new("sh")
        .args(["-c", "sleep 1000 </dev/null >/dev/null & echo $!"])
        .env(crate::sys::marker::VAR, &marker)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = String::new();
    sh.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    sh.wait().unwrap();
    let pid: u32 = out.trim().parse().unwrap();
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while !reaper.lock().adopted.contains_key(&pid) {
        assert!(std::time::Instant::now() < until, "never adopted");
        reaper.scan().unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    // The final look of a stop that could not end it: named, with its reason (before:
    // "adopted processes did not exit after SIGKILL", nobody named).
    let err = reaper.survivors(Some(seq));
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("pid {pid}: still running after SIGKILL")),
        "{msg}"
    );
    reaper.stop(Some(seq), Duration::ZERO, None).unwrap();
    assert!(procfs::stat(pid).is_none(), "stopped and reaped");
}
