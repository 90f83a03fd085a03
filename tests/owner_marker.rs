//! One owner marker (issue 18): a supervisor's children carry one environment variable,
//! `CUSTODIAN_OWNER=<pid>-<start>-<16 hex>-<seq>`, whose stem names the crash journal and
//! proves adoptions under the child-subreaper opt-in; recovery finds a dead owner's
//! descendants by it, checked against the journal's owner record, and still by an older
//! version's `CUSTODIAN_JOURNAL=<stem>`.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use custodian_suite::journal::{
    Reaped, dead_owner, private_dir, start_time, sweep, write_journal_named,
};
use custodian_suite::{pid_running, poll_until, scratch_dir, serial};

/// A stem of an owner that is certainly dead: this process's pid, start time 1.
fn dead_stem() -> String {
    format!("{}-1-0123456789abcdef", std::process::id())
}

/// A sleeper in a group of its own (outside every recorded group) with `var=value`.
fn marked(var: &str, value: &str) -> Reaped {
    Reaped(
        Command::new("sleep")
            .arg("1000")
            .process_group(0)
            .env(var, value)
            .spawn()
            .unwrap(),
    )
}

/// The `CUSTODIAN_*` variables a managed child of `builder`'s supervisor sees, and the
/// stems of the journals in `state` while it runs.
fn child_markers(builder: tokio_custodian::Builder, state: &Path) -> (Vec<String>, Vec<String>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let sup = builder.start().unwrap();
        let out = sup.command("env").output().await.unwrap();
        let stems = std::fs::read_dir(state)
            .unwrap()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                Some(name.strip_suffix(".journal")?.to_owned())
            })
            .collect();
        assert!(sup.shutdown().await.is_clean());
        let text = String::from_utf8(out.stdout).unwrap();
        let markers = text
            .lines()
            .filter(|l| l.starts_with("CUSTODIAN_") && !l.starts_with("CUSTODIAN_TEST"))
            .map(str::to_owned)
            .collect();
        (markers, stems)
    })
}

#[test]
fn a_child_carries_one_marker_that_names_the_journal() {
    let _s = serial();
    let scratch = scratch_dir("marker-one");
    let state = private_dir(&scratch.join("state"));
    for subreaper in [false, true] {
        let b = tokio_custodian::Supervisor::builder()
            .state_dir(&state)
            .child_subreaper(subreaper);
        let (markers, stems) = child_markers(b, &state);
        // Before: `CUSTODIAN_JOURNAL=<stem>` and, with the subreaper,
        // `CUSTODIAN_OWNER=<another stem>-<seq>`.
        assert_eq!(markers.len(), 1, "subreaper {subreaper}: {markers:?}");
        let value = markers[0].strip_prefix("CUSTODIAN_OWNER=").unwrap();
        let (stem, seq) = value.rsplit_once('-').unwrap();
        assert!(seq.parse::<u64>().is_ok(), "{value}");
        let me = std::process::id();
        assert!(
            stem.starts_with(&format!("{me}-{}-", start_time(me))),
            "{value}"
        );
        assert_eq!(stems, [stem], "the marker does not name the journal");
    }
    std::fs::remove_dir_all(&scratch).unwrap();
}

#[test]
fn recovery_finds_a_dead_owners_descendants_by_the_one_marker_and_only_theirs() {
    let _s = serial();
    let scratch = scratch_dir("marker-recovery");
    let state = private_dir(&scratch.join("state"));
    let stem = dead_stem();
    write_journal_named(&state, &stem, &dead_owner());
    // Left its group, unrecorded: only the marker says whose.
    let mut escaped = marked("CUSTODIAN_OWNER", &format!("{stem}-7"));
    // An older version's name, with exactly the stem: accepted too.
    let mut old = marked("CUSTODIAN_JOURNAL", &stem);
    // Another owner's stem (one more hex digit), the old name with a sequence number,
    // and the new name without one: nobody's.
    let strangers = [
        marked("CUSTODIAN_OWNER", &format!("{stem}0-7")),
        marked("CUSTODIAN_JOURNAL", &format!("{stem}-7")),
        marked("CUSTODIAN_OWNER", &stem),
    ];
    let report = sweep(&state);
    // Before: the new name was not looked for: `escaped` ran on.
    for (what, p) in [("new name", &mut escaped), ("old name", &mut old)] {
        let mut status = None;
        poll_until(Duration::from_secs(5), || {
            status = p.0.try_wait().unwrap();
            status.is_some()
        });
        assert!(
            status.is_some_and(|s| s.code().is_none()),
            "{what}: not stopped by a signal ({status:?}): {report}"
        );
    }
    for s in &strangers {
        assert!(
            pid_running(s.0.id()),
            "another owner's process was signalled: {report}"
        );
    }
    assert_eq!(report.stopped.len(), 1, "{report}");
    assert_eq!(report.stopped[0].processes, 2, "{report}");
    drop(strangers);
    std::fs::remove_dir_all(&scratch).unwrap();
}

#[test]
fn a_journal_named_like_a_live_owners_does_not_stop_children_with_its_marker() {
    let _s = serial();
    let scratch = scratch_dir("marker-lookalike");
    let state = private_dir(&scratch.join("state"));
    // The live owner's stem: this process, its real start time.
    let me = std::process::id();
    let live = format!("{me}-{}-0123456789abcdef", start_time(me));
    let victim = marked("CUSTODIAN_OWNER", &format!("{live}-1"));
    // A journal by that name in another state dir, with a dead owner's record.
    let journal = write_journal_named(&state, &live, &dead_owner());
    let report = sweep(&state);
    assert!(
        pid_running(victim.0.id()),
        "a live owner's child was stopped through a look-alike journal: {report}"
    );
    assert!(
        report.dead_owners.is_empty() && !report.is_clean(),
        "{report}"
    );
    assert!(journal.exists(), "kept for a person");
    drop(victim);
    std::fs::remove_dir_all(&scratch).unwrap();
}
