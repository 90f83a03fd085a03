//! Every way a decode can be cut short releases the decoder and closes its file.

mod common;

use std::future::Future;
use std::task::Poll;
use std::time::Duration;

use common::{Dir, fds_under, long_wav, settle_fds};
use tokio_custodian::{Error as CoreError, ReleasePath, ResourceKind, Supervisor};
use tokio_custodian_audio::{AudioDecoder, Error};

fn decoders(sup: &Supervisor) -> tokio_custodian::KindStats {
    sup.stats().kind(ResourceKind::AudioDecoder)
}

/// Reads forever (rewinding at the end), ignoring cancellation.
async fn decode_forever(dec: &mut AudioDecoder) -> Result<(), Error> {
    loop {
        if dec.read_i16(4_800).await?.is_empty() {
            dec.seek(Duration::ZERO).await?;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_scope_releases_a_decoder_mid_decode() {
    let dir = Dir::new("cancel-scope");
    let path = long_wav(&dir, "a.wav", 20);
    let sup = Supervisor::builder().start().unwrap();
    let root = sup.root();
    let r = root
        .scope_with_grace("stubborn", Duration::from_millis(50), async |s| {
            let mut dec = AudioDecoder::open(&s, &path).await.unwrap();
            dec.read_i16(1_000).await.unwrap();
            assert_eq!(fds_under(&dir.0), 1);
            s.cancel();
            decode_forever(&mut dec).await
        })
        .await;
    assert!(matches!(r, Err(CoreError::Cancelled { .. })), "{r:?}");
    let st = decoders(&sup);
    assert_eq!(
        (st.created, st.live, st.released(ReleasePath::Cancelled)),
        (1, 0, 1)
    );
    assert_eq!(settle_fds(&dir.0).await, 0);
    assert!(sup.shutdown().await.is_clean());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_future_releases_a_decoder_mid_decode() {
    let dir = Dir::new("cancel-drop");
    let path = long_wav(&dir, "a.wav", 20);
    let sup = Supervisor::builder().start().unwrap();
    let root = sup.root();
    for ms in [0u64, 1, 5, 20] {
        let work = async {
            let mut dec = AudioDecoder::open(&root, &path).await.unwrap();
            decode_forever(&mut dec).await
        };
        assert!(
            tokio::time::timeout(Duration::from_millis(ms), work)
                .await
                .is_err()
        );
        assert_eq!(settle_fds(&dir.0).await, 0, "after {ms} ms");
    }
    let st = decoders(&sup);
    assert_eq!((st.live, st.created), (0, st.released_total()));
    assert!(sup.shutdown().await.is_clean());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborted_task_releases_its_decoder() {
    let dir = Dir::new("cancel-abort");
    let path = long_wav(&dir, "a.wav", 20);
    let sup = Supervisor::builder().start().unwrap();
    let root = sup.root();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let mut dec = AudioDecoder::open(&root, &path).await.unwrap();
        dec.read_i16(10).await.unwrap();
        tx.send(()).unwrap();
        decode_forever(&mut dec).await
    });
    rx.await.unwrap();
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    assert_eq!(settle_fds(&dir.0).await, 0);
    assert_eq!(decoders(&sup).live, 0);
    assert!(sup.shutdown().await.is_clean());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgotten_and_escaped_guards_are_reclaimed_at_scope_end() {
    let dir = Dir::new("cancel-forget");
    let path = long_wav(&dir, "a.wav", 1);
    let sup = Supervisor::builder().start().unwrap();
    let mut escaped = sup
        .scope("leaky", async |s| {
            let forgotten = AudioDecoder::open(&s, &path).await.unwrap();
            std::mem::forget(forgotten);
            let mut kept = AudioDecoder::open(&s, &path).await.unwrap();
            kept.read_i16(1).await.unwrap();
            kept
        })
        .await
        .unwrap();
    assert_eq!(
        settle_fds(&dir.0).await,
        0,
        "both files closed at scope end"
    );
    let st = decoders(&sup);
    assert_eq!((st.live, st.released(ReleasePath::ScopeEnd)), (0, 2));
    let leaks = sup.leaked();
    assert_eq!(leaks.len(), 2);
    assert!(leaks.iter().all(|l| l.kind() == ResourceKind::AudioDecoder));
    assert!(leaks.iter().all(|l| l.site().file.ends_with("cancel.rs")));
    // The escaped guard fails cleanly.
    let err = escaped.read_i16(1).await.unwrap_err();
    assert!(matches!(err, Error::Released { .. }), "{err}");
    assert!(!escaped.registration().is_live());
    drop(escaped);
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_releases_a_decoder_mid_decode() {
    let dir = Dir::new("cancel-shutdown");
    let path = long_wav(&dir, "a.wav", 20);
    let sup = Supervisor::builder().start().unwrap();
    let root = sup.root();
    let task = tokio::spawn(async move {
        let mut dec = AudioDecoder::open(&root, &path).await.unwrap();
        let r = decode_forever(&mut dec).await;
        std::mem::forget(dec); // a guard that is never dropped
        r
    });
    tokio::time::sleep(Duration::from_millis(30)).await;
    let report = sup.shutdown().await;
    let r = task.await.unwrap();
    assert!(matches!(r, Err(Error::Released { .. })), "{r:?}");
    assert_eq!(settle_fds(&dir.0).await, 0);
    assert_eq!(decoders(&sup).live, 0);
    assert!(!report.to_string().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_are_cancel_safe() {
    let dir = Dir::new("cancel-safe");
    let path = long_wav(&dir, "a.wav", 2);
    let sup = Supervisor::builder().start().unwrap();
    let root = sup.root();
    let mut reference = AudioDecoder::open(&root, &path).await.unwrap();
    let want: Vec<i16> = reference.read_all().await.unwrap();
    let mut dec = AudioDecoder::open(&root, &path).await.unwrap();
    let mut got = Vec::new();
    let (mut dropped, mut waited) = (0, 0);
    let mut i = 0usize;
    loop {
        i += 1;
        // Vary the request so that a dropped read's frames come back through the queue.
        let n = 500 + (i % 7) * 300;
        let mut read = std::pin::pin!(dec.read_i16(n));
        // Poll once (which starts a decode hop when the read-ahead queue cannot serve
        // it), then drop every other read that had to wait. The first read of a fresh
        // decoder always waits, so at least one is dropped however the machine is loaded.
        let first = std::future::poll_fn(|cx| Poll::Ready(read.as_mut().poll(cx))).await;
        let chunk = match first {
            Poll::Ready(chunk) => chunk,
            Poll::Pending => {
                waited += 1;
                if waited % 2 == 1 {
                    dropped += 1;
                    continue;
                }
                read.await
            }
        };
        let chunk = chunk.unwrap();
        if chunk.is_empty() {
            break;
        }
        got.extend(chunk);
    }
    assert!(dropped > 0, "no read was cut short");
    assert_eq!(got.len(), want.len());
    assert!(
        got == want,
        "frames lost or reordered after {dropped} dropped reads"
    );
    assert_eq!(dec.position(), 96_000);
    drop((dec, reference));
    assert!(sup.shutdown().await.is_clean());
}
