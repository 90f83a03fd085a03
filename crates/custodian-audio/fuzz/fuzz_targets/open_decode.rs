//! Fuzzes open + decode + seek of arbitrary bytes through the managed decoder.
//!
//! Invariants checked on every input: no panic escapes (libFuzzer reports one as a
//! crash), no allocation above `-malloc_limit_mb`, the decoder is released (supervisor
//! stats) and its file is closed (no fd points at the input file).
//!
//! Panics *caught* inside the decoding library are expected and silenced, unless
//! `CUSTODIAN_FUZZ_CAUGHT_PANICS=1` is set: then they abort too, to collect inputs that
//! exercise the catch path as regression tests.

#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use tokio_custodian::{ResourceKind, Supervisor};
use tokio_custodian_audio::{AudioDecoder, Limits};

struct Env {
    rt: tokio::runtime::Runtime,
    sup: Supervisor,
    path: PathBuf,
}

fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        if std::env::var_os("CUSTODIAN_FUZZ_CAUGHT_PANICS").is_none() {
            std::panic::set_hook(Box::new(|_| {}));
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let sup = rt.block_on(async { Supervisor::builder().start().unwrap() });
        let path =
            std::env::temp_dir().join(format!("custodian-audio-fuzz-{}.wav", std::process::id()));
        Env { rt, sup, path }
    })
}

fn fds_at(path: &std::path::Path) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| std::fs::read_link(e.path()).is_ok_and(|t| t == path))
                .count()
        })
        .unwrap_or(0)
}

fuzz_target!(|data: &[u8]| {
    let env = env();
    std::fs::write(&env.path, data).unwrap();
    // Small limits so that a declared size cannot make a run slow.
    let limits = Limits::default()
        .max_frames(1 << 22)
        .max_duration(Duration::from_secs(600));
    let root = env.sup.root();
    env.rt.block_on(async {
        if let Ok(mut dec) = AudioDecoder::open_with(&root, &env.path, limits).await {
            let _ = dec.read_i16(1000).await;
            let _ = dec.read_f32(1).await;
            let _ = dec.seek(Duration::from_millis(5)).await;
            let _ = dec.read_all::<i16>().await;
        }
    });
    let s = env.sup.stats().kind(ResourceKind::AudioDecoder);
    assert_eq!(s.live, 0, "decoder not released");
    assert_eq!(s.created, s.released_total());
    assert_eq!(fds_at(&env.path), 0, "file left open");
});
