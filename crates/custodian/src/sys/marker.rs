//! The owner marker: the one environment variable that says "this process descends from
//! that supervisor", its one format and its one parser.
//!
//! Every managed child of a supervisor with a crash journal or the child-subreaper opt-in
//! (except, with a journal only, a child of the cgroup tier without a watcher: its cgroup
//! proves descent, see `resource/process/escapees.rs`; a marker the supervisor inherited
//! is removed from it) is spawned with `CUSTODIAN_OWNER=<pid>-<start>-<16 hex>-<seq>`:
//! the supervisor's pid and start time (`/proc/PID/stat` field 22), 64 random bits naming
//! the supervisor (two in one process differ), and the child's sequence number. What the child forks inherits it.
//! The part before the sequence number is the *stem*; a journal is named `<stem>.journal`.
//! Three readers, one parser ([`owner_in`]):
//! - the subreaper's adoption proof (`reaper`): a child of ours whose marker has this
//!   supervisor's stem descends from the managed child `<seq>`;
//! - recovery's match of a dead owner's descendants (`sys::orphans`): a process whose
//!   marker has the stem of a journal whose name was checked against its owner record;
//! - nothing else reads the environment.
//!
//! Older versions wrote `CUSTODIAN_JOURNAL=<stem>` (journal only; the subreaper's
//! `CUSTODIAN_OWNER` already had this format). Recovery still accepts the old name with
//! exactly a dead owner's stem: the same proof as for the new name (the stem is the
//! journal's checked name, and the process started no earlier than its owner), at no
//! extra read (the same `environ`). A live supervisor never writes it.

use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::sync::atomic::{AtomicU64, Ordering};

/// The variable.
pub(crate) const VAR: &str = "CUSTODIAN_OWNER";
/// The name older versions gave the journal's marker (read by recovery only).
pub(crate) const LEGACY_VAR: &str = "CUSTODIAN_JOURNAL";

/// A supervisor's marker: its stem and the next child's sequence number.
#[derive(Debug)]
pub(crate) struct OwnerMark {
    pid: u32,
    start: u64,
    stem: Box<str>,
    next_seq: AtomicU64,
}

impl OwnerMark {
    /// This process's stem, with 64 new random bits.
    pub(crate) fn new() -> io::Result<Self> {
        let (pid, start) = (std::process::id(), super::procfs::self_start()?);
        let stem = format!("{pid}-{start}-{}", super::create::random_hex(8)?);
        Ok(OwnerMark {
            pid,
            start,
            stem: stem.into(),
            next_seq: AtomicU64::new(1),
        })
    }

    /// The supervisor's pid and start time, as the stem says.
    pub(crate) fn owner(&self) -> (u32, u64) {
        (self.pid, self.start)
    }

    /// `<pid>-<start>-<16 hex>`.
    pub(crate) fn stem(&self) -> &str {
        &self.stem
    }

    /// A new child's sequence number and the value of [`VAR`] it carries.
    pub(crate) fn next(&self) -> (u64, OsString) {
        // Relaxed: uniqueness only.
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let mut v = Vec::with_capacity(self.stem.len() + 21);
        v.extend_from_slice(self.stem.as_bytes());
        v.push(b'-');
        v.extend_from_slice(seq.to_string().as_bytes());
        (seq, OsString::from_vec(v))
    }

    /// The sequence number in `owner`, if it is this supervisor's marker.
    pub(crate) fn seq_of(&self, owner: &Owner<'_>) -> Option<u64> {
        (owner.stem == self.stem.as_bytes()).then_some(owner.seq?)
    }
}

/// A marker found in an environment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Owner<'a> {
    /// `<pid>-<start>-<nonce>`.
    pub(crate) stem: &'a [u8],
    /// The supervisor's pid and start time, as the stem says.
    pub(crate) pid: u32,
    pub(crate) start: u64,
    /// The child's sequence number (`None`: an older version's [`LEGACY_VAR`]).
    pub(crate) seq: Option<u64>,
}

