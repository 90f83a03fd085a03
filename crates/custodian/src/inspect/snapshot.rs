//! What `custodian inspect` shows: one snapshot of a supervisor, bounded in size.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::inner::Inner;
use crate::kind::ResourceKind;
use crate::leak::{PendingCleanup, Site};
use crate::stats::StatsSnapshot;

use super::tree::{InspectedScope, Scopes};

/// At most this many live resources are listed (all are counted in `live_total`).
pub(crate) const MAX_LIVE: usize = 10_000;
/// At most this many child processes are listed.
const MAX_CHILDREN: usize = 1_000;

/// A snapshot of a running supervisor, as its inspect socket answers it (see
/// [`Builder::inspect`](crate::Builder::inspect)) and [`inspect`](crate::inspect) reads
/// it: live resources, the scopes holding them, quota use, clean-ups, the shutdown
/// state, the containment tier. JSON durations end in `_ms`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
/// let sup = tokio_custodian::Supervisor::builder().inspect(true).start()?;
/// let _t = sup.temp().label("upload").file().await?;
/// let socket = sup.inspect_socket().unwrap().to_path_buf();
/// let seen = tokio::task::spawn_blocking(move || tokio_custodian::inspect(&socket))
///     .await.unwrap().unwrap();
/// assert_eq!(seen.pid, std::process::id());
/// assert_eq!(seen.live[0].label, "upload");
/// assert_eq!(seen.state, "running");
/// println!("{seen}");
/// # sup.shutdown().await; Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Inspection {
    /// The inspected process.
    pub pid: u32,
    /// Its supervisor's temp root.
    pub temp_root: PathBuf,
    /// The socket that answered.
    pub socket: PathBuf,
    /// Since the inspect server started, at the supervisor's start (JSON: `uptime_ms`).
    #[serde(with = "crate::leak::duration_ms", rename = "uptime_ms")]
    pub uptime: Duration,
    /// `running`, `draining`, `shutting_down` or `shut_down`.
    pub state: String,
    /// The counters, quota use and waiters, and the containment tier.
    pub stats: StatsSnapshot,
    /// How many resources are live (`live` lists at most 10,000 of them).
    pub live_total: usize,
    /// Live resources, oldest first.
    pub live: Vec<InspectedResource>,
    /// Each scope path holding live resources, with how many (see `scope_tree`).
    pub scopes: BTreeMap<String, usize>,
    /// The scope tree: every scope holding a live resource, and every scope enclosing
    /// one, parents first. A running scope that holds none and encloses none is counted
    /// in `scopes_running` only (nothing is recorded when a scope is entered).
    #[serde(default)]
    pub scope_tree: Vec<InspectedScope>,
    /// Clean-ups failing and retried.
    pub pending_cleanups: Vec<PendingCleanup>,
    /// Background clean-ups running now.
    pub cleanups_in_flight: usize,
    /// Scopes and scoped tasks running now.
    pub scopes_running: usize,
    /// The process's child processes (pid, group, command line), managed ones with the
    /// id of their entry: managed children run in groups of their own (group = pid).
    pub children: Vec<InspectedChild>,
}

/// A live resource in an [`Inspection`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
/// let sup = tokio_custodian::Supervisor::builder().inspect(true).start()?;
/// sup.scope("job", async |s| {
///     let _d = s.temp_dir().await?;
///     let socket = sup.inspect_socket().unwrap().to_path_buf();
///     let seen = tokio::task::spawn_blocking(move || tokio_custodian::inspect(&socket))
///         .await.unwrap().unwrap();
///     assert_eq!(seen.live[0].scope, "root/job");
///     Ok::<_, tokio_custodian::Error>(())
/// }).await??;
/// # sup.shutdown().await; Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct InspectedResource {
    /// Its id in the registry.
    pub id: u64,
    /// Its kind.
    pub kind: ResourceKind,
    /// Its label.
    pub label: String,
    /// The path of its scope from the root (`root/job/step`).
    pub scope: String,
    /// Where it was acquired.
    pub site: Site,
    /// How long it has been alive (JSON: `age_ms`).
    #[serde(with = "crate::leak::duration_ms", rename = "age_ms")]
    pub age: Duration,
    /// Its path, for files, temp files and dirs, locks (a child's: its program).
    pub path: Option<PathBuf>,
    /// A child's pid (JSON: absent for other kinds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// A child's process group (it leads its own: the same as its pid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pgid: Option<u32>,
    /// A child's cgroup, under the cgroup containment tier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<PathBuf>,
    /// A child already reaped (its guard holds the exit status): its pid may name
    /// another process now (JSON: absent when false).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reaped: bool,
}

