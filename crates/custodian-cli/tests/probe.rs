//! `custodian probe` on good, malformed and hostile files: correct metadata, errors that
//! name the file, a non-zero exit when any failed, and never a panic.

mod common;

use common::FreshTmp;
use serde_json::Value;

/// A PCM WAV: `channels` x `frames` 16-bit samples at `rate`.
fn wav(rate: u32, channels: u16, frames: u32) -> Vec<u8> {
    let data = frames * u32::from(channels) * 2;
    let mut v = b"RIFF".to_vec();
    v.extend_from_slice(&(36 + data).to_le_bytes());
    v.extend_from_slice(b"WAVEfmt ");
    v.extend_from_slice(&16u32.to_le_bytes());
    v.extend_from_slice(&1u16.to_le_bytes());
    v.extend_from_slice(&channels.to_le_bytes());
    v.extend_from_slice(&rate.to_le_bytes());
    v.extend_from_slice(&(rate * u32::from(channels) * 2).to_le_bytes());
    v.extend_from_slice(&(channels * 2).to_le_bytes());
    v.extend_from_slice(&16u16.to_le_bytes());
    v.extend_from_slice(b"data");
    v.extend_from_slice(&data.to_le_bytes());
    v.extend((0..data).map(|i| (i * 7 % 251) as u8));
    v
}

#[test]
fn good_files_give_their_metadata() {
    let t = FreshTmp::new("probe-good");
    let dir = t.0.join("in");
    std::fs::create_dir(&dir).unwrap();
    let (a, b) = (dir.join("mono.wav"), dir.join("stereo.wav"));
    std::fs::write(&a, wav(16_000, 1, 8_000)).unwrap();
    std::fs::write(&b, wav(44_100, 2, 44_100)).unwrap();
    let out = t
        .cmd(&["probe", "--json"])
        .arg(&a)
        .arg(&b)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r[0]["sample_rate"], 16_000);
    assert_eq!(r[0]["channels"], 1);
    assert_eq!(r[0]["bits_per_sample"], 16);
    assert_eq!(r[0]["frames"], 8_000);
    assert_eq!(r[0]["duration_s"], 0.5);
    assert_eq!(r[0]["container"], "wav");
    assert_eq!(r[1]["channels"], 2);
    assert_eq!(r[1]["frames"], 44_100);
    assert_eq!(r[1]["duration_s"], 1.0);
    let line = t.cmd(&["probe"]).arg(&a).output().unwrap();
    let line = String::from_utf8(line.stdout).unwrap();
    assert!(
        line.contains("16000 Hz 1 ch 16 bit 8000 frames 0.500 s"),
        "{line}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(t.entries().is_empty(), "left in TMPDIR: {:?}", t.entries());
}

#[test]
fn bad_files_are_errors_naming_the_file_and_the_exit_is_non_zero() {
    let t = FreshTmp::new("probe-bad");
    let dir = t.0.join("in");
    std::fs::create_dir(&dir).unwrap();
    let good = dir.join("good.wav");
    std::fs::write(&good, wav(8_000, 1, 800)).unwrap();
    let malformed = dir.join("malformed.wav");
    std::fs::write(&malformed, b"RIFF\x24\0\0\0WAVEfmt \x10\0\0\0junk").unwrap();
    let garbage = dir.join("garbage.wav");
    std::fs::write(
        &garbage,
        (0..65_536u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    // A header declaring 65535 channels and an absurd rate: refused before allocating.
    let mut absurd = wav(8_000, 1, 100);
    absurd[22..24].copy_from_slice(&u16::MAX.to_le_bytes());
    absurd[24..28].copy_from_slice(&u32::MAX.to_le_bytes());
    let absurd_p = dir.join("absurd.wav");
    std::fs::write(&absurd_p, absurd).unwrap();
    let missing = dir.join("missing.wav");
    let files = [&good, &malformed, &garbage, &absurd_p, &missing, &dir];
    let out = t.cmd(&["probe", "--json"]).args(files).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r[0]["ok"], true);
    for (i, f) in files.iter().enumerate().skip(1) {
        assert_eq!(r[i]["ok"], false, "{f:?}");
        let e = r[i]["error"].as_str().unwrap();
        assert!(e.contains(&*f.display().to_string()), "names the file: {e}");
    }
    let text = t.cmd(&["probe"]).arg(&missing).output().unwrap();
    assert_eq!(text.status.code(), Some(1));
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(
        text.contains("missing.wav: error:") && text.contains("No such file"),
        "{text}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(t.entries().is_empty(), "left in TMPDIR: {:?}", t.entries());
}
