//! The scope tree of a snapshot, from what already exists at snapshot time: every scope
//! a live resource points to, and every scope those are nested in (each scope knows its
//! parent). Nothing is recorded when a scope is entered or left, so a running scope that
//! holds no resource, and encloses none that does, is not seen: `scopes_running` counts
//! it, the tree does not show it.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::registry::ScopeShared;

/// At most this many scopes are listed.
pub(crate) const MAX_SCOPES: usize = 10_000;

/// A scope in an [`Inspection`](crate::Inspection)'s tree: one that holds a live
/// resource, or encloses one that does. Listed parents first, depth first.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokio_custodian::Result<()> {
/// let sup = tokio_custodian::Supervisor::builder().inspect(true).start()?;
/// sup.scope("job", async |job| {
///     job.scope("step", async |step| {
///         let _t = step.temp_file().await?;
///         let socket = sup.inspect_socket().unwrap().to_path_buf();
///         let seen = tokio::task::spawn_blocking(move || tokio_custodian::inspect(&socket))
///             .await.unwrap().unwrap();
///         let names: Vec<_> = seen.scope_tree.iter().map(|s| (s.depth, s.name.as_str(), s.live)).collect();
///         assert_eq!(names, [(0, "root", 0), (1, "job", 0), (2, "step", 1)]);
///         Ok::<_, tokio_custodian::Error>(())
///     }).await?
/// }).await??;
/// # sup.shutdown().await; Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct InspectedScope {
    /// Its id (the root's is 0).
    pub id: u64,
    /// Its parent's id; `None` for the root.
    pub parent: Option<u64>,
    /// How deep it is nested (the root is 0).
    pub depth: usize,
    /// Its name.
    pub name: String,
    /// The names from the root down to it (`root/job/step`).
    pub path: String,
    /// Live resources it holds itself.
    pub live: usize,
    /// Cancelled (by itself, a parent, or shutdown).
    pub cancelled: bool,
}

/// Collects the scopes of the entries, as the registry walk hands them in.
#[derive(Default)]
pub(crate) struct Scopes(HashMap<u64, Arc<ScopeShared>>);

impl Scopes {
    /// Adds `scope` and its ancestors (a cheap clone each; nothing is locked).
    pub(crate) fn add(&mut self, scope: &Arc<ScopeShared>) {
        let mut s = Some(scope);
        while let Some(scope) = s {
            if self.0.len() >= MAX_SCOPES || self.0.contains_key(&scope.id) {
                return;
            }
            self.0.insert(scope.id, scope.clone());
            s = scope.parent();
        }
    }

    /// The tree, parents first, siblings by id.
    pub(crate) fn tree(self) -> Vec<InspectedScope> {
        let mut kids: HashMap<Option<u64>, Vec<&Arc<ScopeShared>>> = HashMap::new();
        for s in self.0.values() {
            // A parent cut off by the bound is shown as a root of its own.
            let parent = s.parent().map(|p| p.id).filter(|p| self.0.contains_key(p));
            kids.entry(parent).or_default().push(s);
        }
        kids.values_mut()
            .for_each(|v| v.sort_unstable_by_key(|s| s.id));
        let mut out = Vec::with_capacity(self.0.len());
        // Depth first with an explicit stack (a deep nesting cannot overflow ours), each
        // path made from its parent's (one walk to the root in all).
        let mut stack: Vec<(&Arc<ScopeShared>, usize, String)> = kids
            .get(&None)
            .map(|v| v.iter().rev().map(|s| (*s, 0, s.path())).collect())
            .unwrap_or_default();
        while let Some((s, depth, path)) = stack.pop() {
            if let Some(v) = kids.get(&Some(s.id)) {
                for c in v.iter().rev() {
                    stack.push((c, depth + 1, format!("{path}/{}", c.name)));
                }
            }
            out.push(InspectedScope {
                id: s.id,
                parent: s.parent().map(|p| p.id),
                depth,
                name: s.name.to_string(),
                path,
                // Relaxed: a gauge, read for display.
                live: s.live.load(std::sync::atomic::Ordering::Relaxed),
                cancelled: s.token.is_cancelled(),
            });
        }
        out
    }
}
