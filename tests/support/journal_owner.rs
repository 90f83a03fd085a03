//! Test helper: an owner with a crash journal. `journal-owner STATE_DIR TEMP_BASE SECS N`
//! starts a supervisor journalling in STATE_DIR with its temp root in TEMP_BASE, then N
//! times creates a temp file, a temp dir with a file inside, and a child
//! `sh -c 'sleep SECS & wait'` (a grandchild in the child's group). It prints
//! `root PATH`, `child PID` as it goes and `ready` at the end, then waits to be killed.
//!
//! With a fifth argument FILES it also writes FILES files straight into its root, and
//! after `ready` drops every guard and its last handle
//! *without* `shutdown()`, prints `dropped`, and waits to be killed (while the root's
//! removal runs in the background).
//!
//! With `CUSTODIAN_TEST_CGROUP=1` it runs in the cgroup containment tier (required), and
//! each child also starts an escapee that leaves its group and clears its environment:
//! `sh -c 'setsid env -i sleep SECS & sleep SECS & wait'` (only the cgroup holds it).
//! With `CUSTODIAN_TEST_TRAP=DIR` as well, that escapee is a shell that honours SIGTERM:
//! it writes `DIR/ready-<its pid>` once its trap is set, and `DIR/termed-<its pid>` when
//! SIGTERM comes, then exits.

use std::io::Write;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (state, base, secs, n, files) = match &args[..] {
        [_, state, base, secs, n] => (state, base, secs, n, None),
        [_, state, base, secs, n, files] => (state, base, secs, n, Some(files)),
        _ => panic!("usage: journal-owner STATE_DIR TEMP_BASE SECS N [FILES]"),
    };
    let n: usize = n.parse().expect("N");
    let cgroup = std::env::var_os("CUSTODIAN_TEST_CGROUP").is_some();
    let trap = std::env::var("CUSTODIAN_TEST_TRAP").ok();
    let script = match (cgroup, trap) {
        (true, Some(dir)) => format!(
            "setsid env -i sh -c 'trap \"echo termed > {dir}/termed-$$; exit 0\" TERM; \
             : > {dir}/ready-$$; while :; do sleep 1; done' & sleep {secs} & wait"
        ),
        (true, None) => format!("setsid env -i sleep {secs} & sleep {secs} & wait"),
        (false, _) => format!("sleep {secs} & wait"),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let sup = tokio_custodian::Supervisor::builder()
            .state_dir(state)
            .temp_base(base)
            .reap_abandoned(false)
            // Off where a test recovers many dead owners in one call afterwards.
            .sweep_at_start(std::env::var_os("CUSTODIAN_TEST_NO_START_SWEEP").is_none())
            .containment(match cgroup {
                true => tokio_custodian::Containment::Required,
                false => tokio_custodian::Containment::Never,
            })
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
                .args(["-c", &script])
                .spawn()
                .expect("spawn");
            writeln!(out, "child {}", child.id().expect("pid")).expect("stdout");
            held.push((file, dir, child));
        }
        if let Some(files) = files {
            let files: usize = files.parse().expect("FILES");
            for i in 0..files {
                std::fs::write(sup.temp_root().join(format!("f{i}")), b"x").expect("write");
            }
        }
        writeln!(out, "ready").expect("stdout");
        out.flush().expect("stdout");
        if files.is_some() {
            drop(held);
            drop(sup);
            writeln!(out, "dropped").expect("stdout");
            out.flush().expect("stdout");
            loop {
                std::future::pending::<()>().await;
            }
        }
        std::future::pending::<()>().await;
        drop(held);
    });
}
