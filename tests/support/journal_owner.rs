//! Test helper: an owner with a crash journal. `journal-owner STATE_DIR TEMP_BASE SECS N`
//! starts a supervisor journalling in STATE_DIR with its temp root in TEMP_BASE, then N
//! times creates a temp file, a temp dir with a file inside, and a child
//! `sh -c 'sleep SECS & wait'` (a grandchild in the child's group). It prints
//! `root PATH`, `child PID` as it goes and `ready` at the end, then waits to be killed.

use std::io::Write;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, state, base, secs, n] = &args[..] else {
        panic!("usage: journal-owner STATE_DIR TEMP_BASE SECS N");
    };
    let n: usize = n.parse().expect("N");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let sup = tokio_custodian::Supervisor::builder()
            .state_dir(state)
            .temp_base(base)
            .reap_abandoned(false)
            .start()
            .expect("supervisor");
        let mut out = std::io::stdout();
        writeln!(out, "root {}", sup.temp_root().display()).expect("stdout");
        let mut held = Vec::new();
        for _ in 0..n {
            let file = sup.temp_file().await.expect("temp file");
            let dir = sup.temp_dir().await.expect("temp dir");
            std::fs::write(dir.path().join("inside"), b"x").expect("write");
            let child = sup
                .command("sh")
                .args(["-c", &format!("sleep {secs} & wait")])
                .spawn()
                .expect("spawn");
            writeln!(out, "child {}", child.id().expect("pid")).expect("stdout");
            held.push((file, dir, child));
        }
        writeln!(out, "ready").expect("stdout");
        out.flush().expect("stdout");
        std::future::pending::<()>().await;
        drop(held);
    });
}
