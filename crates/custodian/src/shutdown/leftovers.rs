//! Phase 4 of a graceful shutdown: releasing what is still registered, newest first,
//! one record per leftover; long runs of temp files split into chunks released on
//! several threads at once.
//!
//! Why several threads: a temp file's release is one `close`, one `statat` (the
//! identity check: the name must still be the inode custodian created) and one
//! `unlinkat`, about 5 µs of system calls, where the bookkeeping is well under 1 µs.
//! The closes and the checks run in parallel; the unlinks serialise on the root
//! directory's lock, but the inode's eviction after it does not. Temp files' releases
//! are independent of each other (each its own fd and name), so within a run of them
//! the order does not matter. Everything else is released one at a time, in order, on
//! the shutdown task, and a run ends before what follows it starts.
//!
//! Deterministic: a chunk is a contiguous slice of the newest-first list, and the
//! chunks' records, paths and clean-ups are appended in chunk order, so the report is
//! the same whichever thread finishes first. Exactly once: the registry's removal
//! decides, on every thread (a guard dropped meanwhile on another thread either
//! removes the entry first, and shutdown finds nothing, or finds it gone).

use std::ops::Range;
use std::sync::{Arc, OnceLock};

use crate::id::ResourceId;
use crate::inner::{Inner, Listing, Released};
use crate::kind::{ReleasePath, ResourceKind};
use crate::leak::Record;

/// A leftover: its id, and its kind (which runs may be split).
pub(super) type Leftover = (ResourceId, ResourceKind);

/// Fewest temp files per chunk: a chunk handed to another thread must be worth the
/// hand-off (a wake-up of a pool thread, tens of µs) at about 5 µs per file.
const MIN_CHUNK: usize = 256;

/// Most threads one run is split over: the unlinks serialise on the root directory's
/// lock, so more would mostly wait for it.
const MAX_THREADS: usize = 4;

/// What releases produced, in release order (newest first).
pub(super) struct Outcome {
    /// Records in chunks, as released (never copied from one into another): a split
    /// run adds the other threads' chunks after the one being filled.
    done: Vec<Vec<Record>>,
    filling: Vec<Record>,
    paths: Vec<ReleasePath>,
    /// Clean-ups left to run (none for a temp file whose removal went fine).
    cleanups: Vec<Released>,
}

impl Outcome {
    fn with_capacity(n: usize) -> Outcome {
        Outcome {
            done: Vec::new(),
            filling: Vec::with_capacity(n),
            paths: Vec::with_capacity(n),
            cleanups: Vec::new(),
        }
    }

    fn append(&mut self, later: Outcome) {
        let (records, paths, cleanups) = later.into_parts();
        self.done.push(std::mem::take(&mut self.filling));
        self.done.extend(records);
        self.paths.extend(paths);
        self.cleanups.extend(cleanups);
    }

    /// The records (in chunks, in order), their release paths and the clean-ups left.
    pub(super) fn into_parts(mut self) -> (Vec<Vec<Record>>, Vec<ReleasePath>, Vec<Released>) {
        self.done.push(self.filling);
        (self.done, self.paths, self.cleanups)
    }
}

/// Releases `leftovers` (newest first) for a graceful shutdown; see the module's notes.
pub(super) async fn release_graceful(inner: &Arc<Inner>, leftovers: Vec<Leftover>) -> Outcome {
    let mut out = Outcome::with_capacity(leftovers.len());
    let mut listing = Listing::new();
    let threads = threads();
    // Shared with the chunks released on other threads.
    let all: Arc<[Leftover]> = leftovers.into();
    let mut start = 0;
    while start < all.len() {
        let run = start..run_end(&all, start);
        start = run.end;
        let chunks = if all[run.start].1 == ResourceKind::TempFile {
            threads.min(run.len() / MIN_CHUNK)
        } else {
            1
        };
        if chunks > 1 {
            release_split(inner, &all, run, chunks, &mut listing, &mut out).await;
        } else {
            release_run(inner, &all[run], &mut listing, &mut out);
        }
    }
    out
}

/// The end of the run that begins at `start`: temp files, or anything else.
fn run_end(all: &[Leftover], start: usize) -> usize {
    let temp = |(_, kind): &Leftover| *kind == ResourceKind::TempFile;
    let first = temp(&all[start]);
    all[start..]
        .iter()
        .position(|l| temp(l) != first)
        .map_or(all.len(), |n| start + n)
}

/// Releases `ids` in order on this thread, appending to `out`.
fn release_run(inner: &Inner, ids: &[Leftover], listing: &mut Listing, out: &mut Outcome) {
    for &(id, _) in ids {
        let Some((cleanup, path)) = inner.release_for_shutdown(id, listing, &mut out.filling)
        else {
            // Released by someone else meanwhile (a guard's drop, a scope's sweep).
            continue;
        };
        out.cleanups.extend(cleanup);
        out.paths.push(path);
    }
}

