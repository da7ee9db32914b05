//! [`QueueServer`]: the poller, which owns the connections and does all the work that can
//! be moved off the computation's thread.
//!
//! | operation | where | guarantee |
//! |---|---|---|
//! | [`process_updates`](QueueServer::process_updates) | poller | takes at most the newest snapshot and fans it out; counts exactly the snapshots overwritten before it saw them |
//! | [`process_requests`](QueueServer::process_requests) | poller | drains at most `Q` requests, one read per distinct query, one answer per connection per query; every accepted request is answered exactly once or counted orphaned |
//! | [`add_connection`](QueueServer::add_connection), [`remove_connection`](QueueServer::remove_connection) | poller | bounded: `O(MAXC)` |
//!
//! Poller operations never allocate, except where a connection does or the std
//! [`Reader`](crate::Reader) is in use (one `Arc` per new snapshot).

use crate::clock::{Clock, NoClock};
use crate::config::Config;
use crate::connection::{Connection, ConnectionError, ConnectionId, Response};
use crate::idict::IDict;
use crate::log;
use crate::notify::{Event, NoNotify, Notify};
use crate::publisher::Publisher;
use crate::request::{Query, Request, RequestError, Requester, Requests, FREE};
use crate::signal::Signals;
use crate::snapshot::Snapshot;
use crate::stats::Stats;
use crate::sync::{Arc, Ordering};
use core::fmt;
use core::time::Duration;

/// What one poller call did, and when to call again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Processed {
    /// Snapshots delivered to connections, or requests taken off the queue.
    pub handled: usize,
    /// Connections removed because they failed during the call.
    pub failed: usize,
    /// Work waits for a rate limit: call again after this long.
    pub retry_after: Option<Duration>,
}

impl Processed {
    /// Combines two results: sums the counts, keeps the earlier retry.
    pub fn merge(self, other: Self) -> Self {
        let retry_after = match (self.retry_after, other.retry_after) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Self {
            handled: self.handled + other.handled,
            failed: self.failed + other.failed,
            retry_after,
        }
    }
}

/// Every slot is taken: the connection comes back.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ConnectionsFull<C>(pub C);

impl<C> fmt::Debug for ConnectionsFull<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ConnectionsFull(..)")
    }
}

impl<C> fmt::Display for ConnectionsFull<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("every connection slot is taken")
    }
}

#[cfg(feature = "std")]
impl<C> std::error::Error for ConnectionsFull<C> {}

/// A connection the poller removed because it failed, handed back by
/// [`QueueServer::take_failed`].
#[derive(Debug)]
pub struct Failed<C> {
    /// The id it had.
    pub id: ConnectionId,
    /// The connection itself.
    pub connection: C,
    /// What it returned.
    pub error: ConnectionError,
}

/// The poller's counters (the request side's live in [`Requests`]).
#[derive(Default)]
struct Counters {
    published: u64,
    received: u64,
    overwritten: u64,
    delivered: u64,
    superseded: u64,
    deliveries: u64,
    consolidated: u64,
    answered: u64,
    orphaned: u64,
    reads: u64,
    high_water: usize,
    added: u64,
    removed: u64,
    failed: u64,
    accepted: Widened,
    rejected: Widened,
}

/// A requester-side `usize` counter read as a `u64`. Each fold adds what the counter
/// gained since the last fold, modulo `usize::MAX + 1`, so a 32-bit counter's wrap is not
/// lost as long as the poller folds at least once per 2^32 increments. The poller folds at
/// every `process_updates` and `process_requests` where `usize` is narrower than `u64`.
#[derive(Clone, Copy, Default)]
struct Widened {
    seen: usize,
    total: u64,
}

impl Widened {
    /// The total, given the counter's value `now`.
    fn at(self, now: usize) -> u64 {
        self.total + now.wrapping_sub(self.seen) as u64
    }

    fn fold(&mut self, now: usize) {
        self.total = self.at(now);
        self.seen = now;
    }
}

