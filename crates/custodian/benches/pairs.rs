//! Every managed/raw pair of issue 14 that the core crate can run, in one binary, for
//! the two measurements of `scripts/bench.sh`: interleaved time rounds (`time`) and one
//! side's operations alone under callgrind (`count`). See `harness/mod.rs` for the modes
//! and `benches/README.md` for the script.
//!
//! Run: `cargo bench -p tokio-custodian --bench pairs -- time 11 [PAIR...]`.
//! Temp files go to `$CUSTODIAN_BENCH_DIR`, else /dev/shm (tmpfs: custodian's cost, not
//! the disk's), else the temp dir.

#![allow(missing_docs)]

#[macro_use]
mod harness;

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use harness::{Batch, Pair, Unit};
use tokio_custodian::{Cleanup, Reclaim, ResourceKind, Supervisor};

const NAMES: &[&str] = &[
    "registration",
    "registration_2t",
    "scope",
    "file_open",
    "temp_file",
    "temp_dir",
    "spawn",
    "journal",
    "journal_cgroup",
    "sweep_1000",
    "leak_scan",
    "shutdown_10k",
    "children_200",
    "sigterm_grace",
];

fn base() -> PathBuf {
    if let Some(d) = std::env::var_os("CUSTODIAN_BENCH_DIR") {
        return d.into();
    }
    let shm = PathBuf::from("/dev/shm");
    if shm.is_dir() {
        shm
    } else {
        std::env::temp_dir()
    }
}