/// Parses a marker's value: `<pid>-<start>-<nonce>-<seq>` (or, for [`LEGACY_VAR`],
/// without `-<seq>`). The nonce is ASCII letters and digits.
fn parse(value: &[u8], with_seq: bool) -> Option<Owner<'_>> {
    let num = |b: &[u8]| -> Option<u64> {
        if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(b).ok()?.parse().ok()
    };
    let mut parts = value.split(|&b| b == b'-');
    let pid = u32::try_from(num(parts.next()?)?).ok()?;
    let start = num(parts.next()?)?;
    let nonce = parts.next()?;
    if nonce.is_empty() || !nonce.iter().all(u8::is_ascii_alphanumeric) {
        return None;
    }
    let stem_len = value.len() - parts.clone().map(|p| p.len() + 1).sum::<usize>();
    let seq = match (parts.next(), with_seq) {
        (Some(s), true) => Some(num(s)?),
        (None, false) => None,
        _ => return None,
    };
    if parts.next().is_some() {
        return None;
    }
    Some(Owner {
        stem: &value[..stem_len],
        pid,
        start,
        seq,
    })
}

/// The marker in an environment block (`NAME=VALUE\0`..., as `/proc/PID/environ`):
/// [`VAR`]'s value, or, with `legacy`, [`LEGACY_VAR`]'s when there is no [`VAR`].
/// `None`: no marker, or a malformed one (which matches nobody).
pub(crate) fn owner_in(env: &[u8], legacy: bool) -> Option<Owner<'_>> {
    let value = |name: &str| {
        env.split(|&b| b == 0)
            .find_map(|v| v.strip_prefix(name.as_bytes())?.strip_prefix(b"="))
    };
    if let Some(v) = value(VAR) {
        return parse(v, true);
    }
    parse(value(LEGACY_VAR).filter(|_| legacy)?, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_format_round_trips_and_malformed_markers_match_nobody() {
        let mark = OwnerMark::new().unwrap();
        let (seq, value) = mark.next();
        let (seq2, _) = mark.next();
        assert_ne!(seq, seq2);
        let mut env = b"A=1\0".to_vec();
        env.extend(format!("{VAR}=").bytes());
        env.extend(value.as_encoded_bytes());
        env.extend(b"\0B=2\0");
        let owner = owner_in(&env, false).unwrap();
        assert_eq!(owner.stem, mark.stem().as_bytes());
        assert_eq!(owner.pid, std::process::id());
        assert_eq!(owner.start, crate::sys::procfs::self_start().unwrap());
        assert_eq!(mark.seq_of(&owner), Some(seq));
        assert_eq!(
            OwnerMark::new().unwrap().seq_of(&owner),
            None,
            "another supervisor"
        );
        for bad in [
            "1-2-abc",
            "1-2-abc-",
            "1-2--4",
            "x-2-abc-4",
            "1-2-abc-4-5",
            "1-2-a/c-4",
            "99999999999-2-abc-4",
        ] {
            let env = format!("{VAR}={bad}\0");
            assert_eq!(owner_in(env.as_bytes(), true), None, "{bad}");
        }
        // An older version's name: only for recovery, only without a sequence number.
        let old = format!("{LEGACY_VAR}=7-8-0123456789abcdef\0");
        assert_eq!(owner_in(old.as_bytes(), false), None);
        let o = owner_in(old.as_bytes(), true).unwrap();
        assert_eq!(
            (o.stem, o.pid, o.start, o.seq),
            (&b"7-8-0123456789abcdef"[..], 7, 8, None)
        );
        let both = format!("{LEGACY_VAR}=7-8-aa\0{VAR}=7-8-bb-3\0");
        assert_eq!(owner_in(both.as_bytes(), true).unwrap().stem, b"7-8-bb");
        // A name that only ends like the variable's is another variable.
        let other = format!("X{VAR}=7-8-bb-3\0");
        assert_eq!(owner_in(other.as_bytes(), true), None);
    }
}
