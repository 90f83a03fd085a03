//! The inspect server under hostile clients (issue 20): 1,000 clients that connect and
//! never read leave no fd behind and hold at most the server's bound of fds; the
//! program's registrations go on meanwhile. With answers too large for the socket
//! buffer, stalled readers are cut off by the write timeout. And the cost of the server
//! when on and idle: registration with it on vs off, interleaved, medians.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use custodian_suite::open_fds;
use custodian_suite::reclaims::Nothing;
use tokio_custodian::{Registration, ResourceKind, Supervisor};

/// Fd counts are process-wide: these tests run one at a time, each with its runtime
/// built under the lock (the leak check's exact mode), and each must leave nothing.
fn exact(body: impl AsyncFnOnce()) {
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.worker_threads(2);
    let ((), report) = tokio_custodian::testing::LeakCheck::builder()
        .no_temp_dir()
        .run(rt, body);
    assert!(report.is_clean(), "{report}");
}

const CLIENT: &str = r#"
import resource, socket, sys
path, n = sys.argv[1], int(sys.argv[2])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, n + 64)), hard))
socks = []
for i in range(n):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    s.connect(path)
    socks.append(s)
print("connected", flush=True)
sys.stdin.read()  # stall, reading nothing, until the test closes our stdin
"#;

/// `n` clients of another process that connect to `socket` and never read.
fn stallers(socket: &Path, n: usize) -> Child {
    let mut c = Command::new("python3")
        .args(["-c", CLIENT, socket.to_str().unwrap(), &n.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    BufReader::new(c.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "connected");
    // The only fd of ours left for them: the pipe to their stdin.
    drop(c.stdout.take());
    c
}

fn register_batch(sup: &Supervisor, n: usize) -> Duration {
    let root = sup.root();
    let t = Instant::now();
    for _ in 0..n {
        let r: Registration = root
            .register(ResourceKind::File, "x", None, Nothing)
            .unwrap();
        drop(r);
    }
    t.elapsed() / n as u32
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

async fn settle_to(base: usize) -> usize {
    let mut n = open_fds();
    for _ in 0..500 {
        if n <= base {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        n = open_fds();
    }
    n
}

#[test]
fn a_thousand_stalled_clients_leave_no_fd_and_do_not_stall_registrations() {
    exact(async || {
        let sup = Supervisor::builder().inspect(true).start().unwrap();
        let socket = sup.inspect_socket().unwrap().to_path_buf();
        sup.reaped_at_start().await;
        let base = open_fds();
        let before = median((0..15).map(|_| register_batch(&sup, 2000)).collect());

        let mut clients = stallers(&socket, 1000);
        // Registrations while the clients are connected and stalled.
        let during = median((0..15).map(|_| register_batch(&sup, 2000)).collect());
        let peak = open_fds();
        assert!(
            peak <= base + 8 + 2,
            "{peak} fds with 1,000 stalled clients (base {base})"
        );
        drop(clients.stdin.take());
        clients.wait().unwrap();
        let after = settle_to(base).await;
        assert_eq!(after, base, "fds left behind");
        println!(
            "registration median: {before:?} before, {during:?} with 1,000 stalled clients; fds {base} -> peak {peak} -> {after}"
        );
        assert!(
            during < before * 5 + Duration::from_micros(5),
            "{during:?} vs {before:?}"
        );
        // The server still answers.
        let s = socket.clone();
        let seen = tokio::task::spawn_blocking(move || tokio_custodian::inspect(&s))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(seen.live_total, 0);
        sup.shutdown().await;
    });
}

#[test]
fn stalled_readers_of_large_answers_are_cut_off() {
    exact(async || {
        let sup = Supervisor::builder().inspect(true).start().unwrap();
        let socket = sup.inspect_socket().unwrap().to_path_buf();
        // About 2 MB of JSON: far more than a socket buffer, so writes to a client that
        // never reads block.
        let label = "x".repeat(400);
        let held: Vec<Registration> = (0..4000)
            .map(|_| {
                sup.root()
                    .register(ResourceKind::File, label.clone(), None, Nothing)
                    .unwrap()
            })
            .collect();
        sup.reaped_at_start().await;
        let base = open_fds();
        let t = Instant::now();
        let mut clients = stallers(&socket, 40);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let peak = open_fds();
        // One more of ours while they live: the pipe to their stdin.
        let base = base + 1;
        assert!(
            peak <= base + 8 + 2,
            "{peak} fds with 40 stalled clients (base {base})"
        );
        assert!(
            peak > base,
            "the server was not blocked writing to stalled clients"
        );
        // The write timeout (2 s) drops the 8 served, while the clients still stall.
        let after = settle_to(base).await;
        assert!(
            after == base,
            "stalled connections kept after {:?}",
            t.elapsed()
        );
        println!(
            "large answers: fds {base} -> peak {peak} -> {after} after {:?}",
            t.elapsed()
        );
        drop(clients.stdin.take());
        clients.wait().unwrap();
        drop(held);
        sup.shutdown().await;
    });
}

/// Registration cost with the server on (idle) vs off: two supervisors, rounds
/// interleaved, the median of each. Nothing of the server is on the registration path.
#[test]
fn registration_cost_on_vs_off() {
    exact(async || {
        let on = Supervisor::builder().inspect(true).start().unwrap();
        let off = Supervisor::builder().start().unwrap();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for round in 0..31 {
            if round % 2 == 0 {
                a.push(register_batch(&on, 5000));
                b.push(register_batch(&off, 5000));
            } else {
                b.push(register_batch(&off, 5000));
                a.push(register_batch(&on, 5000));
            }
        }
        let (a, b) = (median(a), median(b));
        println!("register+release median per op: inspect on {a:?}, off {b:?}");
        let _ = std::io::stdout().flush();
        assert!(
            a < b * 2 + Duration::from_micros(1),
            "on {a:?} vs off {b:?}"
        );
        on.shutdown().await;
        off.shutdown().await;
    });
}