/// A fresh private directory under `base()` for a raw side.
fn raw_dir(tag: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let d = base().join(format!(
        "custodian-pairs-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

struct Nothing;

/// The registry's hasher (`IdHasher` in `registry/mod.rs`, private to the crate), copied
/// so that the raw registration side hashes its keys exactly as the registry does: one
/// multiplication of the `u64` id by the same odd constant. Keep the two in step.
#[derive(Default)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(self.0.rotate_left(8) ^ u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type IdHash = std::hash::BuildHasherDefault<IdHasher>;

impl Reclaim for Nothing {
    fn reclaim(self: Box<Self>) -> Cleanup {
        Cleanup::Done(Ok(()))
    }
}

fn pair(name: &'static str, batch: u64, unit: Unit, sides: Vec<(&'static str, Batch)>) -> Pair {
    Pair {
        name,
        batch,
        warm: batch / 4 + 1,
        sides,
        unit,
    }
}

/// A one-shot pair: no warm-up (the setup is per batch), one operation per batch.
fn one_shot(name: &'static str, sides: Vec<(&'static str, Batch)>) -> Pair {
    Pair {
        name,
        batch: 1,
        warm: 0,
        sides,
        unit: Unit::Ms,
    }
}

/// Starts a supervisor and waits for its start's background reap of dead supervisors'
/// roots (an age sweep on the blocking pool): left running, it finishes in one of a
/// side's two runs under callgrind and not in the other (150 instructions per operation
/// of noise in the scope pair).
fn start(rt: &tokio::runtime::Runtime, b: tokio_custodian::Builder) -> Supervisor {
    rt.block_on(async {
        let sup = b.start().unwrap();
        sup.reaped_at_start().await;
        sup
    })
}

fn build(rt: &tokio::runtime::Runtime, name: &str) -> Option<Pair> {
    let name: &'static str = NAMES.iter().find(|n| **n == name)?;
    let sup = || start(rt, Supervisor::builder().temp_base(base()));
    Some(match name {
        "registration" => {
            let root = sup().root();
            // The fair floor: the registry's own hasher (a multiplication, see
            // `IdHasher`). SipHash, `DashMap`'s default, is kept as a second line: it
            // costs more per operation and so flatters the ratio.
            let map = Arc::new(dashmap::DashMap::<u64, u64, IdHash>::default());
            let sip = Arc::new(dashmap::DashMap::<u64, u64>::new());
            let next = Arc::new(AtomicU64::new(0));
            pair(
                name,
                20_000,
                Unit::Ns,
                vec![
                    (
                        "managed",
                        per_op!(root, |r| drop(black_box(
                            r.register(ResourceKind::Lock, "bench", None, Nothing)
                                .unwrap()
                        ))),
                    ),
                    (
                        "dashmap",
                        per_op!((map, next.clone()), |s| {
                            let k = s.1.fetch_add(1, Ordering::Relaxed);
                            s.0.insert(k, k);
                            black_box(s.0.remove(&k));
                        }),
                    ),
                    (
                        "dashmap_siphash",
                        per_op!((sip, next), |s| {
                            let k = s.1.fetch_add(1, Ordering::Relaxed);
                            s.0.insert(k, k);
                            black_box(s.0.remove(&k));
                        }),
                    ),
                ],
            )
        }
        "registration_2t" => registration_2t(sup()),
        "scope" => {
            let s = sup();
            let token = tokio_util::sync::CancellationToken::new();
            pair(
                name,
                5_000,
                Unit::Ns,
                vec![
                    (
                        "managed",
                        per_op!(s, |s| black_box(
                            s.scope("bench", async |_s| black_box(1)).await.unwrap()
                        )),
                    ),
                    (
                        "child_token",
                        per_op!(token, |t| drop(black_box(t.child_token()))),
                    ),
                ],
            )
        }
        "file_open" => pair(
            name,
            500,
            Unit::Us,
            vec![
                (
                    "managed",
                    per_op!(sup(), |s| drop(black_box(
                        s.open("/dev/null").await.unwrap()
                    ))),
                ),
                (
                    "tokio",
                    per_op!((), |u| drop(black_box(
                        tokio::fs::File::open("/dev/null").await.unwrap()
                    ))),
                ),
            ],
        ),
        "temp_file" => {
            let (a, b) = (raw_dir("atf"), raw_dir("tf"));
            pair(
                name,
                200,
                Unit::Us,
                vec![
                    (
                        "managed",
                        per_op!(sup(), |s| drop(black_box(s.temp_file().await.unwrap()))),
                    ),
                    (
                        "async_tempfile",
                        per_op!(a, |d| drop(black_box(
                            async_tempfile::TempFile::new_in(d.clone()).await.unwrap()
                        ))),
                    ),
                    (
                        "tempfile_blocking",
                        per_op!(b, |d| {
                            let d = d.clone();
                            let f = tokio::task::spawn_blocking(move || {
                                tempfile::NamedTempFile::new_in(d)
                            })
                            .await
                            .unwrap()
                            .unwrap();
                            drop(black_box(f));
                        }),
                    ),
                ],
            )
        }
        "temp_dir" => {
            let d = raw_dir("atd");
            // A dir with 4 files, removal awaited, so both sides do the same work.
            pair(
                name,
                100,
                Unit::Us,
                vec![
                    (
                        "managed",
                        per_op!(sup(), |s| {
                            let t = s.temp_dir().await.unwrap();
                            for i in 0..4 {
                                std::fs::write(t.path().join(i.to_string()), b"x").unwrap();
                            }
                            t.close().await.unwrap();
                        }),
                    ),
                    (
                        "async_tempfile",
                        per_op!(d, |d| {
                            let t = async_tempfile::TempDir::new_in(d.clone()).await.unwrap();
                            for i in 0..4 {
                                std::fs::write(t.dir_path().join(i.to_string()), b"x").unwrap();
                            }
                            t.drop_async().await;
                        }),
                    ),
                ],
            )
        }
        "spawn" => pair(
            name,
            20,
            Unit::Us,
            vec![
                (
                    "managed",
                    per_op!(sup(), |s| {
                        let mut c = s.command("true").spawn().unwrap();
                        assert!(c.wait().await.unwrap().success());
                    }),
                ),
                (
                    "tokio_group",
                    per_op!((), |u| {
                        let mut c = tokio::process::Command::new("true")
                            .process_group(0)
                            .spawn()
                            .unwrap();
                        assert!(c.wait().await.unwrap().success());
                    }),
                ),
            ],
        ),
        "journal" => {
            let state = raw_dir("state");
            // A state dir must be private to its user.
            let private = std::os::unix::fs::PermissionsExt::from_mode(0o700);
            std::fs::set_permissions(&state, private).unwrap();
            let on = start(
                rt,
                Supervisor::builder().temp_base(base()).state_dir(&state),
            );
            let run = |s: Supervisor| {
                per_op!(s, |s| {
                    let mut c = s.command("true").spawn().unwrap();
                    assert!(c.wait().await.unwrap().success());
                })
            };
            pair(
                name,
                20,
                Unit::Us,
                vec![("journal_on", run(on)), ("journal_off", run(sup()))],
            )
        }
        // The same with the cgroup tier on both sides (required: the pair fails to start
        // without a writable cgroup2), whose children carry no owner marker.
        "journal_cgroup" => {
            let state = raw_dir("state");
            let private = std::os::unix::fs::PermissionsExt::from_mode(0o700);
            std::fs::set_permissions(&state, private).unwrap();
            let tier = || {
                Supervisor::builder()
                    .temp_base(base())
                    .containment(tokio_custodian::Containment::Required)
            };
            let on = start(rt, tier().state_dir(&state));
            let run = |s: Supervisor| {
                per_op!(s, |s| {
                    let mut c = s.command("true").spawn().unwrap();
                    assert!(c.wait().await.unwrap().success());
                })
            };
            pair(
                name,
                20,
                Unit::Us,
                vec![
                    ("journal_on", run(on)),
                    ("journal_off", run(start(rt, tier()))),
                ],
            )
        }
        "sweep_1000" => crate::heavy::sweep_1000(),
        "leak_scan" => crate::heavy::leak_scan(rt, name),
        "shutdown_10k" => crate::heavy::shutdown_10k(name),
        "children_200" => crate::heavy::children_200(name),
        "sigterm_grace" => crate::heavy::sigterm_grace(sup()),
        _ => return None,
    })
}

/// Registration on two threads at once into one scope, against `DashMap` on two threads
/// and against the managed side on one thread. A side's time is per operation of the
/// pair of threads (elapsed / 2n): `managed_2t / managed_1t` ≤ 0.56 is a ≥ 1.8× scaling.
fn registration_2t(sup: Supervisor) -> Pair {
    let root = sup.root();
    let map = Arc::new(dashmap::DashMap::<u64, u64, IdHash>::default());
    let next = Arc::new(AtomicU64::new(0));
    fn two<S: Clone + Send + 'static>(s: S, op: fn(&S)) -> Batch {
        Box::new(move |n| {
            let s = s.clone();
            Box::pin(async move {
                let t = Instant::now();
                std::thread::scope(|sc| {
                    for _ in 0..2 {
                        let s = s.clone();
                        sc.spawn(move || (0..n).for_each(|_| op(&s)));
                    }
                });
                t.elapsed() / 2
            })
        })
    }
    let reg = |r: &tokio_custodian::Scope| {
        drop(black_box(
            r.register(ResourceKind::Lock, "bench", None, Nothing)
                .unwrap(),
        ))
    };
    type Map = (Arc<dashmap::DashMap<u64, u64, IdHash>>, Arc<AtomicU64>);
    let ins = |s: &Map| {
        let k = s.1.fetch_add(1, Ordering::Relaxed);
        s.0.insert(k, k);
        black_box(s.0.remove(&k));
    };
    Pair {
        name: "registration_2t",
        batch: 20_000,
        warm: 1_000,
        sides: vec![
            ("managed_2t", two(root.clone(), reg)),
            ("dashmap_2t", two((map, next), ins)),
            ("managed_1t", per_op!(root, |r| reg(&r))),
        ],
        unit: Unit::Ns,
    }
}

#[path = "harness/heavy.rs"]
mod heavy;

fn main() {
    let rt = harness::runtime();
    harness::main(&rt, NAMES, |name| build(&rt, name));
}