/// Releases the run `run` of `all` in `chunks` chunks: the older ones on the blocking
/// pool, the newest here meanwhile; then appends them in order.
async fn release_split(
    inner: &Arc<Inner>,
    all: &Arc<[Leftover]>,
    run: Range<usize>,
    chunks: usize,
    listing: &mut Listing,
    out: &mut Outcome,
) {
    let size = run.len().div_ceil(chunks);
    let first = run.start..run.start + size;
    // The chunks' events (a leak's warning each) go where this task's would: to its
    // subscriber and span, as if released here (a pool thread has neither).
    let dispatch = tracing::dispatcher::get_default(Clone::clone);
    let span = tracing::Span::current();
    let others: Vec<_> = (first.end..run.end)
        .step_by(size)
        .map(|s| {
            let range = s..(s + size).min(run.end);
            let (inner, all, mut listing) = (inner.clone(), all.clone(), listing.fork());
            let (dispatch, span) = (dispatch.clone(), span.clone());
            let r = range.clone();
            let job = tokio::task::spawn_blocking(move || {
                let mut out = Outcome::with_capacity(r.len());
                tracing::dispatcher::with_default(&dispatch, || {
                    span.in_scope(|| release_run(&inner, &all[r], &mut listing, &mut out));
                });
                out
            });
            (range, job)
        })
        .collect();
    release_run(inner, &all[first], listing, out);
    for (range, job) in others {
        match job.await {
            Ok(chunk) => out.append(chunk),
            // As if it had panicked here, on the shutdown task (the serial release's way).
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // The pool is shutting down and dropped the chunk unrun (a started blocking
            // task always finishes): nothing of it was released, so release it here.
            Err(_) => release_run(inner, &all[range], listing, out),
        }
    }
}

/// The threads a run may be split over: the machine's, at most [`MAX_THREADS`] (read
/// once: `available_parallelism` reads the cgroup's quota files).
fn threads() -> usize {
    static N: OnceLock<usize> = OnceLock::new();
    *N.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(MAX_THREADS)
    })
}

/// `leftovers` (distinct ids), newest first. Ids are made in sequence, so the
/// registry's leftovers mostly fill a range: within 4 times their number they are placed
/// by offset in one pass (linear, a byte per id of the range), otherwise sorted.
pub(super) fn newest_first(mut leftovers: Vec<Leftover>) -> Vec<Leftover> {
    let mut ids = leftovers.iter().map(|(id, _)| id.get());
    let Some(first) = ids.next() else {
        return leftovers;
    };
    let (min, max) = ids.fold((first, first), |(lo, hi), n| (lo.min(n), hi.max(n)));
    let span = max - min;
    match usize::try_from(span) {
        Ok(span) if span / 4 < leftovers.len() => {
            let mut seen: Vec<Option<ResourceKind>> = vec![None; span + 1];
            for &(id, kind) in &leftovers {
                // In `0..=span`: between `min` and `max`.
                seen[(id.get() - min) as usize] = Some(kind);
            }
            leftovers.clear();
            leftovers.extend(
                (0..=span)
                    .rev()
                    .filter_map(|i| seen[i].map(|k| (ResourceId::new(min + i as u64), k))),
            );
        }
        _ => leftovers.sort_unstable_by_key(|l| std::cmp::Reverse(l.0)),
    }
    leftovers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_first_orders_dense_and_sparse_ids_alike() {
        let kinds = [ResourceKind::TempFile, ResourceKind::Child];
        let ids = |v: &[u64]| {
            v.iter()
                .map(|&n| (ResourceId::new(n), kinds[(n % 2) as usize]))
                .collect::<Vec<_>>()
        };
        for v in [
            vec![],
            vec![7],
            vec![3, 9, 4, 5, 8, 6, 7],
            vec![1, 1_000_000, 17],
            vec![u64::MAX, 0, 5],
            (100..10_100).rev().step_by(3).collect(),
        ] {
            let mut want = ids(&v);
            want.sort_unstable_by_key(|l| std::cmp::Reverse(l.0));
            let mut shuffled = ids(&v);
            shuffled.rotate_left(v.len() / 2);
            assert_eq!(newest_first(shuffled), want, "{v:?}");
        }
    }

    #[test]
    fn runs_split_temp_files_from_the_rest() {
        let l = |kinds: &[ResourceKind]| {
            kinds
                .iter()
                .enumerate()
                .map(|(i, &k)| (ResourceId::new(i as u64), k))
                .collect::<Vec<_>>()
        };
        let (t, c) = (ResourceKind::TempFile, ResourceKind::Child);
        let all = l(&[t, t, c, c, t, c]);
        assert_eq!(run_end(&all, 0), 2);
        assert_eq!(run_end(&all, 2), 4);
        assert_eq!(run_end(&all, 4), 5);
        assert_eq!(run_end(&all, 5), 6);
    }
}
