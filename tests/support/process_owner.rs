//! Test helper: a process that owns one managed `sleep 1000` child and waits to be
//! killed. Prints the child's pid, then `ready` once the thread pool that could have
//! forked it has retired its idle threads. `--no-pdeathsig` turns the parent-death
//! signal off (the control case).

use std::io::Write;
use std::time::Duration;

fn main() {
    let pdeathsig = !std::env::args().any(|a| a == "--no-pdeathsig");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_keep_alive(Duration::from_millis(10))
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let sup = tokio_custodian::Supervisor::builder()
            .start()
            .expect("supervisor");
        let s2 = sup.clone();
        // Spawned from a blocking-pool thread that retires 10 ms later: a child forked
        // by that thread with PR_SET_PDEATHSIG would be killed then.
        let child = tokio::task::spawn_blocking(move || {
            s2.command("sleep")
                .arg("1000")
                .kill_on_parent_death(pdeathsig)
                .spawn()
                .expect("spawn")
        })
        .await
        .expect("join");
        let mut out = std::io::stdout();
        writeln!(out, "{}", child.id().expect("pid")).expect("stdout");
        tokio::time::sleep(Duration::from_millis(300)).await;
        writeln!(out, "ready").expect("stdout");
        out.flush().expect("stdout");
        std::future::pending::<()>().await;
        drop(child);
    });
}
