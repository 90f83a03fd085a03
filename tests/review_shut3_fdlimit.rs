//! Review of the parallel shutdown (issue 22): at the fd limit, every fd slot taken, a
//! shutdown that splits 600 leftover temp files over the blocking pool still removes
//! every one of them and the root, with nothing reported failed: the chunks' threads
//! need no fd, and each release only closes one.

use custodian_suite::{Rt, entries, open_fds, scenario};
use tokio_custodian::{ReleasePath, Supervisor};

const FILES: usize = 600;
const CHILD: &str = "CUSTODIAN_SUITE_RV_SHUT3_FDLIMIT";

/// Runs [`fd_limit_child`] alone in a child process (it lowers its own fd limit).
#[test]
fn a_split_shutdown_at_the_fd_limit_releases_everything() {
    custodian_suite::run_isolated("fd_limit_child", CHILD, false);
}

/// The body of [`a_split_shutdown_at_the_fd_limit_releases_everything`]; does nothing
/// unless run as its child.
#[test]
#[ignore = "run by a_split_shutdown_at_the_fd_limit_releases_everything"]
fn fd_limit_child() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    if !custodian_suite::is_isolated(CHILD, "fd_limit_child") {
        return;
    }
    scenario(Rt::Multi(2), "rv-shut3-fdlimit", async |base| {
        let sup = Supervisor::builder().temp_base(&base).start().unwrap();
        sup.reaped_at_start().await;
        let root = sup.temp_root().to_path_buf();
        let mut files = Vec::new();
        for _ in 0..FILES {
            files.push(sup.temp_file().await.unwrap());
        }
        let old = getrlimit(Resource::Nofile);
        let mut low = old;
        low.current = Some(open_fds() as u64 + 16);
        setrlimit(Resource::Nofile, low).unwrap();
        // Fill every free slot below the limit.
        let mut fillers = Vec::new();
        while let Ok(fd) = rustix::fs::open(
            "/dev/null",
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        ) {
            fillers.push(fd);
        }
        assert!(!fillers.is_empty());
        let report = sup.shutdown().await;
        drop(fillers);
        setrlimit(Resource::Nofile, old).unwrap();
        assert!(report.failures.is_empty(), "{:?}", report.failures);
        assert_eq!(report.alive_at_shutdown.len(), FILES);
        assert_eq!(
            report.released_by_path()[&ReleasePath::Shutdown],
            FILES as u64
        );
        assert!(report.temp_root_error.is_none(), "{report}");
        assert!(files.iter().all(|f| !f.path().exists()));
        assert!(!root.exists() && entries(&base).is_empty());
        drop(files);
    });
}
