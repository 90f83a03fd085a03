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
