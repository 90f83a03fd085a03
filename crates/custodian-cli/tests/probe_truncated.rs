//! `custodian probe` on a WAV cut short and on special files, through the built binary:
//! a truncated file says so (declared vs present frames, `"truncated": true`, the word in
//! the text line, exit 1 with `--strict`), and a FIFO is refused at once instead of
//! waiting out the 30 s timeout for a writer.

mod common;

use std::time::{Duration, Instant};

use common::FreshTmp;
use serde_json::Value;

/// A 16-bit mono WAV at 16 kHz whose header declares `declared` frames and whose data
/// chunk holds `present`.
fn cut_wav(declared: u32, present: u32) -> Vec<u8> {
    let mut v = b"RIFF".to_vec();
    v.extend_from_slice(&(36 + declared * 2).to_le_bytes());
    v.extend_from_slice(b"WAVEfmt ");
    v.extend_from_slice(&16u32.to_le_bytes());
    v.extend_from_slice(&[1, 0, 1, 0]);
    v.extend_from_slice(&16_000u32.to_le_bytes());
    v.extend_from_slice(&32_000u32.to_le_bytes());
    v.extend_from_slice(&[2, 0, 16, 0]);
    v.extend_from_slice(b"data");
    v.extend_from_slice(&(declared * 2).to_le_bytes());
    v.extend((0..present).flat_map(|i| ((i % 500) as i16).to_le_bytes()));
    v
}

#[test]
fn a_truncated_wav_is_reported_and_fails_only_with_strict() {
    let t = FreshTmp::new("probe-cut");
    let dir = t.0.join("in");
    std::fs::create_dir(&dir).unwrap();
    let (cut, whole) = (dir.join("cut.wav"), dir.join("whole.wav"));
    std::fs::write(&cut, cut_wav(48_000, 14_978)).unwrap();
    std::fs::write(&whole, cut_wav(8_000, 8_000)).unwrap();

    let out = t
        .cmd(&["probe", "--json"])
        .arg(&cut)
        .arg(&whole)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r[0]["truncated"], true, "{}", r[0]);
    assert_eq!(r[0]["declared_frames"], 48_000);
    assert_eq!(r[0]["present_frames"], 14_978);
    assert_eq!(r[0]["frames"], 14_978);
    assert_eq!(r[1]["truncated"], false, "{}", r[1]);
    assert_eq!(r[1]["declared_frames"], 8_000);

    let line = t.cmd(&["probe"]).arg(&cut).output().unwrap();
    let text = String::from_utf8(line.stdout).unwrap();
    assert!(
        text.contains("truncated: the header declares 48000 frames, 14978 present"),
        "{text}"
    );
    assert_eq!(line.status.code(), Some(0));
    let whole_line = t.cmd(&["probe"]).arg(&whole).output().unwrap();
    assert!(
        !String::from_utf8(whole_line.stdout)
            .unwrap()
            .contains("truncated")
    );

    // --strict: a truncated file fails the run; a whole one does not.
    let strict = t.cmd(&["probe", "--strict"]).arg(&cut).output().unwrap();
    assert_eq!(strict.status.code(), Some(1));
    let strict = t.cmd(&["probe", "--strict"]).arg(&whole).output().unwrap();
    assert_eq!(strict.status.code(), Some(0));
    // With --header-only the header alone tells.
    let head = t
        .cmd(&["probe", "--json", "--header-only"])
        .arg(&cut)
        .output()
        .unwrap();
    let r: Value = serde_json::from_slice(&head.stdout).unwrap();
    assert_eq!(
        (r[0]["truncated"].clone(), r[0]["present_frames"].clone()),
        (Value::Bool(true), Value::from(14_978))
    );

    std::fs::remove_dir_all(&dir).unwrap();
    assert!(t.entries().is_empty(), "left in TMPDIR: {:?}", t.entries());
}

#[test]
fn a_fifo_is_refused_at_once_not_after_the_timeout() {
    let t = FreshTmp::new("probe-fifo");
    let fifo = t.0.join("speech.wav");
    let st = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(st.success());
    let t0 = Instant::now();
    let out = t.cmd(&["probe", "--json"]).arg(&fifo).output().unwrap();
    let took = t0.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "probe of a FIFO took {took:?}"
    );
    assert_eq!(out.status.code(), Some(1));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let err = r[0]["error"].as_str().unwrap();
    assert!(
        err.contains("not a regular file (a FIFO)") && err.contains(fifo.to_str().unwrap()),
        "{err}"
    );
    std::fs::remove_file(&fifo).unwrap();
    assert!(t.entries().is_empty(), "left in TMPDIR: {:?}", t.entries());
}
