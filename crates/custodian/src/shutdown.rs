//! Shutdown: its phases, and forcing it.
//!
//! The builder's grace is the **total** bound of a graceful shutdown: one deadline,
//! counted from phase 1, cuts every graceful wait (hooks whatever their budgets, scopes,
//! clean-ups, a child's own stop grace) by firing `Inner::cut`, as a forced request does
//! at once. After the cut, shutdown waits at most [`SWEEP_WAIT`] for cut-off scopes to
//! sweep and [`AFTER_CUT`] for clean-ups (SIGKILLed children reaped, last retries).
//!
//! Phases, each timed in the report:
//! 0. *drain* (only with `Builder::drain`, see `crate::drain`): the root scope refuses
//!    new work while running top-level scopes finish on their own, within its budget
//!    and the grace;
//! 1. *refuse and cancel*: new acquisitions are refused; the root token is cancelled
//!    with [`CancelReason::Shutdown`] (or `ForcedShutdown`);
//! 2. *run hooks*: last registered first, each within its budget (cut at the deadline,
//!    skipped when forced);
//! 3. *wait for scopes*: until every scope and scoped task has ended, or the cut (the
//!    deadline raises the reason to `Deadline`); scopes cut off then sweep their own;
//! 4. *release remaining*: everything still registered, newest first, by the path its
//!    scope would give it (`ScopeShared::shutdown_path`); graceful: through `reclaim`
//!    (long runs of temp files in chunks on several threads, see [`leftovers`]),
//!    forced: through `reclaim_now` on the blocking pool; then wait for the clean-ups until
//!    the cut, and [`AFTER_CUT`] after it;
//! 5. *remove temp root*.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::hook::run_hooks;
use crate::inner::{Inner, Listing};
use crate::kind::{CancelReason, ReleasePath};
use crate::leak::{LiveResource, Record};
use crate::report::{Phase, ShutdownCause, ShutdownReport};

mod leftovers;
use leftovers::newest_first;

/// The one shutdown run of `inner`, begun by a call.
pub(crate) async fn shutdown_once(inner: &Arc<Inner>) -> ShutdownReport {
    shutdown_once_by(inner, ShutdownCause::Call).await
}

/// The one shutdown run of `inner`: started by the first request (whose `cause` the
/// report names), as its own task, so that a caller that stops waiting (its future
/// dropped) does not cancel it; every later request waits for the same run and gets the
/// same report.
pub(crate) async fn shutdown_once_by(inner: &Arc<Inner>, cause: ShutdownCause) -> ShutdownReport {
    let first = cause.clone();
    let mut rx = inner
        .shutdown_run
        .get_or_init(|| {
            let (tx, rx) = tokio::sync::watch::channel(false);
            let inner = inner.clone();
            drop(inner.handle.clone().spawn(async move {
                let report = run(inner.clone(), first).await;
                // Stored once; every waiter clones its own copy from here (one copy
                // per caller: a report of 10k leftovers is 10k records).
                let _ = inner.report.set(report);
                // After the report is stored: `wait_for_shutdown` reads it.
                inner.done.cancel();
                // Before the waiters wake: a caller that drops its last handle right
                // after `shutdown()` returns must find the supervisor gone, fds closed.
                drop(inner);
                let _ = tx.send(true);
            }));
            rx
        })
        .clone();
    let finished = rx.wait_for(|done| *done).await.is_ok();
    match inner.report.get() {
        Some(report) if finished => report.clone(),
        // The runtime dropped the task unrun (it is shutting down): run it here (or
        // take the report the task stored before it was dropped).
        _ => {
            let report = inner
                .report
                .get_or_init(|| run(inner.clone(), cause))
                .await
                .clone();
            inner.done.cancel();
            report
        }
    }
}

