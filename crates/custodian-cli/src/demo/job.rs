//! One job of the short-video factory, and the faults it can be told to commit.
//!
//! A job spools its upload to a managed temp file, decodes it through the managed
//! decoder in 20 ms frames, cuts captions at the pauses (WebVTT), writes them to a
//! managed work dir, runs external tools as managed children (`gzip` for the captions
//! and the "encoded clip", `sox` when present to resample, `sh` to check the outputs), and
//! persists its summary into the output dir. Each fault goes wrong on purpose at the step
//! a real service would.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncSeekExt, AsyncWriteExt};
use tokio_custodian::Scope;
use tokio_custodian_audio::AudioDecoder;

/// A fault injected into one job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Fault {
    /// Panics while holding a decoder, a temp dir and a running child.
    Panic,
    /// Its scope is cancelled while a child runs.
    Cancel,
    /// Runs past its deadline while waiting for a child: its future is dropped.
    Deadline,
    /// Runs a child that ignores SIGTERM: stopped with SIGKILL after its grace.
    StubbornChild,
    /// `mem::forget`s a temp file and a running child.
    Forget,
    /// Receives a malformed WAV: a typed error naming the path.
    Malformed,
    /// Writes its clip to a full disk (`/dev/full`): ENOSPC as a typed error.
    DiskFull,
    /// Renders more temp data than the demo's temp bytes quota allows: the write is
    /// refused (`QuotaExceeded`) before anything reaches the disk.
    TempQuota,
}

impl Fault {
    pub(crate) const ALL: [Fault; 8] = [
        Fault::Panic,
        Fault::Cancel,
        Fault::Deadline,
        Fault::StubbornChild,
        Fault::Forget,
        Fault::Malformed,
        Fault::DiskFull,
        Fault::TempQuota,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Fault::Panic => "panic",
            Fault::Cancel => "cancel",
            Fault::Deadline => "deadline",
            Fault::StubbornChild => "stubborn-child",
            Fault::Forget => "forget",
            Fault::Malformed => "malformed",
            Fault::DiskFull => "disk-full",
            Fault::TempQuota => "temp-quota",
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Fault {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Fault::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Fault::ALL.iter().map(|f| f.name()).collect();
                format!(
                    "unknown fault {s:?} (known: {}, all, none)",
                    names.join(", ")
                )
            })
    }
}

/// What one job is given.
#[derive(Debug)]
pub(crate) struct JobSpec {
    pub(crate) n: usize,
    pub(crate) fault: Option<Fault>,
    /// The upload's bytes.
    pub(crate) input: Vec<u8>,
    pub(crate) out: PathBuf,
    pub(crate) sox: bool,
}

type JobResult = Result<String, String>;

/// The demo's temp bytes quota, across all jobs: far above what the healthy jobs spool
/// at once, far below what the `temp-quota` job tries to render.
pub(crate) const TEMP_QUOTA: u64 = 512 << 20;

fn err(what: &str, path: &Path, e: impl fmt::Display) -> String {
    format!("{what} {}: {e}", path.display())
}

