//! Replays the fuzz seeds and every saved fuzz finding (`fuzz/regressions/`) on stable:
//! each must open and decode or fail with a typed error, release the decoder and close
//! its file.

mod common;

use std::path::Path;
use std::time::Duration;

use tokio_custodian::{ResourceKind, Supervisor};
use tokio_custodian_audio::{AudioDecoder, Error};

fn inputs() -> Vec<std::path::PathBuf> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut v: Vec<_> = ["seeds", "regressions"]
        .iter()
        .filter_map(|d| std::fs::read_dir(fuzz.join(d)).ok())
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.file_name().is_some_and(|n| n != ".gitkeep"))
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzz_inputs_decode_or_fail_cleanly() {
    let inputs = inputs();
    assert!(inputs.len() >= 8, "the seeds are missing");
    let sup = Supervisor::builder().start().unwrap();
    let root = sup.root();
    for path in &inputs {
        let r = async {
            let mut dec = AudioDecoder::open(&root, path).await?;
            dec.read_i16(1000).await?;
            dec.seek(Duration::from_millis(5)).await?;
            let rest: Vec<f32> = dec.read_all().await?;
            Ok::<_, Error>(rest.len())
        }
        .await;
        if let Err(e) = &r {
            assert_eq!(e.path(), Some(path.as_path()));
            assert!(!matches!(e, Error::Custodian(_)), "{e}");
        }
        // The decoder is dropped above; a read-ahead still on the blocking pool closes
        // the file when it finishes (drop never waits for it).
        assert_eq!(common::settle_fds(path).await, 0, "{}", path.display());
    }
    let s = sup.stats().kind(ResourceKind::AudioDecoder);
    assert_eq!(
        (s.created, s.released_total(), s.live),
        (inputs.len() as u64, inputs.len() as u64, 0)
    );
    assert!(sup.shutdown().await.is_clean());
}

/// Found by the fuzzer: junk, then a WAV header with a zero sample rate. symphonia's probe
/// skips the junk and panics on the rate (`TimeBase cannot have 0 numerator or
/// denominator`); the header walk now checks a WAV found behind junk too, so this is a
/// plain `Malformed` instead of a caught panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wav_behind_junk_gets_the_header_checks() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    let sup = Supervisor::builder().start().unwrap();
    for name in [
        "riff-behind-junk-zero-rate-1.wav",
        "riff-behind-junk-zero-rate-2.wav",
    ] {
        let path = dir.join(name);
        let err = AudioDecoder::open(&sup.root(), &path).await.unwrap_err();
        assert!(
            matches!(&err, Error::Malformed { message, .. } if message == "zero sample rate"),
            "{name}: {err}"
        );
    }
    let s = sup.stats().kind(ResourceKind::AudioDecoder);
    assert_eq!((s.created, s.released_total(), s.live), (2, 2, 0));
    sup.shutdown().await;
}
