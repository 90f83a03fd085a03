//! A loom model of the registry's release protocol: registration, a guard's release, a
//! scope's sweep, shutdown's sweep and a transfer between scopes, on 2–3 threads, under
//! every interleaving loom explores.
//!
//! The model mirrors `Inner::register` / `Inner::release` / `Inner::release_in`
//! (`inner/mod.rs`, `inner/release.rs`), `ScopeShared::{count_in, registered, close,
//! adopt}` (`registry/scope_state.rs`), `Registration::transfer` and the stats gauges
//! step for step, with loom's mutexes and atomics standing in for std's and one
//! mutex-guarded map standing in for a `DashMap` shard (a shard is a lock around a map).
//! It is a model, not the code itself: `DashMap` and Tokio cannot run under loom. What it
//! proves is the protocol:
//! - whoever *removes the entry* releases it, so every registered resource is reclaimed
//!   exactly once, whatever races (a refused registration is reclaimed by the registrar);
//! - counts are raised before the entry is published, so no release ever drives a `live`
//!   gauge below zero (the old order, insert first, is caught: see the `should_panic`
//!   test);
//! - a scope keeps no list of its ids: its close sets `closed`, then reads its `live`
//!   count and filters the map only when something is left, while a registration raises
//!   `live`, publishes, then reads `closed`. Either the registration sees `closed` (and
//!   releases what it published) or the close sees the count and finds the entry: no
//!   entry is ever left registered to a closed scope (without the ordering, loom finds
//!   one: see the second `should_panic` test);
//! - a transfer moves the scope gauges under the shard lock, so they never go negative
//!   either, a scope's sweep never releases a resource that moved to another scope, and a
//!   transfer that fails has left the resource where it was.
//!
//! The code orders the store-then-load on each side with `SeqCst` accesses (their single
//! total order forbids both sides reading the old value). Loom models a `SeqCst` access
//! as `AcqRel` (tokio-rs/loom#180) but models `SeqCst` fences, so the model puts a
//! `SeqCst` fence between each side's store and load: the same guarantee, checkable.

use std::collections::HashMap;

use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering, fence};
use loom::sync::{Arc, Mutex};
use loom::thread;

/// Which order `register` uses: the fixed one (count, then publish, then a fence before
/// reading `closed`), the old one (publish, then count), or the fixed one without the
/// fences (what a `SeqCst` access is to loom).
#[derive(Clone, Copy, PartialEq)]
enum Order {
    CountThenPublish,
    PublishThenCount,
    NoFence,
}

struct Scope {
    /// `ScopeShared::closed`.
    closed: AtomicBool,
    /// `ScopeShared::live`.
    live: AtomicUsize,
}

impl Scope {
    fn new() -> Arc<Self> {
        Arc::new(Scope {
            closed: AtomicBool::new(false),
            live: AtomicUsize::new(0),
        })
    }
}

struct Entry {
    scope: Arc<Scope>,
    reclaimed: Arc<AtomicUsize>,
}

struct Core {
    map: Mutex<HashMap<u64, Entry>>,
    created: AtomicUsize,
    released: AtomicUsize,
    live: AtomicUsize,
    shutting_down: AtomicBool,
    order: Order,
}

/// A gauge going down; panics if it would go below zero (a wrapped `live`).
fn dec(gauge: &AtomicUsize, what: &str) {
    let prev = gauge.fetch_sub(1, Ordering::Relaxed);
    assert!(prev > 0, "{what} went below zero");
}

impl Core {
    fn new(order: Order) -> Arc<Self> {
        Arc::new(Core {
            map: Mutex::new(HashMap::new()),
            created: AtomicUsize::new(0),
            released: AtomicUsize::new(0),
            live: AtomicUsize::new(0),
            shutting_down: AtomicBool::new(false),
            order,
        })
    }

    fn count(&self, scope: &Scope) {
        self.created.fetch_add(1, Ordering::Relaxed);
        self.live.fetch_add(1, Ordering::Relaxed);
        scope.live.fetch_add(1, Ordering::Relaxed);
    }

    /// `Inner::register`: `Ok` if registered, `Err` if refused (and reclaimed here).
    fn register(&self, scope: &Arc<Scope>, id: u64, reclaimed: &Arc<AtomicUsize>) -> bool {
        if self.order != Order::PublishThenCount {
            self.count(scope);
        }
        let entry = Entry {
            scope: scope.clone(),
            reclaimed: reclaimed.clone(),
        };
        self.map.lock().unwrap().insert(id, entry);
        if self.order == Order::PublishThenCount {
            self.count(scope);
        }
        let refused = self.shutting_down.load(Ordering::SeqCst) || !self.registered(scope);
        if refused {
            self.release(id);
        }
        !refused
    }

