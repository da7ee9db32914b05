//! [`Stats`]: what the Zenoh side did, counted exactly.

use queueserver::runtime::relay::RelayStats;
use std::sync::atomic::{AtomicU64, Ordering};

/// The live counters of this crate's own work, shared by the queryables' callbacks, the
/// askers and the relay's worker. The relay counts the snapshots it was handed itself.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) snapshots_published: AtomicU64,
    pub(crate) values_put: AtomicU64,
    pub(crate) puts_failed: AtomicU64,
    pub(crate) gets: AtomicU64,
    pub(crate) gets_unknown: AtomicU64,
    pub(crate) gets_empty: AtomicU64,
    pub(crate) gets_refused: AtomicU64,
    pub(crate) replies: AtomicU64,
    pub(crate) error_replies: AtomicU64,
    pub(crate) replies_failed: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        // Relaxed: each count stands alone; `Stats` is a set of counts, not a snapshot.
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// These counts with the relay's.
    pub(crate) fn stats(&self, relay: &RelayStats) -> Stats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Stats {
            snapshots_offered: relay.updates_offered,
            snapshots_overwritten: relay.updates_superseded,
            snapshots_published: get(&self.snapshots_published),
            values_put: get(&self.values_put),
            puts_failed: get(&self.puts_failed),
            gets: get(&self.gets),
            gets_unknown: get(&self.gets_unknown),
            gets_empty: get(&self.gets_empty),
            gets_refused: get(&self.gets_refused),
            replies: get(&self.replies),
            error_replies: get(&self.error_replies),
            replies_failed: get(&self.replies_failed),
            pending_replies: relay.asks.outstanding,
        }
    }
}

/// A copy of the Zenoh side's counters. Each is read on its own, so counts updated at the
/// same moment by different threads may be a step apart.
///
/// When nothing is in flight: `snapshots_offered = snapshots_published +
/// snapshots_overwritten`, and every admitted get's requests end in `replies +
/// error_replies`; `pending_replies` are on their way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Snapshots the poller handed to the relay's worker: one per snapshot it delivered
    /// while some subscriber heard the values or the snapshot.
    pub snapshots_offered: u64,
    /// Snapshots replaced by a newer one before the worker took them (latest wins).
    pub snapshots_overwritten: u64,
    /// Snapshots the worker published: changed values on `P/<name>` if some subscriber
    /// matches `P/**`, the whole on `P/@snapshot` if some subscriber matches it.
    pub snapshots_published: u64,
    /// Values put on `P/<name>`.
    pub values_put: u64,
    /// Puts (values, deletes, snapshots) that failed or could not be made: a value that
    /// does not serialize, a key without a name, a session closed.
    pub puts_failed: u64,
    /// Gets received by the queryables.
    pub gets: u64,
    /// Gets of a concrete key that names no value: answered at once with an error reply.
    pub gets_unknown: u64,
    /// Gets with wildcards that match no value: answered with no reply.
    pub gets_empty: u64,
    /// Gets refused at once with an error reply: past the bound on outstanding gets, or
    /// the server's request side closed.
    pub gets_refused: u64,
    /// Value and snapshot replies sent.
    pub replies: u64,
    /// Error replies to admitted gets (a deadline passed, the server abandoned or closed,
    /// a name gone from the snapshot). Refusals and unknown names are counted above.
    pub error_replies: u64,
    /// Replies Zenoh refused to send (the session closed).
    pub replies_failed: u64,
    /// Requests of admitted gets not answered yet, nor ended: each is one reply on its
    /// way. At most the bound on outstanding gets.
    pub pending_replies: u64,
}
