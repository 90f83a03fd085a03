//! The counted resource of the `review_core3_*` tests: it owns a real fd and counts its
//! reclaims and its drops in a [`Book`], so that a test can check that each resource
//! was reclaimed exactly once and dropped exactly once.

#![allow(dead_code, unreachable_pub)]

use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;

use tokio_custodian::{Cleanup, Reclaim, Registration, ResourceKind, Scope, Supervisor};

/// One slot per resource: how many times it was reclaimed, and dropped.
pub struct Book {
    pub reclaimed: Box<[AtomicU8]>,
    pub dropped: Box<[AtomicU8]>,
    pub made: AtomicUsize,
}

impl Book {
    pub fn new(n: usize) -> Arc<Book> {
        Arc::new(Book {
            reclaimed: (0..n).map(|_| AtomicU8::new(0)).collect(),
            dropped: (0..n).map(|_| AtomicU8::new(0)).collect(),
            made: AtomicUsize::new(0),
        })
    }

    /// Every resource made so far was reclaimed once and dropped once (a clean-up
    /// handed to the background by a guard dropped after shutdown may still be running:
    /// given up to 10 s).
    pub fn check(&self) -> usize {
        let made = self.made.load(Ordering::SeqCst);
        assert!(made <= self.reclaimed.len(), "book too small");
        let settled = |i: usize| {
            self.reclaimed[i].load(Ordering::SeqCst) == 1
                && self.dropped[i].load(Ordering::SeqCst) == 1
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !(0..made).all(settled) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        for i in 0..made {
            let (r, d) = (
                self.reclaimed[i].load(Ordering::SeqCst),
                self.dropped[i].load(Ordering::SeqCst),
            );
            assert_eq!((r, d), (1, 1), "resource {i}: reclaimed {r}, dropped {d}");
        }
        made
    }
}

/// How a counted resource's reclaim ends.
#[derive(Clone, Copy)]
pub enum Ends {
    Done,
    Async,
    Blocking,
    Fails,
    Panics,
}

/// A resource owning an fd, counting its reclaims and its drop.
pub struct Counted {
    pub book: Arc<Book>,
    pub i: usize,
    ends: Ends,
    _fd: OwnedFd,
}

impl Counted {
    pub fn new(book: &Arc<Book>, ends: Ends) -> Counted {
        let i = book.made.fetch_add(1, Ordering::SeqCst);
        let fd = std::fs::File::open("/dev/null").unwrap().into();
        Counted {
            book: book.clone(),
            i,
            ends,
            _fd: fd,
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.book.dropped[self.i].fetch_add(1, Ordering::SeqCst);
    }
}

impl Reclaim for Counted {
    fn reclaim(self: Box<Self>) -> Cleanup {
        self.book.reclaimed[self.i].fetch_add(1, Ordering::SeqCst);
        match self.ends {
            Ends::Done => Cleanup::Done(Ok(())),
            Ends::Async => Cleanup::Async(Box::pin(async move {
                tokio::task::yield_now().await;
                drop(self);
                Ok(())
            })),
            Ends::Blocking => {
                let mut held = Some(self);
                Cleanup::Blocking(Box::new(move || {
                    drop(held.take());
                    Ok(())
                }))
            }
            Ends::Fails => Cleanup::Done(Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "review: the clean-up fails",
            ))),
            Ends::Panics => panic!("review: a panicking reclaim"),
        }
    }

    fn reclaim_now(self: Box<Self>) -> io::Result<()> {
        self.book.reclaimed[self.i].fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

pub const KINDS: [ResourceKind; 3] = [
    ResourceKind::Lock,
    ResourceKind::AudioDecoder,
    ResourceKind::File,
];

pub fn register(s: &Scope, book: &Arc<Book>, n: usize) -> tokio_custodian::Result<Registration> {
    let ends = [Ends::Done, Ends::Async, Ends::Blocking, Ends::Fails][n % 4];
    s.register(KINDS[n % 3], "review", None, Counted::new(book, ends))
}

/// The stats agree with the book: everything made was created and released, nothing is
/// live or pending, and each kind balances.
pub fn stats_balance(sup: &Supervisor, made: usize) {
    let st = sup.stats();
    assert!(st.is_consistent(), "{st:?}");
    assert_eq!(st.live(), 0, "{st:?}");
    let mut created = 0;
    for kind in KINDS {
        let k = st.kind(kind);
        let released: u64 = k.released.values().sum();
        assert_eq!(k.created, released, "{kind:?}: {k:?}");
        created += k.created;
    }
    assert_eq!(created, made as u64, "{st:?}");
}