    fn retire(&self, e: Entry) {
        self.released.fetch_add(1, Ordering::Relaxed);
        dec(&self.live, "live");
        dec(&e.scope.live, "scope live");
        e.reclaimed.fetch_add(1, Ordering::Relaxed);
    }

    /// `Inner::release`: a guard's drop or close.
    fn release(&self, id: u64) {
        let e = self.map.lock().unwrap().remove(&id);
        if let Some(e) = e {
            self.retire(e);
        }
    }

    /// `Inner::release_in`: only if still registered to `scope`.
    fn release_in(&self, id: u64, scope: &Arc<Scope>) {
        let e = {
            let mut map = self.map.lock().unwrap();
            match map.get(&id) {
                Some(e) if Arc::ptr_eq(&e.scope, scope) => map.remove(&id),
                _ => None,
            }
        };
        if let Some(e) = e {
            self.retire(e);
        }
    }

    /// `ScopeShared::registered`: after publishing, is the scope still open?
    fn registered(&self, scope: &Scope) -> bool {
        if self.order != Order::NoFence {
            fence(Ordering::SeqCst);
        }
        !scope.closed.load(Ordering::Relaxed)
    }

    /// `ScopeShared::close` then the sweep: close, then, only if the scope's count says
    /// something is left, filter the map by scope and release what is found, newest
    /// first.
    fn sweep(&self, scope: &Arc<Scope>) {
        scope.closed.store(true, Ordering::Relaxed);
        if self.order != Order::NoFence {
            fence(Ordering::SeqCst);
        }
        if scope.live.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut ids: Vec<u64> = {
            let map = self.map.lock().unwrap();
            map.iter()
                .filter(|(_, e)| Arc::ptr_eq(&e.scope, scope))
                .map(|(id, _)| *id)
                .collect()
        };
        ids.sort_unstable_by(|a, b| b.cmp(a));
        for id in ids {
            self.release_in(id, scope);
        }
    }

    /// No entry is registered to a closed scope (checked once every thread is done).
    fn none_left_in_closed_scopes(&self) {
        let map = self.map.lock().unwrap();
        assert!(
            map.values()
                .all(|e| !e.scope.closed.load(Ordering::Relaxed)),
            "an entry was left in a closed scope"
        );
    }

    /// Shutdown's sweep: refuse, then release every entry.
    fn shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        let ids: Vec<u64> = self.map.lock().unwrap().keys().copied().collect();
        for id in ids {
            self.release(id);
        }
    }

    /// `Registration::transfer` / `ScopeShared::adopt`: refused by a closed target; else
    /// the target's count is raised, the entry moves (the gauges move while the shard
    /// is locked), and the target is read again: closed meanwhile, the resource moved
    /// and the target's end releases it (whoever removes the entry first), which is a
    /// transfer that succeeded.
    fn transfer(&self, id: u64, to: &Arc<Scope>) -> bool {
        if to.closed.load(Ordering::Acquire) {
            return false;
        }
        to.live.fetch_add(1, Ordering::Relaxed);
        {
            let mut map = self.map.lock().unwrap();
            let Some(e) = map.get_mut(&id) else {
                dec(&to.live, "target scope live");
                return false;
            };
            let old = std::mem::replace(&mut e.scope, to.clone());
            dec(&old.live, "old scope live");
        }
        if !self.registered(to) {
            self.release_in(id, to);
        }
        true
    }

    fn check_quiescent(&self, scopes: &[&Arc<Scope>]) {
        assert!(self.map.lock().unwrap().is_empty());
        assert_eq!(self.live.load(Ordering::Relaxed), 0);
        assert_eq!(
            self.created.load(Ordering::Relaxed),
            self.released.load(Ordering::Relaxed)
        );
        for s in scopes {
            assert_eq!(s.live.load(Ordering::Relaxed), 0);
        }
    }
}

/// A resource registered and dropped by its guard, while its scope ends and shutdown
/// sweeps: reclaimed exactly once, no gauge below zero.
fn register_drop_vs_sweep_vs_shutdown(order: Order) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b.check(move || {
        let core = Core::new(order);
        let scope = Scope::new();
        let reclaimed = Arc::new(AtomicUsize::new(0));
        let guard = {
            let (core, scope, reclaimed) = (core.clone(), scope.clone(), reclaimed.clone());
            thread::spawn(move || {
                if core.register(&scope, 1, &reclaimed) {
                    core.release(1); // the guard's drop
                }
            })
        };
        let ender = {
            let (core, scope) = (core.clone(), scope.clone());
            thread::spawn(move || core.sweep(&scope))
        };
        core.shutdown();
        guard.join().unwrap();
        ender.join().unwrap();
        core.none_left_in_closed_scopes();
        // Whatever happened last, the sweeps have run: nothing may be left.
        core.sweep(&scope);
        core.shutdown();
        assert_eq!(
            reclaimed.load(Ordering::Relaxed),
            1,
            "reclaimed exactly once"
        );
        core.check_quiescent(&[&scope]);
    });
}