/// Runs one job in scope `s`; the text says what it produced.
pub(crate) async fn run(s: Scope, job: JobSpec) -> JobResult {
    let JobSpec {
        n,
        fault,
        input,
        out,
        sox,
    } = job;
    // 1. Spool the upload.
    let upload = s.temp().prefix("upload-").suffix(".wav").label("upload");
    let mut upload = upload.file().await.map_err(|e| e.to_string())?;
    let input = if fault == Some(Fault::Malformed) {
        crate::wav::malformed()
    } else {
        input
    };
    upload
        .write_all(&input)
        .await
        .map_err(|e| err("write", upload.path(), e))?;
    upload
        .flush()
        .await
        .map_err(|e| err("write", upload.path(), e))?;
    let work = s.temp().prefix("work-").label("workdir").dir().await;
    let work = work.map_err(|e| e.to_string())?;

    // 2. Decode in 20 ms frames; a frame above the threshold is speech.
    let mut dec = AudioDecoder::open(&s, upload.path())
        .await
        .map_err(|e| e.to_string())?;
    let rate = dec.info().sample_rate.max(1);
    let channels = usize::from(dec.info().channels.max(1));
    let hop = (rate / 50).max(1) as usize;
    let mut voiced = Vec::new();
    loop {
        let chunk = dec.read_f32(hop).await.map_err(|e| e.to_string())?;
        if chunk.is_empty() {
            break;
        }
        let energy = chunk.iter().map(|x| x * x).sum::<f32>() / chunk.len() as f32;
        voiced.push(energy > 1e-4);
    }
    let frames = voiced.len() * hop / channels.max(1);
    if fault == Some(Fault::Panic) {
        let _held = (s.temp_dir().await, s.command("sleep").arg("1000").spawn());
        let _decoder = dec;
        panic!("job {n}: bug in the caption step (injected)");
    }
    dec.close().await.map_err(|e| e.to_string())?;

    // 3. Captions at the pauses, as WebVTT in the work dir.
    let vtt = work.path().join("captions.vtt");
    let cues = captions(&voiced);
    let mut file = s.create(&vtt).await.map_err(|e| e.to_string())?;
    file.write_all(webvtt(&cues).as_bytes())
        .await
        .map_err(|e| err("write", &vtt, e))?;
    file.close().await.map_err(|e| e.to_string())?;

    // 4. External tools as managed children: each in its own group, TERM then KILL.
    let ten = Duration::from_secs(10);
    let gz = s
        .command("gzip")
        .arg("-kf")
        .arg(&vtt)
        .deadline(ten)
        .status()
        .await;
    check("gzip", gz)?;
    let clip = if sox {
        let clip = work.path().join("clip.wav");
        let st = s
            .command("sox")
            .arg(upload.path())
            .args(["-r", "8000"])
            .arg(&clip);
        check("sox", st.deadline(ten).status().await)?;
        clip
    } else {
        upload.path().to_path_buf()
    };
    let enc = s
        .command("gzip")
        .args(["-1", "-c"])
        .arg(&clip)
        .deadline(ten)
        .output()
        .await;
    let enc = enc.map_err(|e| e.to_string())?;
    let listing = s
        .command("sh")
        .args(["-c", "ls \"$1\" | wc -l", "sh"])
        .arg(work.path());
    let listing = listing
        .deadline(ten)
        .output()
        .await
        .map_err(|e| e.to_string())?;
    let files = String::from_utf8_lossy(&listing.stdout).trim().to_owned();

    let mut note = String::new();
    match fault {
        Some(Fault::Cancel) => {
            let mut slow = s.command("sleep").arg("1000").label("slow encoder").spawn();
            let _slow = slow.as_mut().map_err(|e| e.to_string())?;
            let canceller = s.clone();
            // Another part of the service gives up on this job.
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(150)).await;
                canceller.cancel();
            });
            s.cancelled().await;
            return Err("cancelled while its encoder ran (injected)".to_owned());
        }
        Some(Fault::Deadline) => {
            let mut slow = s.command("sleep").arg("1000").label("slow tool").spawn();
            let slow = slow.as_mut().map_err(|e| e.to_string())?;
            slow.wait().await.map_err(|e| e.to_string())?; // the deadline drops us first
        }
        Some(Fault::StubbornChild) => {
            let script = "trap '' TERM; sleep 1000";
            let c = s
                .command("sh")
                .args(["-c", script])
                .label("stubborn encoder");
            let c = c
                .grace(Duration::from_millis(300))
                .spawn()
                .map_err(|e| e.to_string())?;
            tokio::time::sleep(Duration::from_millis(100)).await;
            let st = c.close().await.map_err(|e| e.to_string())?;
            note = format!("; stubborn child stopped: {st} (SIGTERM ignored, 300 ms grace)");
        }
        Some(Fault::Forget) => {
            let t = s.temp().label("forgotten temp").file().await;
            std::mem::forget(t.map_err(|e| e.to_string())?);
            let c = s
                .command("sleep")
                .arg("1000")
                .label("forgotten child")
                .spawn();
            std::mem::forget(c.map_err(|e| e.to_string())?);
            note = "; forgot a temp file and a child (injected)".to_owned();
        }
        Some(Fault::DiskFull) => {
            let full = Path::new("/dev/full");
            let mut f = s.file_options().write(true).open(full).await;
            let f = f.as_mut().map_err(|e| e.to_string())?;
            f.write_all(&enc.stdout)
                .await
                .map_err(|e| err("write clip to", full, e))?;
            f.flush().await.map_err(|e| err("write clip to", full, e))?;
        }
        Some(Fault::TempQuota) => {
            // An uncompressed render past the supervisor's temp bytes quota: seek there
            // and write one byte. The quota charges up to the end of the write, so the
            // write is refused and the file stays empty.
            let render = s.temp().suffix(".raw").label("render").file().await;
            let mut render = render.map_err(|e| e.to_string())?;
            render
                .seek(std::io::SeekFrom::Start(TEMP_QUOTA))
                .await
                .map_err(|e| err("seek", render.path(), e))?;
            render
                .write_all(b"\0")
                .await
                .map_err(|e| err("write render to", render.path(), e))?;
        }
        _ => {}
    }

    // 5. Persist the summary atomically into the output dir.
    let text = format!(
        "{{\"job\":{n},\"frames\":{frames},\"captions\":{},\"clip_bytes\":{},\"work_files\":{files}}}",
        cues.len(),
        enc.stdout.len()
    );
    let mut summary = s.temp().suffix(".json").label("summary").file().await;
    let summary_ref = summary.as_mut().map_err(|e| e.to_string())?;
    summary_ref
        .write_all(text.as_bytes())
        .await
        .map_err(|e| err("write", summary_ref.path(), e))?;
    let summary = summary.map_err(|e| e.to_string())?;
    let kept = summary.persist(out.join(format!("job-{n}.json"))).await;
    kept.map_err(|e| e.error.to_string())?
        .close()
        .await
        .map_err(|e| e.to_string())?;
    Ok(format!(
        "{} captions, {} clip bytes{note}",
        cues.len(),
        enc.stdout.len()
    ))
}