pub(crate) async fn run(inner: Arc<Inner>, began_by: ShutdownCause) -> ShutdownReport {
    let start = Instant::now();
    tracing::info!(began_by = %began_by, "shutdown: begun");
    let grace = inner.config.grace;
    let mut phases = Vec::new();
    let mut phase = |name: &str, since: Instant| {
        phases.push(Phase {
            name: name.to_owned(),
            took: since.elapsed(),
        });
        Instant::now()
    };
    // The grace bounds the whole graceful shutdown, the drain included: hooks, scopes
    // and clean-ups all end by this instant. `Duration::MAX` means "never cut": saturate
    // instead of panicking.
    let deadline = saturating_deadline(grace);
    // One watcher cuts every graceful wait at the deadline: the drain, hooks (whatever
    // their own budgets), scopes and clean-ups alike.
    let watcher = {
        let inner = inner.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(deadline).await;
            cut(&inner, CancelReason::Deadline);
        })
    };
    let t = Instant::now();
    let drain = crate::drain::run(&inner, saturating_deadline(inner.config.drain)).await;
    let t = if drain.is_some() {
        phase("drain", t)
    } else {
        t
    };
    tracing::info!(
        forced = inner.is_forced(),
        "shutdown: refusing new acquisitions"
    );
    inner.begin_shutdown();
    let reason = if inner.is_forced() {
        CancelReason::ForcedShutdown
    } else {
        CancelReason::Shutdown
    };
    inner.root_scope.cancel(reason);
    let t = phase("refuse and cancel", t);

    let hooks = run_hooks(&inner).await;
    let t = phase("run hooks", t);

    inner.scopes.close();
    // Finished in time unless some were still running when `cut` fired: once cut, they
    // end at once, and may do so before this task wakes up.
    tokio::select! {
        biased;
        () = inner.scopes.wait() => {}
        () = inner.cut.cancelled() => {}
    }
    let scopes_finished = inner.scopes_cut_off() == 0;
    if !scopes_finished {
        tracing::warn!(
            running = inner.scopes.len(),
            "shutdown: scopes cut off (grace period over, or forced)"
        );
    }
    // Scopes cut off drop their bodies and sweep as soon as they are polled. Let them:
    // what a scope releases itself gets the scope's own path, and what shutdown reclaims
    // below gets the path the scope would have given it (`ScopeShared::shutdown_path`).
    // A scope's token of `scopes` goes once it has swept (see `scope::run`).
    if !scopes_finished {
        let _ = tokio::time::timeout(SWEEP_WAIT, inner.scopes.wait()).await;
    }
    let t = phase("wait for scopes", t);

    // What is left, with its kind: runs of temp files may be released on several
    // threads (see `leftovers`). Walked by a `retain` that keeps everything: `iter`
    // clones a reference to its shard's guard for every entry (about 75 instructions
    // each), `retain` walks each shard's table under one lock.
    let mut left = Vec::with_capacity(inner.registry.map.len());
    inner.registry.map.retain(|id, e| {
        left.push((*id, e.kind));
        true
    });
    let leftovers = newest_first(left);
    // One record per leftover, made from its entry as it is released (no snapshot of
    // the whole registry beforehand): what was released by someone else in between
    // (a scope's own sweep) is not a leftover.
    let (records, paths): (Vec<Vec<Record>>, Vec<ReleasePath>) = if inner.is_forced() {
        let i = inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut listing = Listing::new();
            let (mut records, mut paths) = (
                Vec::with_capacity(leftovers.len()),
                Vec::with_capacity(leftovers.len()),
            );
            for (id, _) in leftovers {
                if let Some(path) = i.release_now_recorded(id, &mut listing, &mut records) {
                    paths.push(path);
                }
            }
            (vec![records], paths)
        })
        .await
        .unwrap_or_default()
    } else {
        let out = leftovers::release_graceful(&inner, leftovers).await;
        let (records, paths, cleanups) = out.into_parts();
        // Children stopped before dirs are removed (see `clean_up_sweep`).
        crate::inner::clean_up_sweep(&inner, cleanups);
        (records, paths)
    };
    // The records of all leftovers in one block (a chunk per thread that released
    // them), shared by both lists, the leak records and every caller's report.
    let released: Vec<(LiveResource, ReleasePath)> = LiveResource::all_chunks(records)
        .into_iter()
        .zip(paths)
        .collect();
    inner.note_shutdown_leaks(&released);
    // Mostly leaks (the root's own): sized for all.
    let (mut alive_at_shutdown, mut cut_off) = (Vec::with_capacity(released.len()), Vec::new());
    // Released newest first: walked backwards, both lists come out in id order.
    for (r, path) in released.into_iter().rev() {
        if path.is_leak() {
            alive_at_shutdown.push(r);
        } else {
            cut_off.push(r);
        }
    }
    inner.cleanups.close();
    // Graceful: clean-ups (a child's TERM and grace, a recursive removal, a retry) run
    // until the deadline; then `cut` makes children go straight to SIGKILL and pending
    // retries make their last attempt, and what that takes is bounded by `AFTER_CUT`.
    let mut cleanups_finished = tokio::select! {
        biased;
        () = inner.cleanups.wait() => true,
        () = inner.cut.cancelled() => false,
    };
    if !cleanups_finished {
        cleanups_finished = tokio::time::timeout(AFTER_CUT, inner.cleanups.wait())
            .await
            .is_ok();
    }
    // Under the child-subreaper opt-in: what was adopted after its child's release.
    if let Some(r) = inner.reaper.clone() {
        let cut = inner.cut.clone();
        let stray = crate::reaper::STRAY_GRACE;
        let stopped = tokio::task::spawn_blocking(move || r.stop(None, stray, Some(&cut))).await;
        if let Ok(Err(e)) = stopped {
            tracing::warn!(error = %e, "shutdown: adopted processes not stopped");
        }
    }
    // The cgroup tier: every child's cgroup is gone with its release; now the
    // supervisor's (blocking: one read and one `rmdir`, and what escaped into it killed
    // with a wait of at most 200 ms).
    let cgroup_error = inner.containment.remove().err().map(|e| e.to_string());
    watcher.abort();
    let t = phase("release remaining", t);

    let i = inner.clone();
    let removed = match tokio::task::spawn_blocking(move || i.remove_temp_root()).await {
        Ok(r) => r,
        // The blocking pool is shutting down and dropped the job unrun (its flag is
        // still unset): the runtime is going away, so do it here.
        Err(_) => inner.remove_temp_root(),
    };
    let temp_root_error = removed.and_then(Result::err).map(|e| e.to_string());
    if temp_root_error.is_some() {
        // The journal outlives the root it records: kept for the next sweep.
        crate::emergency::keep_journal(&inner);
    }
    phase("remove temp root", t);

    let report = ShutdownReport {
        began_by,
        took: start.elapsed(),
        phases,
        reason: inner.root_scope.reason().unwrap_or(reason),
        forced: inner.is_forced(),
        hooks,
        scopes_finished,
        cleanups_finished,
        alive_at_shutdown,
        cut_off,
        leaks: inner.leak_records(),
        failures: inner.failure_records(),
        stats: {
            let mut s = inner.records.stats.snapshot();
            s.quotas = inner.quotas.as_ref().map(|q| q.usage()).unwrap_or_default();
            s
        },
        temp_root: inner.temp_root.path().to_path_buf(),
        temp_root_error,
        adopted: inner.reaper.as_ref().map(|r| r.stats()).unwrap_or_default(),
        drain,
        cgroup_error,
    };
    tracing::info!(took = ?report.took, clean = report.is_clean(), forced = report.forced, "shutdown complete");
    report
}

/// How long shutdown lets scopes that were cut off sweep their own resources.
const SWEEP_WAIT: Duration = Duration::from_millis(250);

/// How long shutdown waits, after cutting, for clean-ups to finish: children killed
/// with SIGKILL and reaped, last attempts of pending retries.
const AFTER_CUT: Duration = Duration::from_secs(1);

/// `now + grace`, or a point decades away if that overflows.
pub(crate) fn saturating_deadline(grace: Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    now.checked_add(grace)
        .or_else(|| now.checked_add(Duration::from_secs(86_400 * 365 * 30)))
        .unwrap_or(now)
}

/// Stops waiting: raises the root's reason (unless forced) and fires `cut`.
fn cut(inner: &Inner, reason: CancelReason) {
    if !inner.cut.is_cancelled() {
        if !inner.is_forced() {
            inner.root_scope.raise(reason);
        }
        inner.fire_cut();
    }
}