/// A child process of the inspected process.
///
/// ```
/// let c: tokio_custodian::InspectedChild =
///     serde_json::from_str(r#"{"pid":7,"pgid":7,"cmdline":"sleep 9","resource":3}"#).unwrap();
/// assert_eq!((c.cmdline.as_str(), c.resource), ("sleep 9", Some(3)));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct InspectedChild {
    /// Its pid.
    pub pid: u32,
    /// Its process group.
    pub pgid: u32,
    /// Its command line.
    pub cmdline: String,
    /// The id of the live resource it is (a managed child); `None` for a child custodian
    /// does not manage.
    #[serde(default)]
    pub resource: Option<u64>,
}

impl Inspection {
    /// Takes the snapshot. Blocking (reads `/proc`); the registry's shards are read one
    /// at a time, as `Supervisor::live` does.
    pub(crate) fn of(inner: &Inner, socket: PathBuf, uptime: Duration) -> Inspection {
        let mut live: Vec<InspectedResource> = Vec::new();
        let mut scopes = BTreeMap::new();
        let mut tree = Scopes::default();
        let mut live_total = 0;
        for e in inner.registry.map.iter() {
            live_total += 1;
            let scope = e.scope.path();
            *scopes.entry(scope.clone()).or_insert(0) += 1;
            tree.add(&e.scope);
            if live.len() < MAX_LIVE {
                // Lock-free (see `Reclaim::process`): we hold a shard's read lock.
                let process = e.reclaim.process();
                let process = process.as_ref();
                live.push(InspectedResource {
                    id: e.key().get(),
                    kind: e.kind,
                    label: e.label.to_string(),
                    scope,
                    site: e.site.into(),
                    age: e.born.elapsed(),
                    path: e.path.as_deref().map(Into::into),
                    pid: process.map(|p| p.pid),
                    pgid: process.and_then(|p| p.pgid),
                    cgroup: process.and_then(|p| p.cgroup.clone()),
                    reaped: process.is_some_and(|p| p.reaped),
                });
            }
        }
        live.sort_unstable_by_key(|r| r.id);
        let state = if inner.done.is_cancelled() {
            "shut_down"
        } else if inner.is_shutting_down() {
            "shutting_down"
        } else if inner.drain.is_draining() {
            "draining"
        } else {
            "running"
        };
        let mut stats = inner.records.stats.snapshot();
        stats.quotas = inner.quotas.as_ref().map(|q| q.usage()).unwrap_or_default();
        // A direct child is a managed one's only if an unreaped entry names its pid: the
        // pid cannot be another process's until that reap.
        let managed: HashMap<u32, u64> = live
            .iter()
            .filter(|r| r.kind == ResourceKind::Child && !r.reaped)
            .filter_map(|r| Some((r.pid?, r.id)))
            .collect();
        let me = std::process::id();
        let children = crate::sys::procfs::children_of(me, |_| false)
            .unwrap_or_default()
            .into_iter()
            .take(MAX_CHILDREN)
            .map(|p| InspectedChild {
                pid: p.pid,
                pgid: p.pgid,
                cmdline: cmdline(p.pid),
                resource: managed.get(&p.pid).copied(),
            })
            .collect();
        Inspection {
            pid: me,
            temp_root: inner.temp_root.path().to_path_buf(),
            socket,
            uptime,
            state: state.to_owned(),
            stats,
            live_total,
            live,
            scopes,
            scope_tree: tree.tree(),
            pending_cleanups: inner.pending_cleanups(),
            cleanups_in_flight: inner.cleanups.len(),
            scopes_running: inner.scopes.len(),
            children,
        }
    }
}

fn cmdline(pid: u32) -> String {
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(b) if !b.is_empty() => {
            String::from_utf8_lossy(b.strip_suffix(b"\0").unwrap_or(&b)).replace('\0', " ")
        }
        _ => String::new(),
    }
}