/// The server: owns the connections, takes snapshots, answers requests (the seed's
/// `QueueServer`).
///
/// - `D`: the [`IDict`] published.
/// - `C`: the [`Connection`] type (`Box<dyn Connection<D> + Send>` for a mix).
/// - `N`: the [`Notify`] hook, called on publish and request.
/// - `T`: the [`Clock`] for rate limits.
/// - `Q`: request queue capacity, a power of two.
/// - `MAXC`: how many connections may be attached at once.
///
/// Every method runs on the poller (the thread, task or interrupt that owns the server),
/// except those of [`Requester`], which any thread may use.
///
/// ```
/// use queueserver::{Connection, ConnectionError, QueueServer, Request, Response, Snapshot};
/// use std::collections::BTreeMap;
///
/// #[derive(Default)]
/// struct Printer {
///     seen: Vec<u64>,
///     answers: Vec<String>,
/// }
///
/// impl Connection<BTreeMap<&'static str, f64>> for Printer {
///     fn on_update(&mut self, s: &Snapshot<BTreeMap<&'static str, f64>>) -> Result<(), ConnectionError> {
///         self.seen.push(s.seq());
///         Ok(())
///     }
///     fn on_response(&mut self, r: Response<'_, BTreeMap<&'static str, f64>>) -> Result<(), ConnectionError> {
///         self.answers.push(format!("{r:?}"));
///         Ok(())
///     }
/// }
///
/// let mut state = BTreeMap::from([("x", 0.0), ("v", 1.0)]);
/// let (mut publisher, mut server) = QueueServer::new(state.clone());
/// let id = server.add_connection(Printer::default()).unwrap();
///
/// state.insert("x", 0.5);
/// publisher.put_update(&state);
/// server.put_request(Request::key(id, "x")).unwrap();
/// server.put_request(Request::key(id, "x")).unwrap(); // a duplicate
/// server.poll();
///
/// let printer = server.connection(id).unwrap();
/// assert_eq!(printer.seen, [1]);
/// assert_eq!(printer.answers.len(), 1);
/// assert_eq!(server.stats().requests_consolidated, 1);
/// ```
pub struct QueueServer<
    D: IDict,
    C,
    N = NoNotify,
    T = NoClock,
    const Q: usize = 64,
    const MAXC: usize = 8,
> {
    output: triple_buffer::Output<Snapshot<D>>,
    signals: Arc<Signals<N>>,
    requests: Arc<Requests<D::Key, Q, MAXC>>,
    connections: [Option<C>; MAXC],
    generations: [u16; MAXC],
    failed: heapless::Deque<Failed<C>, MAXC>,
    config: Config,
    clock: T,
    counters: Counters,
    /// The snapshot taken last has not been fanned out yet.
    undelivered: bool,
    last_update_at: Option<Duration>,
    last_read_at: Option<Duration>,
    batch: heapless::Vec<Request<D::Key>, Q>,
    #[cfg(feature = "std")]
    reader: Option<crate::reader::Shelf<D>>,
}

impl<D: IDict, C: Connection<D>> QueueServer<D, C> {
    /// A server with default settings (no hook, no rate limits, a 64-request queue, up to
    /// 8 connections), and the computation's [`Publisher`].
    ///
    /// Allocates (the triple buffer and the shared state); call it before the real-time
    /// part starts. See [`Builder`](crate::Builder) for the other settings.
    pub fn new(idict: D) -> (Publisher<D, NoNotify>, Self) {
        Self::with_connections(idict, [])
    }

    /// [`new`](Self::new), with connections attached at once (the seed's
    /// `QueueServer(idict, connections)`); their ids are
    /// [`connection_ids`](Self::connection_ids), in order.
    pub fn with_connections<const M: usize>(
        idict: D,
        connections: [C; M],
    ) -> (Publisher<D, NoNotify>, Self) {
        const {
            assert!(
                M <= 8,
                "more connections than the 8 slots of QueueServer::new"
            )
        };
        // The default configuration needs no validation: no rate limit, share Q / MAXC.
        let (publisher, mut server) = Self::assemble(idict, NoNotify, NoClock, Config::new());
        for connection in connections {
            // Cannot fail for M <= MAXC, checked at compile time.
            let _ = server.add_connection(connection);
        }
        (publisher, server)
    }
}