fn check(tool: &str, st: tokio_custodian::Result<std::process::ExitStatus>) -> Result<(), String> {
    match st {
        Ok(st) if st.success() => Ok(()),
        Ok(st) => Err(format!("{tool}: {st}")),
        Err(e) => Err(e.to_string()),
    }
}

/// Voiced runs of 20 ms frames, as (start, end) in frames; pauses under 60 ms are kept.
fn captions(voiced: &[bool]) -> Vec<(usize, usize)> {
    let mut cues: Vec<(usize, usize)> = Vec::new();
    let mut start = None;
    for (i, &v) in voiced.iter().chain(std::iter::once(&false)).enumerate() {
        match (v, start) {
            (true, None) => start = Some(i),
            (false, Some(s0)) => {
                match cues.last_mut() {
                    Some(last) if s0 - last.1 < 3 => last.1 = i,
                    _ => cues.push((s0, i)),
                }
                start = None;
            }
            _ => {}
        }
    }
    cues
}

fn webvtt(cues: &[(usize, usize)]) -> String {
    let ts = |f: usize| {
        let ms = f * 20;
        format!(
            "00:{:02}:{:02}.{:03}",
            ms / 60_000,
            ms / 1000 % 60,
            ms % 1000
        )
    };
    let mut s = String::from("WEBVTT\n");
    for (i, (a, b)) in cues.iter().enumerate() {
        s.push_str(&format!(
            "\n{}\n{} --> {}\nword {}\n",
            i + 1,
            ts(*a),
            ts(*b),
            i + 1
        ));
    }
    s
}