#[test]
fn every_resource_is_reclaimed_exactly_once_and_counts_never_go_negative() {
    register_drop_vs_sweep_vs_shutdown(Order::CountThenPublish);
}

/// The model can fail: with the old order (publish, then count) loom finds the
/// interleaving where shutdown releases the entry before it is counted.
#[test]
#[should_panic(expected = "went below zero")]
fn the_old_order_drives_live_below_zero() {
    register_drop_vs_sweep_vs_shutdown(Order::PublishThenCount);
}

/// A resource registered (its guard kept) while its scope closes: either the close
/// finds it or the registration sees the close and releases it; never left registered
/// to the closed scope.
fn register_vs_close(order: Order) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b.check(move || {
        let core = Core::new(order);
        let scope = Scope::new();
        let reclaimed = Arc::new(AtomicUsize::new(0));
        let registrar = {
            let (core, scope, reclaimed) = (core.clone(), scope.clone(), reclaimed.clone());
            thread::spawn(move || core.register(&scope, 1, &reclaimed))
        };
        core.sweep(&scope);
        registrar.join().unwrap();
        core.none_left_in_closed_scopes();
        assert_eq!(reclaimed.load(Ordering::Relaxed), 1, "swept or refused");
        core.check_quiescent(&[&scope]);
    });
}

#[test]
fn a_registration_racing_its_scopes_close_is_swept_or_refused() {
    register_vs_close(Order::CountThenPublish);
}

/// The model can fail: without the fences (what a `SeqCst` access is to loom), the
/// registration reads `closed` as still open while the close reads the count as zero,
/// and the entry stays registered to a closed scope that nobody sweeps again.
#[test]
#[should_panic(expected = "left in a closed scope")]
fn without_the_ordering_an_entry_is_left_in_a_closed_scope() {
    register_vs_close(Order::NoFence);
}

/// A transfer into a scope while that scope ends: reclaimed exactly once; a transfer
/// that fails left the resource in its first scope, unreleased.
#[test]
fn a_transfer_racing_the_target_scopes_end_moves_or_leaves_it_in_place() {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b.check(|| {
        let core = Core::new(Order::CountThenPublish);
        let (from, to) = (Scope::new(), Scope::new());
        let reclaimed = Arc::new(AtomicUsize::new(0));
        assert!(core.register(&from, 1, &reclaimed));
        let mover = {
            let (core, to) = (core.clone(), to.clone());
            thread::spawn(move || core.transfer(1, &to))
        };
        core.sweep(&to);
        let moved = mover.join().unwrap();
        core.none_left_in_closed_scopes();
        if !moved {
            assert_eq!(
                reclaimed.load(Ordering::Relaxed),
                0,
                "a failed transfer released it"
            );
            assert_eq!(
                from.live.load(Ordering::Relaxed),
                1,
                "still in its first scope"
            );
        }
        core.release(1); // the guard's drop (nothing if the target's end got it)
        core.sweep(&from);
        assert_eq!(
            reclaimed.load(Ordering::Relaxed),
            1,
            "reclaimed exactly once"
        );
        core.check_quiescent(&[&from, &to]);
    });
}

/// A resource transferred from its scope to another while the first scope ends and a
/// guard drops it: reclaimed exactly once, by whoever removes the entry; the first
/// scope's sweep never takes a resource that has moved.
#[test]
fn a_transfer_racing_a_sweep_and_a_drop_reclaims_exactly_once() {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b.check(|| {
        let core = Core::new(Order::CountThenPublish);
        let (from, to) = (Scope::new(), Scope::new());
        let reclaimed = Arc::new(AtomicUsize::new(0));
        assert!(core.register(&from, 1, &reclaimed));
        let mover = {
            let (core, to) = (core.clone(), to.clone());
            thread::spawn(move || core.transfer(1, &to))
        };
        let ender = {
            let (core, from) = (core.clone(), from.clone());
            thread::spawn(move || core.sweep(&from))
        };
        let moved = mover.join().unwrap();
        ender.join().unwrap();
        if moved {
            // It left `from` before the sweep took it: still live, in `to`.
            assert_eq!(reclaimed.load(Ordering::Relaxed), 0);
            assert_eq!(to.live.load(Ordering::Relaxed), 1);
        }
        core.release(1); // the guard's drop (nothing if the sweep got it)
        core.sweep(&to);
        assert_eq!(
            reclaimed.load(Ordering::Relaxed),
            1,
            "reclaimed exactly once"
        );
        core.check_quiescent(&[&from, &to]);
    });
}
