//! Inputs that are not what their header or their name promise: a WAV cut short (its
//! header declares more frames than its data chunk holds), and paths that are not regular
//! files (a FIFO, a socket, a device), which must be refused at once, never waited on.

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::Dir;
use tokio_custodian::{ResourceKind, Supervisor};
use tokio_custodian_audio::{AudioDecoder, Error};

/// A 16-bit mono WAV of `frames` frames at 16 kHz.
fn wav(frames: u32) -> Vec<u8> {
    let data = frames * 2;
    let mut b = b"RIFF".to_vec();
    b.extend((36 + data).to_le_bytes());
    b.extend(b"WAVEfmt ");
    b.extend(16u32.to_le_bytes());
    for v in [1u16, 1] {
        b.extend(v.to_le_bytes());
    }
    b.extend(16_000u32.to_le_bytes());
    b.extend(32_000u32.to_le_bytes());
    for v in [2u16, 16] {
        b.extend(v.to_le_bytes());
    }
    b.extend(b"data");
    b.extend(data.to_le_bytes());
    b.extend((0..frames).flat_map(|i| ((i % 1000) as i16).to_le_bytes()));
    b
}

#[tokio::test]
async fn a_wav_cut_short_says_it_is_truncated_and_how_much_is_missing() {
    let dir = Dir::new("truncated");
    let mut bytes = wav(48_000);
    bytes.truncate(44 + 2 * 14_978);
    let cut = dir.file("cut.wav", &bytes);
    let whole = dir.file("whole.wav", &wav(14_978));
    // A streamed WAV (length fields u32::MAX) declares nothing: not truncated.
    let mut streamed = wav(1_000);
    streamed[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
    let streamed = dir.file("streamed.wav", &streamed);
    let sup = Supervisor::builder().start().unwrap();

    let mut dec = AudioDecoder::open(&sup.root(), &cut).await.unwrap();
    let info = dec.info().clone();
    assert_eq!(info.declared_frames, Some(48_000));
    assert_eq!(info.total_frames, Some(14_978));
    assert!(info.is_truncated());
    assert_eq!(info.missing_frames(), 48_000 - 14_978);
    // What is there still decodes.
    assert_eq!(dec.read_all::<i16>().await.unwrap().len(), 14_978);
    dec.close().await.unwrap();

    let dec = AudioDecoder::open(&sup.root(), &whole).await.unwrap();
    assert_eq!(dec.info().declared_frames, Some(14_978));
    assert!(!dec.info().is_truncated());
    drop(dec);
    let dec = AudioDecoder::open(&sup.root(), &streamed).await.unwrap();
    assert_eq!(dec.info().declared_frames, None);
    assert_eq!(dec.info().total_frames, Some(1_000));
    assert!(!dec.info().is_truncated());
    drop(dec);
    assert!(sup.shutdown().await.is_clean());
}

fn mkfifo(path: &std::path::Path) {
    let st = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(st.success());
}

/// Frees a reader stuck in `open(2)` of `fifo` (the old behaviour), so that a failing
/// test ends instead of hanging: a writer's open completes the reader's.
fn unblock(fifo: &std::path::Path) {
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(0o4000) // O_NONBLOCK: fails at once (ENXIO) if nobody waits
        .open(fifo);
}

/// `AudioDecoder::open` of a FIFO returns a typed error at once, and the runtime that
/// ran it drops at once: no blocking-pool thread is left waiting for a writer.
#[test]
fn a_fifo_is_refused_at_once_and_the_runtime_drops_without_waiting() {
    let dir = Dir::new("fifo");
    let fifo = dir.0.join("speech.wav");
    mkfifo(&fifo);
    let (tx, rx) = mpsc::channel();
    let p = fifo.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let t0 = Instant::now();
        let (r, clean) = rt.block_on(async {
            let sup = Supervisor::builder().start().unwrap();
            let r =
                tokio::time::timeout(Duration::from_secs(5), AudioDecoder::open(&sup.root(), &p))
                    .await;
            let live = sup.stats().kind(ResourceKind::AudioDecoder).live;
            (
                r.map(|r| r.map(drop)),
                live == 0 && sup.shutdown().await.is_clean(),
            )
        });
        let opened = t0.elapsed();
        drop(rt);
        tx.send((r, clean, opened, t0.elapsed())).unwrap();
    });
    let got = rx.recv_timeout(Duration::from_secs(10));
    if got.is_err() {
        unblock(&fifo);
    }
    let (r, clean, opened, dropped) = got.expect("the runtime's drop hung on the FIFO");
    let err = r.expect("open of a FIFO waited for a writer").unwrap_err();
    assert!(
        matches!(err, Error::NotAFile { what: "a FIFO", .. }),
        "{err:?}"
    );
    assert_eq!(err.path(), Some(fifo.as_path()));
    assert_eq!(err.io_kind(), Some(std::io::ErrorKind::InvalidInput));
    assert!(err.to_string().contains("a FIFO"), "{err}");
    assert!(clean, "the refused decoder was not released");
    assert!(opened < Duration::from_secs(1), "open took {opened:?}");
    assert!(
        dropped < Duration::from_secs(2),
        "runtime drop took {dropped:?}"
    );
    // Folded into custodian's error, the kind and the path stay.
    let e = tokio_custodian::Error::from(err);
    assert_eq!(e.io_kind(), Some(std::io::ErrorKind::InvalidInput));
    assert_eq!(e.path(), Some(fifo.as_path()));
}

#[tokio::test]
async fn sockets_devices_and_directories_are_refused_with_their_type() {
    let dir = Dir::new("special");
    let sock = dir.0.join("sock.wav");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    // A symlink to a FIFO is followed by the check, and refused as a FIFO.
    let fifo = dir.0.join("fifo");
    mkfifo(&fifo);
    let link = dir.0.join("link.wav");
    std::os::unix::fs::symlink(&fifo, &link).unwrap();
    let sup = Supervisor::builder().start().unwrap();
    for (path, want, kind) in [
        (sock.as_path(), "a socket", std::io::ErrorKind::InvalidInput),
        (
            "/dev/null".as_ref(),
            "a character device",
            std::io::ErrorKind::InvalidInput,
        ),
        (
            dir.0.as_path(),
            "a directory",
            std::io::ErrorKind::IsADirectory,
        ),
        (link.as_path(), "a FIFO", std::io::ErrorKind::InvalidInput),
    ] {
        let t0 = Instant::now();
        let r = tokio::time::timeout(
            Duration::from_secs(5),
            AudioDecoder::open(&sup.root(), path),
        )
        .await;
        if r.is_err() {
            unblock(&fifo);
        }
        let err = r.expect("open waited").unwrap_err();
        assert!(t0.elapsed() < Duration::from_secs(1));
        match &err {
            Error::NotAFile { what, path: p, .. } => {
                assert_eq!((*what, p.as_path()), (want, path));
            }
            e => panic!("{}: {e:?}", path.display()),
        }
        assert_eq!(err.io_kind(), Some(kind));
    }
    assert!(sup.shutdown().await.is_clean());
}
