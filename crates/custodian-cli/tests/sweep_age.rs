//! `custodian sweep --base DIR --older-than AGE` through the built binary: the default
//! removes only custodian's own leftovers; `--all` sweeps other programs' old entries,
//! each on its own, keeping live ones and `--exclude`d ones; refusals say the remedy.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use common::FreshTmp;
use serde_json::Value;

/// Setup, not an assertion: what was made before it is older than 2 s after it.
fn age_past() {
    std::thread::sleep(Duration::from_millis(2150));
}

fn private_dir(p: &Path) {
    std::fs::create_dir_all(p).unwrap();
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o700)).unwrap();
}

fn kept_reason<'a>(v: &'a Value, path: &Path) -> Option<&'a str> {
    v["age"]["kept"].as_array()?.iter().find_map(|k| {
        (k["path"].as_str()? == path.to_str()?).then(|| k["reason"]["kind"].as_str())?
    })
}

#[test]
fn all_sweeps_old_entries_keeps_live_and_excluded_ones() {
    let t = FreshTmp::new("sweep-age-all");
    let base = t.0.join("base");
    let state = t.0.join("state");
    private_dir(&state);
    let old = base.join("old");
    std::fs::create_dir_all(old.join("empty")).unwrap();
    for name in ["plain", "fresh", "held", "keep.pid"] {
        std::fs::write(old.join(name), b"x").unwrap();
    }
    let held = std::fs::File::open(old.join("held")).unwrap();
    rustix::fs::flock(&held, rustix::fs::FlockOperation::LockExclusive).unwrap();
    let _listener = std::os::unix::net::UnixListener::bind(old.join("sock")).unwrap();
    age_past();
    std::fs::write(old.join("fresh"), b"written now").unwrap();

    let sweep = |extra: &[&str]| {
        let mut c = t.cmd(&["sweep", "--json", "--older-than", "2s", "--state-dir"]);
        c.arg(&state).arg("--base").arg(&base).args(extra);
        let out = c.output().unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!("{e}: {}", String::from_utf8_lossy(&out.stderr));
        });
        (out.status.code(), v)
    };
    // The default: none of this is custodian's.
    let (code, v) = sweep(&[]);
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["age"]["removed"].as_array().unwrap().len(), 0, "{v}");
    assert_eq!(kept_reason(&v, &old), Some("not_ours"), "{v}");
    assert!(v["age"]["took_ms"].is_number(), "{v}");
    // A dry run of `--all` says what would go, and removes nothing.
    let (code, v) = sweep(&["--all", "--exclude", "*.pid", "--dry-run"]);
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["age"]["removed"].as_array().unwrap().len(), 2, "{v}");
    assert!(old.join("plain").exists());
    let (code, v) = sweep(&["--all", "--exclude", "*.pid"]);
    assert_eq!(code, Some(0), "{v}");
    let removed: Vec<&str> = v["age"]["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(
        removed,
        [
            old.join("empty").to_str().unwrap(),
            old.join("plain").to_str().unwrap()
        ],
        "{v}"
    );
    assert_eq!(kept_reason(&v, &old.join("fresh")), Some("young"));
    assert_eq!(kept_reason(&v, &old.join("held")), Some("locked"));
    assert_eq!(kept_reason(&v, &old.join("sock")), Some("listening_socket"));
    assert_eq!(kept_reason(&v, &old.join("keep.pid")), Some("excluded"));
    assert_eq!(kept_reason(&v, &old), Some("not_empty"));
    for name in ["fresh", "held", "sock", "keep.pid"] {
        assert!(old.join(name).exists(), "{name} survives");
    }
    // The text report gives reasons in words.
    let out = t
        .cmd(&["sweep", "--all", "--older-than", "2s", "--state-dir"])
        .arg(&state)
        .arg("--base")
        .arg(&base)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("(listening socket)") && text.contains("(locked)"),
        "{text}"
    );
    drop(held);
}

#[test]
fn refusals_say_the_remedy() {
    let t = FreshTmp::new("sweep-age-refuse");
    let state = t.0.join("state");
    private_dir(&state);
    let real = t.0.join("real");
    std::fs::create_dir(&real).unwrap();
    let link = t.0.join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let run = |base: &Path, state: &Path| {
        let out = t
            .cmd(&["sweep", "--older-than", "1h", "--state-dir"])
            .arg(state)
            .arg("--base")
            .arg(base)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&link, &state);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("symlink"), "{err}");
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o777)).unwrap();
    let (code, err) = run(&real, &state);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(&format!("chmod 700 {}", real.display())) && err.contains("chmod +t"),
        "{err}"
    );
    // The journal sweep's state dir, open to others: the remedy too.
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (code, err) = run(&real, &state);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(&format!("chmod 700 {}", state.display())),
        "{err}"
    );
}