impl<D, C, N, T, const Q: usize, const MAXC: usize> QueueServer<D, C, N, T, Q, MAXC>
where
    D: IDict,
    C: Connection<D>,
    N: Notify,
    T: Clock,
{
    /// Builds a server from settings already validated.
    pub(crate) fn assemble(
        idict: D,
        notify: N,
        clock: T,
        config: Config,
    ) -> (Publisher<D, N>, Self) {
        let share = config.max_pending_per_connection(Q, MAXC);
        let (input, output) = triple_buffer::triple_buffer(&Snapshot::new(0, idict));
        let signals = Arc::new(Signals::new(notify));
        let server = Self {
            output,
            signals: Arc::clone(&signals),
            requests: Arc::new(Requests::new(share)),
            connections: core::array::from_fn(|_| None),
            generations: [0; MAXC],
            failed: heapless::Deque::new(),
            config,
            clock,
            counters: Counters::default(),
            undelivered: false,
            last_update_at: None,
            last_read_at: None,
            batch: heapless::Vec::new(),
            #[cfg(feature = "std")]
            reader: None,
        };
        (Publisher::new(input, signals), server)
    }

    // ----- connections -----

    /// Attaches a connection and returns its id.
    ///
    /// **Poller.** `O(MAXC)`, no allocation. Prefers a slot none of whose former
    /// connection's requests are still queued.
    ///
    /// # Errors
    ///
    /// [`ConnectionsFull`] hands the connection back when all `MAXC` slots are taken.
    pub fn add_connection(&mut self, connection: C) -> Result<ConnectionId, ConnectionsFull<C>> {
        let free = |i: &usize| self.connections[*i].is_none();
        let quiet = |i: &usize| self.requests.slots[*i].queued.load(Ordering::Relaxed) == 0;
        let Some(index) = (0..MAXC)
            .filter(free)
            .find(quiet)
            .or_else(|| (0..MAXC).find(free))
        else {
            return Err(ConnectionsFull(connection));
        };
        // MAXC < u16::MAX is checked at compile time, so the index fits.
        let id = ConnectionId::from_parts(index as u16, self.generations[index]);
        self.connections[index] = Some(connection);
        // Release: a requester that reads this tag (Acquire) sees the slot ready.
        self.requests.slots[index]
            .tag
            .store(id.to_bits(), Ordering::Release);
        self.counters.added += 1;
        self.refresh_subscribed();
        log::debug!("connection {} added", id);
        Ok(id)
    }

    /// Detaches a connection and returns it; `None` if `id` is not attached.
    ///
    /// **Poller.** `O(MAXC)`. Its queued requests are counted in
    /// [`Stats::requests_orphaned`] when the poller drains them.
    pub fn remove_connection(&mut self, id: ConnectionId) -> Option<C> {
        if !self.is_attached(id) {
            return None;
        }
        self.detach(usize::from(id.index()))
    }

    /// Whether `id` names an attached connection.
    pub fn is_attached(&self, id: ConnectionId) -> bool {
        let index = usize::from(id.index());
        index < MAXC
            && self.connections[index].is_some()
            && self.generations[index] == id.generation()
    }

    /// The connection `id`, if attached.
    pub fn connection(&self, id: ConnectionId) -> Option<&C> {
        if self.is_attached(id) {
            self.connections[usize::from(id.index())].as_ref()
        } else {
            None
        }
    }

    /// The connection `id`, if attached, mutably.
    pub fn connection_mut(&mut self, id: ConnectionId) -> Option<&mut C> {
        if self.is_attached(id) {
            self.connections[usize::from(id.index())].as_mut()
        } else {
            None
        }
    }

    /// The ids of the attached connections, in slot order.
    pub fn connection_ids(&self) -> impl Iterator<Item = ConnectionId> + '_ {
        (0..MAXC)
            .filter(|&i| self.connections[i].is_some())
            .map(|i| ConnectionId::from_parts(i as u16, self.generations[i]))
    }

    /// How many connections are attached.
    pub fn connection_count(&self) -> usize {
        self.connections.iter().filter(|c| c.is_some()).count()
    }

    /// Hands back the oldest connection removed because it failed, with its error.
    ///
    /// The server keeps the last `MAXC` failed connections until they are taken; an older
    /// one is dropped when a newer one needs the room.
    pub fn take_failed(&mut self) -> Option<Failed<C>> {
        self.failed.pop_front()
    }

    fn detach(&mut self, index: usize) -> Option<C> {
        let connection = self.connections[index].take()?;
        // Release: requesters that still hold the old id read FREE (or a newer tag) and
        // are told the connection is unknown.
        self.requests.slots[index]
            .tag
            .store(FREE, Ordering::Release);
        self.generations[index] = self.generations[index].wrapping_add(1);
        self.counters.removed += 1;
        self.refresh_subscribed();
        Some(connection)
    }

    fn fail(&mut self, index: usize, error: ConnectionError) {
        let id = ConnectionId::from_parts(index as u16, self.generations[index]);
        if let Some(connection) = self.detach(index) {
            self.counters.failed += 1;
            log::warning!("connection {} removed: {}", id, error);
            let failed = Failed {
                id,
                connection,
                error,
            };
            if let Err(failed) = self.failed.push_back(failed) {
                self.failed.pop_front();
                let _ = self.failed.push_back(failed);
            }
        }
    }

    /// Publishes whether any connection subscribes to the demand word; returns it.
    fn refresh_subscribed(&self) -> bool {
        let subscribed = self.connections.iter().flatten().any(|c| c.wants_updates());
        self.signals.set_subscribed(subscribed);
        subscribed
    }

    // ----- updates -----

    /// Takes the newest snapshot from the triple buffer, if one is new; counts the ones
    /// overwritten before it.
    fn refresh(&mut self) -> bool {
        if !self.output.update() {
            return false;
        }
        let seq = self.output.output_buffer().seq();
        self.counters.overwritten += seq.saturating_sub(self.counters.published + 1);
        self.counters.published = seq;
        self.counters.received += 1;
        if self.undelivered {
            self.counters.superseded += 1;
        }
        self.undelivered = true;
        #[cfg(feature = "std")]
        if let Some(reader) = &self.reader {
            reader.store(std::sync::Arc::new(self.output.output_buffer().clone()));
        }
        true
    }

    /// Time left before a rate limit of `interval` since `last` lets work through.
    fn wait_left(&self, interval: Option<Duration>, last: Option<Duration>) -> Option<Duration> {
        let (interval, last) = (interval?, last?);
        let elapsed = self.clock.now().saturating_sub(last);
        (elapsed < interval).then(|| interval - elapsed)
    }

    /// Widens the requesters' counts (a `usize` each, 32 bits on most embedded targets).
    /// Where `usize` is 64 bits wide there is nothing to widen, and no load is spent.
    #[inline]
    fn fold_request_counts(&mut self) {
        if usize::BITS >= u64::BITS {
            return;
        }
        let r = &self.requests;
        self.counters
            .accepted
            .fold(r.accepted.load(Ordering::Relaxed));
        self.counters
            .rejected
            .fold(r.rejected.load(Ordering::Relaxed));
    }

    /// Takes the newest snapshot, if there is one, and pushes it to every subscribed
    /// connection (the seed's `process_updates`).
    ///
    /// **Poller.** Fans out at most one snapshot: the newest. Connections that fail are
    /// removed. With [`Config::with_min_update_interval`], a snapshot that arrives too soon
    /// waits (and is superseded by newer ones) until the interval has passed;
    /// [`Processed::retry_after`] says when. Once the server is [closed](Self::close) the
    /// rate limit no longer applies, so the last snapshot reaches the subscribers.
    pub fn process_updates(&mut self) -> Processed {
        self.signals.begin(Event::Update);
        self.fold_request_counts();
        self.refresh();
        let subscribed = self.refresh_subscribed();
        let mut done = Processed::default();
        if !self.undelivered || !subscribed {
            return done;
        }
        let interval = self.config.min_update_interval();
        if !self.signals.is_closed() {
            if let Some(left) = self.wait_left(interval, self.last_update_at) {
                done.retry_after = Some(left);
                return done;
            }
        }
        if interval.is_some() {
            self.last_update_at = Some(self.clock.now());
        }
        self.undelivered = false;
        self.counters.delivered += 1;

        let mut failures: heapless::Vec<(usize, ConnectionError), MAXC> = heapless::Vec::new();
        let snapshot = self.output.output_buffer();
        for (index, slot) in self.connections.iter_mut().enumerate() {
            let Some(connection) = slot else { continue };
            if !connection.wants_updates() {
                continue;
            }
            match connection.on_update(snapshot) {
                Ok(()) => done.handled += 1,
                // At most one entry per slot: cannot overflow.
                Err(error) => drop(failures.push((index, error))),
            }
        }
        self.counters.deliveries += done.handled as u64;
        done.failed = failures.len();
        for (index, error) in failures {
            self.fail(index, error);
        }
        done
    }

    // ----- requests -----

    /// Queues a request; the same as [`Requester::put_request`].
    ///
    /// # Errors
    ///
    /// Hands the request back; see [`RequestError`].
    pub fn put_request(&self, request: Request<D::Key>) -> Result<(), RequestError<D::Key>> {
        self.requests.put(&self.signals, request)
    }

    /// A handle for putting requests from other threads or interrupts.
    pub fn requester(&self) -> Requester<D::Key, N, Q, MAXC> {
        Requester {
            requests: Arc::clone(&self.requests),
            signals: Arc::clone(&self.signals),
        }
    }

    /// Drains the request queue and answers (the seed's `process_requests`).
    ///
    /// **Poller.** Takes at most `Q` requests; reads the newest snapshot once per distinct
    /// query; answers each connection once per query ([`Response::NotFound`] for a key the
    /// snapshot does not have); counts duplicates of an answered request as consolidated,
    /// and requests of removed or failed connections, duplicates included, as orphaned.
    /// With [`Config::with_min_request_interval`], a call too soon after the last read
    /// leaves the requests queued to be consolidated into the next read, and
    /// [`Processed::retry_after`] says when. Once the server is
    /// [closed](Self::close) the rate limit no longer applies.
    pub fn process_requests(&mut self) -> Processed {
        self.signals.begin(Event::Request);
        self.fold_request_counts();
        let mut done = Processed::default();
        if self.signals.requests_in_flight() == 0 {
            return done;
        }
        let interval = self.config.min_request_interval();
        if !self.signals.is_closed() {
            if let Some(left) = self.wait_left(interval, self.last_read_at) {
                done.retry_after = Some(left);
                return done;
            }
        }
        self.refresh();
        while !self.batch.is_full() {
            let Some(request) = self.requests.take() else {
                break;
            };
            // Cannot fail: the loop stops when the batch is full.
            let _ = self.batch.push(request);
        }
        if self.batch.is_empty() {
            return done;
        }
        if interval.is_some() {
            self.last_read_at = Some(self.clock.now());
        }
        self.batch.sort_unstable();
        done.handled = self.batch.len();
        let failures = self.answer_batch();
        done.failed = failures.len();
        for (index, error) in failures {
            self.fail(index, error);
        }
        // Between two batches the count only grows (refused requests leave again at
        // once), so its value just before this batch leaves is the peak since the last.
        let in_flight = self.signals.requests_in_flight();
        self.counters.high_water = self.counters.high_water.max(in_flight);
        self.signals.leave_requests(done.handled);
        self.batch.clear();
        done
    }

    /// Answers the sorted batch: one read per query, one answer per connection per query.
    fn answer_batch(&mut self) -> heapless::Vec<(usize, ConnectionError), MAXC> {
        let mut failures: heapless::Vec<(usize, ConnectionError), MAXC> = heapless::Vec::new();
        let snapshot = self.output.output_buffer();
        let counters = &mut self.counters;
        let mut rest: &[Request<D::Key>] = &self.batch;
        while let Some(first) = rest.first() {
            let query = &first.query;
            let same = rest.iter().take_while(|r| r.query == *query).count();
            let (group, tail) = rest.split_at(same);
            rest = tail;
            counters.reads += 1;
            let value = match query {
                Query::Key(key) => Some(snapshot.get(key)),
                Query::All => None,
            };
            // The connection of the previous request, and whether it was answered.
            let mut previous = None;
            for request in group {
                if let Some((from, answered)) = previous {
                    if from == request.from {
                        // A repeat shares the fate of the first: answered by its answer,
                        // or orphaned with it.
                        if answered {
                            counters.consolidated += 1;
                        } else {
                            counters.orphaned += 1;
                        }
                        continue;
                    }
                }
                previous = Some((request.from, false));
                let index = usize::from(request.from.index());
                let failed_now = failures.iter().any(|(i, _)| *i == index);
                let connection = match self.connections.get_mut(index) {
                    Some(Some(c))
                        if self.generations[index] == request.from.generation() && !failed_now =>
                    {
                        c
                    }
                    _ => {
                        counters.orphaned += 1;
                        continue;
                    }
                };
                let seq = snapshot.seq();
                let response = match (query, &value) {
                    (Query::Key(key), Some(Some(value))) => Response::Value { key, value, seq },
                    (Query::Key(key), _) => Response::NotFound { key, seq },
                    (Query::All, _) => Response::Snapshot(snapshot),
                };
                match connection.on_response(response) {
                    Ok(()) => {
                        counters.answered += 1;
                        previous = Some((request.from, true));
                    }
                    Err(error) => {
                        counters.orphaned += 1;
                        // At most one entry per slot: cannot overflow.
                        let _ = failures.push((index, error));
                    }
                }
            }
        }
        failures
    }

    /// [`process_updates`](Self::process_updates), then
    /// [`process_requests`](Self::process_requests).
    pub fn poll(&mut self) -> Processed {
        let updates = self.process_updates();
        updates.merge(self.process_requests())
    }

    /// Whether a publish or a request has arrived since the poller last began processing
    /// it: the coalesced notification that the hook was (or would have been) told of.
    pub fn has_pending_events(&self) -> bool {
        self.signals.is_pending(Event::Update) || self.signals.is_pending(Event::Request)
    }

    /// Requests accepted and not yet answered (queued, in a batch, or being put).
    pub fn pending_requests(&self) -> usize {
        self.signals.requests_in_flight()
    }

    /// Closes the request side: every later `put_request` returns
    /// [`RequestError::Closed`]. Requests already accepted stay pending; keep calling
    /// [`process_requests`](Self::process_requests) (now free of its rate limit) until
    /// [`pending_requests`](Self::pending_requests) is zero, and none is lost. The update
    /// rate limit is lifted too, so a last `process_updates` delivers the newest snapshot.
    pub fn close(&mut self) {
        self.signals.close();
        log::debug!("request side closed");
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.signals.is_closed()
    }

    // ----- state -----

    /// The newest snapshot the poller has taken (it may be older than the newest
    /// published: call [`process_updates`](Self::process_updates) first).
    pub fn snapshot(&self) -> &Snapshot<D> {
        self.output.output_buffer()
    }

    /// Whether the computation needs to publish: see
    /// [`Publisher::wants_update`].
    pub fn wants_update(&self) -> bool {
        self.signals.wants_update()
    }

    /// The counters. See [`Stats`] for the identities they keep.
    pub fn stats(&self) -> Stats {
        let c = &self.counters;
        let r = &self.requests;
        Stats {
            updates_published: c.published,
            updates_received: c.received,
            updates_overwritten: c.overwritten,
            updates_delivered: c.delivered,
            updates_superseded: c.superseded,
            deliveries: c.deliveries,
            requests_accepted: c.accepted.at(r.accepted.load(Ordering::Relaxed)),
            requests_rejected: c.rejected.at(r.rejected.load(Ordering::Relaxed)),
            requests_consolidated: c.consolidated,
            requests_answered: c.answered,
            requests_orphaned: c.orphaned,
            reads: c.reads,
            queue_high_water: c.high_water.max(self.signals.requests_in_flight()) as u64,
            connections_added: c.added,
            connections_removed: c.removed,
            connections_failed: c.failed,
        }
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The clock (to advance a [`ManualClock`](crate::ManualClock), say).
    pub fn clock(&self) -> &T {
        &self.clock
    }

    /// The notify hook, shared with the publisher and the requesters.
    pub fn notifier(&self) -> &N {
        self.signals.notifier()
    }

    /// How many requests one connection may have queued at once.
    pub fn share(&self) -> u32 {
        self.requests.share
    }

    /// A [`Reader`](crate::Reader) of the newest snapshot the poller has taken, for any
    /// thread (std).
    ///
    /// From the first call on, the poller stores every new snapshot it takes in an
    /// `ArcSwap` (one allocation per snapshot, on the poller's thread) and wakes the
    /// readers waiting for it. Dropping the server tells them no newer one will come.
    #[cfg(feature = "std")]
    pub fn reader(&mut self) -> crate::Reader<D> {
        let snapshot = self.output.output_buffer();
        self.reader
            .get_or_insert_with(|| crate::reader::Shelf::new(snapshot.clone()))
            .reader()
    }
}

impl<D: IDict, C, N, T, const Q: usize, const MAXC: usize> fmt::Debug
    for QueueServer<D, C, N, T, Q, MAXC>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueServer")
            .field("capacity", &Q)
            .field("max_connections", &MAXC)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::Widened;

    #[test]
    fn a_widened_count_survives_the_counter_wrapping() {
        // 10 counted so far; the counter stood 3 short of wrapping at the last fold.
        let mut count = Widened {
            seen: usize::MAX - 2,
            total: 10,
        };
        assert_eq!(count.at(usize::MAX), 12);
        // 5 more increments wrap it round to 2.
        assert_eq!(count.at(2), 15);
        count.fold(2);
        assert_eq!(count.at(2), 15);
        count.fold(7);
        assert_eq!(count.at(7), 20);
    }
}
