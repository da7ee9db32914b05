//! [`Reader`] (std): the latest snapshot, for any thread, without locks.
//!
//! The poller stores every snapshot it takes into an `arc_swap::ArcSwap`; a `Reader`
//! loads it. Readers never touch the triple buffer or the request queue, so they cost the
//! computation nothing.

use crate::snapshot::Snapshot;
use arc_swap::{ArcSwap, Guard};
use core::fmt;
use core::ops::Deref;
use std::sync::Arc;

/// Reads the newest snapshot the poller has taken. Cheap to clone; `Send + Sync`.
///
/// Obtained from [`QueueServer::reader`](crate::QueueServer::reader).
pub struct Reader<D> {
    swap: Arc<ArcSwap<Snapshot<D>>>,
}

impl<D> Clone for Reader<D> {
    fn clone(&self) -> Self {
        Self {
            swap: Arc::clone(&self.swap),
        }
    }
}

/// A loaded snapshot; dereferences to [`Snapshot`]. Hold it briefly: see
/// [`Reader::load`].
pub struct ReadGuard<D> {
    guard: Guard<Arc<Snapshot<D>>>,
}

impl<D> Deref for ReadGuard<D> {
    type Target = Snapshot<D>;

    fn deref(&self) -> &Snapshot<D> {
        &self.guard
    }
}

impl<D: fmt::Debug> fmt::Debug for ReadGuard<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<D> Reader<D> {
    pub(crate) fn new(swap: Arc<ArcSwap<Snapshot<D>>>) -> Self {
        Self { swap }
    }

    /// The newest snapshot the poller has taken.
    ///
    /// **Any thread.** Lock-free, no allocation in the common case (arc-swap's `load`: a
    /// few atomic operations on thread-local debt slots). Meant for short reads: a thread
    /// holding many guards at once falls back to a slower path; for a long-lived copy use
    /// [`load_full`](Self::load_full).
    pub fn load(&self) -> ReadGuard<D> {
        ReadGuard {
            guard: self.swap.load(),
        }
    }

    /// The newest snapshot as an owned `Arc`: one reference-count increment.
    ///
    /// **Any thread.** Lock-free.
    pub fn load_full(&self) -> Arc<Snapshot<D>> {
        self.swap.load_full()
    }
}

impl<D> fmt::Debug for Reader<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reader").finish_non_exhaustive()
    }
}
