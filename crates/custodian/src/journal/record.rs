//! The journal's records and their payload encoding (the frame around each is
//! `sys/journal.rs`'s). Tags and fields are listed in `docs/crash-recovery.md`; a tag
//! this version does not know ends the parse of a journal there.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

use crate::sys::FileId;

/// One journal record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Record {
    /// Tag 1 without `pidns` (journals before it was recorded), tag 6 with it.
    Owner {
        pid: u32,
        start: u64,
        boot_id: String,
        /// The owner's pid namespace (`/proc/self/ns/pid`'s device and inode).
        pidns: Option<FileId>,
    },
    RootIntent {
        path: PathBuf,
    },
    Root {
        path: PathBuf,
        id: FileId,
    },
    /// The supervisor's cgroup (tag 11, the cgroup containment tier): every managed
    /// child's cgroup is below it, so the sweep kills the whole tree by this path, proven
    /// by its inode, with no pid involved.
    Cgroup {
        path: PathBuf,
        id: FileId,
    },
    /// The supervisor's cgroup, right before its `mkdir` (tag 12): an owner killed before
    /// the [`Record::Cgroup`] that follows leaves an empty cgroup that only this names.
    CgroupIntent {
        path: PathBuf,
    },
    /// Tag 3 without `grace_ms` (older journals: the sweep's grace applies), tag 9 with
    /// it, tag 10 with it and the child's pidfd inode (`pidfs`, Linux 6.9+).
    Child {
        pid: u32,
        start: u64,
        pgid: u32,
        grace_ms: Option<u64>,
        pidfd_ino: Option<u64>,
    },
    Gone {
        pid: u32,
        start: u64,
    },
    /// A sweep dealt with this dead owner's processes (tag 7): nothing in this journal is
    /// ever signalled again. `at`: seconds since the Unix epoch, for a person.
    Swept {
        at: u64,
    },
    /// A member that sweep could not stop (tag 8): later sweeps re-check this exact
    /// identity and report it, never signal it.
    Survivor {
        pid: u32,
        start: u64,
    },
}

impl Record {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(32);
        match self {
            Record::Owner {
                pid,
                start,
                boot_id,
                pidns,
            } => {
                b.push(if pidns.is_some() { 6 } else { 1 });
                b.extend(pid.to_le_bytes());
                b.extend(start.to_le_bytes());
                if let Some(ns) = pidns {
                    b.extend(ns.dev.to_le_bytes());
                    b.extend(ns.ino.to_le_bytes());
                }
                b.extend(boot_id.as_bytes());
            }
            Record::Root { path, id } | Record::Cgroup { path, id } => {
                b.push(if matches!(self, Record::Root { .. }) {
                    2
                } else {
                    11
                });
                b.extend(id.dev.to_le_bytes());
                b.extend(id.ino.to_le_bytes());
                b.extend(path.as_os_str().as_bytes());
            }
            Record::Child {
                pid,
                start,
                pgid,
                grace_ms,
                pidfd_ino,
            } => {
                let tag = match (grace_ms, pidfd_ino) {
                    (Some(_), Some(_)) => 10,
                    (Some(_), None) => 9,
                    // An inode is only written with a grace (the writer records both).
                    (None, _) => 3,
                };
                b.push(tag);
                b.extend(pid.to_le_bytes());
                b.extend(start.to_le_bytes());
                b.extend(pgid.to_le_bytes());
                if let Some(g) = grace_ms {
                    b.extend(g.to_le_bytes());
                    if let Some(ino) = pidfd_ino {
                        b.extend(ino.to_le_bytes());
                    }
                }
            }
            Record::Swept { at } => {
                b.push(7);
                b.extend(at.to_le_bytes());
            }
            Record::Survivor { pid, start } => {
                b.push(8);
                b.extend(pid.to_le_bytes());
                b.extend(start.to_le_bytes());
            }
            Record::Gone { pid, start } => {
                b.push(4);
                b.extend(pid.to_le_bytes());
                b.extend(start.to_le_bytes());
            }
            Record::RootIntent { path } => {
                b.push(5);
                b.extend(path.as_os_str().as_bytes());
            }
            Record::CgroupIntent { path } => {
                b.push(12);
                b.extend(path.as_os_str().as_bytes());
            }
        }
        b
    }

    /// Whether `tag` is one this version writes or reads (1 to 12).
    pub(crate) fn is_known_tag(tag: u8) -> bool {
        (1..=12).contains(&tag)
    }

    /// The record in `p`, or `None` if it is not one this version writes.
    pub(crate) fn decode(p: &[u8]) -> Option<Record> {
        let u32_at = |at: usize| Some(u32::from_le_bytes(p.get(at..at + 4)?.try_into().ok()?));
        let u64_at = |at: usize| Some(u64::from_le_bytes(p.get(at..at + 8)?.try_into().ok()?));
        let exact = |len: usize| (p.len() == len).then_some(());
        match *p.first()? {
            1 => Some(Record::Owner {
                pid: u32_at(1)?,
                start: u64_at(5)?,
                boot_id: String::from_utf8(p.get(13..)?.to_vec()).ok()?,
                pidns: None,
            }),
            6 => Some(Record::Owner {
                pid: u32_at(1)?,
                start: u64_at(5)?,
                pidns: Some(FileId {
                    dev: u64_at(13)?,
                    ino: u64_at(21)?,
                }),
                boot_id: String::from_utf8(p.get(29..)?.to_vec()).ok()?,
            }),
            2 => Some(Record::Root {
                id: FileId {
                    dev: u64_at(1)?,
                    ino: u64_at(9)?,
                },
                path: PathBuf::from(OsString::from_vec(p.get(17..)?.to_vec())),
            }),
            3 => exact(17).and_then(|()| {
                Some(Record::Child {
                    pid: u32_at(1)?,
                    start: u64_at(5)?,
                    pgid: u32_at(13)?,
                    grace_ms: None,
                    pidfd_ino: None,
                })
            }),
            9 => exact(25).and_then(|()| {
                Some(Record::Child {
                    pid: u32_at(1)?,
                    start: u64_at(5)?,
                    pgid: u32_at(13)?,
                    grace_ms: Some(u64_at(17)?),
                    pidfd_ino: None,
                })
            }),
            10 => exact(33).and_then(|()| {
                Some(Record::Child {
                    pid: u32_at(1)?,
                    start: u64_at(5)?,
                    pgid: u32_at(13)?,
                    grace_ms: Some(u64_at(17)?),
                    pidfd_ino: Some(u64_at(25)?),
                })
            }),
            7 => exact(9).and_then(|()| Some(Record::Swept { at: u64_at(1)? })),
            8 => exact(13).and_then(|()| {
                Some(Record::Survivor {
                    pid: u32_at(1)?,
                    start: u64_at(5)?,
                })
            }),
            4 => exact(13).and_then(|()| {
                Some(Record::Gone {
                    pid: u32_at(1)?,
                    start: u64_at(5)?,
                })
            }),
            11 => Some(Record::Cgroup {
                id: FileId {
                    dev: u64_at(1)?,
                    ino: u64_at(9)?,
                },
                path: PathBuf::from(OsString::from_vec(p.get(17..)?.to_vec())),
            }),
            5 => Some(Record::RootIntent {
                path: PathBuf::from(OsString::from_vec(p.get(1..)?.to_vec())),
            }),
            12 => Some(Record::CgroupIntent {
                path: PathBuf::from(OsString::from_vec(p.get(1..)?.to_vec())),
            }),
            _ => None,
        }
    }
}
