//! [`Stats`]: what the server did, counted exactly.
//!
//! Poller-side counts are plain integers kept by the poller; the request side's accepted
//! and rejected counts are relaxed atomics the requesters bump. Nothing is
//! counted on the computation's path: the number of publishes is the newest sequence
//! number, and the poller derives how many it missed from the gaps.
//!
//! Three identities hold whenever the poller is not in the middle of a call, and (for the
//! last) no `put_request` is either: a request is counted pending a moment before it is
//! counted accepted, and a refused one is counted pending for a moment too.
//!
//! - `updates_published = updates_received + updates_overwritten` (publishes the poller has
//!   seen the number of; [`Publisher::published`](crate::Publisher::published) minus this
//!   are still pending in the buffer);
//! - `updates_received = updates_delivered + updates_superseded + u` where `u` is 1 if the
//!   newest snapshot taken is still waiting for its fan-out, else 0;
//! - `requests_accepted = requests_answered + requests_consolidated + requests_orphaned +
//!   requests_abandoned +` [`pending_requests`](crate::QueueServer::pending_requests).
//!
//! They hold after a panic unwound through the poller too (see [`fault`](crate::fault)):
//! the poller counts each request as it settles it.

/// A copy of the server's counters. All counts start at zero when the server is built.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Stats {
    /// The newest sequence number the poller has seen: how many publishes it knows of.
    pub updates_published: u64,
    /// Snapshots the poller took from the triple buffer.
    pub updates_received: u64,
    /// Snapshots overwritten in the triple buffer before the poller could take them.
    pub updates_overwritten: u64,
    /// Snapshots fanned out to the subscribers (once each, however many subscribers).
    pub updates_delivered: u64,
    /// Snapshots taken but replaced by a newer one before they were fanned out: held back
    /// by the update rate limit, taken while no connection subscribed, or taken to answer
    /// requests between two fan-outs.
    pub updates_superseded: u64,
    /// Successful `on_update` calls: one per snapshot per subscriber.
    pub deliveries: u64,
    /// Requests queued by `put_request`.
    pub requests_accepted: u64,
    /// Requests handed back by `put_request` (full, over quota, unknown, closed).
    ///
    /// Requesters count it in a `usize`, which the poller widens at every
    /// `process_updates` and `process_requests`: on a 32-bit target it stays exact as long
    /// as the poller runs at least once per 2^32 rejections. (Accepted requests cannot
    /// outrun the poller that far: the queue holds at most `Q`.)
    pub requests_rejected: u64,
    /// Requests that repeated a queued request of the same connection for the same query,
    /// and were answered by that request's answer.
    pub requests_consolidated: u64,
    /// Answers delivered (one per connection per query per batch).
    pub requests_answered: u64,
    /// Requests whose connection was removed, or failed, before the answer.
    pub requests_orphaned: u64,
    /// Requests given up on, never answered, their connections told
    /// ([`Connection::on_abandoned`](crate::Connection::on_abandoned)): their read
    /// panicked, or the server's owner stopped serving requests
    /// ([`QueueServer::abandon_requests`](crate::QueueServer::abandon_requests), as a
    /// [`Runner`](crate::Runner) does when its poller panics).
    pub requests_abandoned: u64,
    /// Reads of the snapshot: one per distinct query per batch.
    pub reads: u64,
    /// The most requests pending at one time: accepted and not yet answered (queued, in the
    /// batch being answered, or being put), the count
    /// [`pending_requests`](crate::QueueServer::pending_requests) gives. It can exceed `Q`:
    /// requesters may refill the queue while the poller still answers the batch it took
    /// from it.
    ///
    /// The poller samples the count just before each batch leaves it, when it is at its
    /// peak since the last batch, and [`stats`](crate::QueueServer::stats) adds the count of
    /// the moment; a request being refused at that instant can add one per requester.
    pub pending_high_water: u64,
    /// Connections attached.
    pub connections_added: u64,
    /// Connections detached, by `remove_connection` or because they failed.
    pub connections_removed: u64,
    /// Connections removed because one of their calls returned an error.
    pub connections_failed: u64,
}
