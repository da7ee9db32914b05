//! [`QueueServer`]: the poller, which owns the connections and does all the work that can
//! be moved off the computation's thread.
//!
//! | operation | where | guarantee |
//! |---|---|---|
//! | [`process_updates`](QueueServer::process_updates) | poller | takes at most the newest snapshot and fans it out; counts exactly the snapshots overwritten before it saw them |
//! | [`process_requests`](QueueServer::process_requests) | poller | drains at most `Q` requests, one read per distinct query, one answer per connection per query; every accepted request is answered exactly once, or counted orphaned or abandoned |
//! | [`abandon_requests`](QueueServer::abandon_requests) | poller | settles every accepted request without answering it, each connection told once per query |
//! | [`add_connection`](QueueServer::add_connection), [`remove_connection`](QueueServer::remove_connection) | poller | bounded: `O(MAXC)` |
//!
//! Poller operations never allocate, except where a connection does or the std
//! [`Reader`](crate::Reader) is in use (one `Arc` per new snapshot).
//!
//! A connection that fails or panics is removed at once, and the other connections and
//! every accepted request carry on; a panic anywhere else in the poller's work leaves the
//! server consistent for the next call. See [`fault`](crate::fault).

use crate::clock::{Clock, NoClock};
use crate::config::Config;
use crate::connection::{Abandoned, Connection, ConnectionError, ConnectionId, Response};
use crate::fault::{contain, PanicMessage};
use crate::idict::IDict;
use crate::log;
use crate::notify::{NoNotify, Notify};
use crate::publisher::Publisher;
use crate::request::{Query, Request, RequestError, Requester, Requests, Slot, FREE};
use crate::signal::Signals;
use crate::snapshot::Snapshot;
use crate::stats::Stats;
use crate::sync::{Arc, Ordering};
use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::vec::Vec;
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

/// Every slot is taken (or retired): the connection comes back.
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
    abandoned: u64,
    reads: u64,
    high_water: usize,
    added: u64,
    removed: u64,
    failed: u64,
    accepted: WideCount,
    rejected: WideCount,
}

/// A requester-side `usize` counter read as a `u64`. Each fold adds what the counter
/// gained since the last fold, modulo `usize::MAX + 1`, so a 32-bit counter's wrap is not
/// lost as long as the poller folds at least once per 2^32 increments. The poller folds at
/// every `process_updates` and `process_requests` where `usize` is narrower than `u64`.
#[derive(Clone, Copy, Default)]
struct WideCount {
    seen: usize,
    total: u64,
}

impl WideCount {
    /// The total, given the counter's value `now`.
    fn at(self, now: usize) -> u64 {
        self.total + now.wrapping_sub(self.seen) as u64
    }

    fn fold(&mut self, now: usize) {
        self.total = self.at(now);
        self.seen = now;
    }
}

/// What the poller is running that is not its own code. Set before the call, cleared after
/// it returns: a call that unwound leaves it set, and the next poller call recovers (see
/// [`fault`](crate::fault)).
///
/// A connection is named by its slot alone: whatever changes a slot (attaching, removing,
/// failing) runs `recover` first, so the slot still holds the connection that was called.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum InCall {
    /// Nothing: the poller runs its own code.
    Nothing,
    /// A method of the connection in this slot.
    Connection(u16),
    /// The key comparisons that find the group at the batch's cursor, and its read.
    Read,
    /// Sorting the batch.
    Sort,
}

/// How a request was settled: a repeat of it by the same connection shares its fate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Answered,
    Orphaned,
    Abandoned,
}

/// The requests taken off the queue, settled one at a time: answered, orphaned or
/// abandoned, and counted as each is settled. Everything here is up to date after every
/// step, so a panic that unwinds through the poller leaves a batch the next call finishes
/// without settling any request twice.
struct Batch<K> {
    /// Capacity `Q`, never exceeded (never reallocates).
    requests: Vec<Request<K>>,
    /// The next request to settle; those before it are settled and counted.
    cursor: usize,
    /// The end of the group (requests for one query) the cursor is in.
    group_end: usize,
    /// Requests before this index are abandoned, for `reason`, rather than answered.
    abandon_until: usize,
    reason: Abandoned,
    /// Whether `requests` is sorted: if not (its sort unwound), each request is a group of
    /// its own.
    sorted: bool,
    /// The connection of the last request settled in the current group, and how.
    previous: Option<(ConnectionId, Outcome)>,
    /// Where the cursor stood when the current call began settling: the requests before
    /// it were settled by an earlier call (one a panic cut short), and are not pending
    /// however long they stay in the count.
    settled_before: usize,
}

impl<K> Batch<K> {
    fn with_capacity(capacity: usize) -> Self {
        Self {
            requests: Vec::with_capacity(capacity),
            cursor: 0,
            group_end: 0,
            abandon_until: 0,
            reason: Abandoned::Stopped,
            sorted: true,
            previous: None,
            settled_before: 0,
        }
    }

    /// Whether requests taken off the queue are still to be settled.
    fn is_open(&self) -> bool {
        self.cursor < self.requests.len()
    }
}

/// The connection slots and what the poller keeps of them.
struct Slots<C> {
    /// `MAXC` slots, allocated at construction like everything else that grows with `Q`
    /// or `MAXC`: the server itself stays small, whatever its capacity, and moves cheaply.
    connections: Box<[Option<C>]>,
    /// Per slot: the generation of its connection, or of the next one if it is free;
    /// [`FREE`] once the slot is retired.
    generations: Box<[u32]>,
    /// Capacity `MAXC`, never exceeded (never reallocates).
    failed: VecDeque<Failed<C>>,
}

impl<C> Slots<C> {
    fn new(count: usize) -> Self {
        Self {
            connections: (0..count).map(|_| None).collect(),
            generations: alloc::vec![0; count].into_boxed_slice(),
            failed: VecDeque::with_capacity(count),
        }
    }

    /// The slot of `id`, if `id` (of the server `server`) is attached.
    #[inline]
    fn index_of(&self, server: u32, id: ConnectionId) -> Option<usize> {
        let index = usize::from(id.index());
        let attached = id.server() == server
            && self.connections.get(index).is_some_and(Option::is_some)
            && self.generations[index] == id.generation();
        attached.then_some(index)
    }

    /// The id of the connection in slot `index` (attached or not).
    fn id(&self, server: u32, index: usize) -> ConnectionId {
        // MAXC < u16::MAX is checked at compile time, so the index fits.
        ConnectionId::from_parts(server, index as u16, self.generations[index])
    }

    /// Takes the connection out of slot `index`: requesters holding its id are refused
    /// from now on.
    fn detach(&mut self, index: usize, tags: &[Slot], counters: &mut Counters) -> Option<C> {
        let connection = self.connections[index].take()?;
        // A read-modify-write: its Acquire half synchronises with every requester whose
        // tag read-modify-write came before it (they read the old generation, and counted
        // themselves in first), so `empty_share_generation` sees their counts. Requesters
        // after it read FREE (or a newer tag) and are told the connection is unknown.
        tags[index].tag.swap(FREE, Ordering::AcqRel);
        // The generation is below FREE while attached; the next one may be FREE: the slot is
        // then retired.
        self.generations[index] += 1;
        counters.removed += 1;
        Some(connection)
    }

    /// Removes the connection in slot `index` because it failed, logs it and keeps it for
    /// `take_failed`.
    fn fail(
        &mut self,
        server: u32,
        index: usize,
        error: ConnectionError,
        tags: &[Slot],
        counters: &mut Counters,
    ) {
        let id = self.id(server, index);
        let Some(connection) = self.detach(index, tags, counters) else {
            return;
        };
        counters.failed += 1;
        log::warning!("connection {} removed: {}", id, error);
        if self.failed.len() == self.connections.len() {
            self.failed.pop_front();
        }
        self.failed.push_back(Failed {
            id,
            connection,
            error,
        });
    }
}

/// The server: owns the connections, takes snapshots, answers requests (the
/// `QueueServer` of the Python package `mmf.async`, whose API this crate follows).
///
/// Start from [`QueueServer::new`] (or [`Builder`](crate::Builder) for the other settings):
/// it returns the computation's [`Publisher`] and the server, whose methods are the
/// poller's.
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
    slots: Slots<C>,
    config: Config,
    clock: T,
    counters: Counters,
    /// The snapshot taken last has not been fanned out yet.
    undelivered: bool,
    /// A fan-out of the snapshot taken last is under way: the next slot to deliver to.
    fanout: Option<usize>,
    last_update_at: Option<Duration>,
    last_read_at: Option<Duration>,
    batch: Batch<D::Key>,
    in_call: InCall,
    #[cfg(feature = "std")]
    reader: Option<crate::reader::Store<D>>,
}

/// The next server identity, process-wide. Core's atomic, not the `sync` shim's: the
/// identity names a server; no protocol depends on it.
static NEXT_SERVER_ID: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(1);

/// A server identity not given out before (until the counter wraps, after 2^32 servers).
fn next_server_id() -> u32 {
    NEXT_SERVER_ID.fetch_add(1, core::sync::atomic::Ordering::Relaxed)
}

impl<D: IDict, C: Connection<D>> QueueServer<D, C> {
    /// A server with default settings (no hook, no rate limits, a 64-request queue, up to
    /// 8 connections), and the computation's [`Publisher`].
    ///
    /// Allocates (the triple buffer, the shared state, the queue, the batch and the slots);
    /// call it before the real-time part starts. See [`Builder`](crate::Builder) for the
    /// other settings.
    pub fn new(idict: D) -> (Publisher<D, NoNotify>, Self) {
        Self::with_connections(idict, [])
    }

    /// [`new`](Self::new), with connections attached at once (as `mmf.async`'s
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
            requests: Arc::new(Requests::new(share, next_server_id())),
            slots: Slots::new(MAXC),
            config,
            clock,
            counters: Counters::default(),
            undelivered: false,
            fanout: None,
            last_update_at: None,
            last_read_at: None,
            batch: Batch::with_capacity(Q),
            in_call: InCall::Nothing,
            #[cfg(feature = "std")]
            reader: None,
        };
        (Publisher::new(input, signals), server)
    }

    // ----- connections -----

    /// Attaches a connection and returns its id.
    ///
    /// **Poller.** `O(MAXC)`, no allocation. Asks every connection whether it
    /// [subscribes](Connection::wants_updates), to keep
    /// [`wants_update`](Self::wants_update) true.
    ///
    /// The new connection starts with an empty share of the queue: requests that a former
    /// connection of its slot left queued (or is still putting) never count against it. A
    /// slot keeps two share counters and gives a newcomer a generation whose counter is
    /// empty, skipping one generation if it must; a slot where neither is empty (its last
    /// two connections both still have requests queued: it was reused twice without a
    /// `process_requests` in between) is taken only when no other free slot qualifies, and
    /// then the newcomer's share counts those requests until the poller has drained them.
    /// Among equals, the lowest slot.
    ///
    /// # Errors
    ///
    /// [`ConnectionsFull`] hands the connection back when every slot is taken (or retired:
    /// see [`ConnectionId`]).
    pub fn add_connection(&mut self, connection: C) -> Result<ConnectionId, ConnectionsFull<C>> {
        self.recover();
        let slots = &self.slots;
        let free = |i: &usize| slots.connections[*i].is_none() && slots.generations[*i] != FREE;
        let choice = (0..MAXC)
            .filter(free)
            .find_map(|i| self.empty_share_generation(i).map(|g| (i, g)))
            .or_else(|| (0..MAXC).find(free).map(|i| (i, slots.generations[i])));
        let Some((index, generation)) = choice else {
            return Err(ConnectionsFull(connection));
        };
        self.slots.generations[index] = generation;
        let id = self.slots.id(self.id(), index);
        self.slots.connections[index] = Some(connection);
        // Release: a requester whose read-modify-write reads this tag (Acquire) sees the slot
        // ready. A swap rather than a store, so that every write of the tag is a
        // read-modify-write. (A plain store would be ordered after the requesters'
        // read-modify-writes it follows just as well, but loom does not model that and would
        // let a later load of the tag read a requester's write.)
        self.requests.slots[index]
            .tag
            .swap(generation, Ordering::AcqRel);
        self.counters.added += 1;
        self.refresh_subscribed();
        log::debug!("connection {} added", id);
        Ok(id)
    }

    /// A generation for a newcomer in the free slot `index` whose share counter is empty:
    /// the slot's next generation or, failing that, the one after (the other counter).
    fn empty_share_generation(&self, index: usize) -> Option<u32> {
        let next = self.slots.generations[index];
        let slot = &self.requests.slots[index];
        // Relaxed: the detaching swap synchronised with every requester that counted itself
        // in under the slot's former connections and got past the tag (see `try_put`);
        // requesters still to come read a tag that is not theirs and take their count back.
        [next, next.saturating_add(1)]
            .into_iter()
            .find(|&g| g != FREE && slot.queued(g).load(Ordering::Relaxed) == 0)
    }

    /// Detaches a connection and returns it; `None` if `id` is not attached.
    ///
    /// **Poller.** `O(MAXC)`. Its queued requests are counted in
    /// [`Stats::requests_orphaned`] when the poller drains them.
    pub fn remove_connection(&mut self, id: ConnectionId) -> Option<C> {
        self.recover();
        let index = self.slots.index_of(self.id(), id)?;
        let connection = self
            .slots
            .detach(index, &self.requests.slots, &mut self.counters);
        self.refresh_subscribed();
        connection
    }

    /// The server's identity: every [`ConnectionId`] it issues carries it, and it refuses
    /// ids that carry another.
    pub fn id(&self) -> u32 {
        self.requests.server
    }

    /// Whether `id` names an attached connection.
    pub fn is_attached(&self, id: ConnectionId) -> bool {
        self.slots.index_of(self.id(), id).is_some()
    }

    /// The connection `id`, if attached.
    pub fn connection(&self, id: ConnectionId) -> Option<&C> {
        let index = self.slots.index_of(self.id(), id)?;
        self.slots.connections[index].as_ref()
    }

    /// The connection `id`, if attached, mutably.
    pub fn connection_mut(&mut self, id: ConnectionId) -> Option<&mut C> {
        let index = self.slots.index_of(self.id(), id)?;
        self.slots.connections[index].as_mut()
    }

    /// The ids of the attached connections, in slot order.
    pub fn connection_ids(&self) -> impl Iterator<Item = ConnectionId> + '_ {
        (0..MAXC)
            .filter(|&i| self.slots.connections[i].is_some())
            .map(|i| self.slots.id(self.id(), i))
    }

    /// How many connections are attached.
    pub fn connection_count(&self) -> usize {
        self.slots.connections.iter().flatten().count()
    }

    /// Hands back the oldest connection removed because it failed, with its error.
    ///
    /// The server keeps the last `MAXC` failed connections until they are taken; an older
    /// one is dropped when a newer one needs the room.
    pub fn take_failed(&mut self) -> Option<Failed<C>> {
        self.recover();
        self.slots.failed.pop_front()
    }

    /// Runs `call` on the connection in slot `index`, recorded in `in_call` while it runs;
    /// with `std` a panic is caught and becomes [`ConnectionError::Panicked`].
    #[inline]
    fn call<R>(
        in_call: &mut InCall,
        index: usize,
        connection: &mut C,
        call: impl FnOnce(&mut C) -> R,
    ) -> Result<R, ConnectionError> {
        // MAXC < u16::MAX is checked at compile time, so the index fits.
        *in_call = InCall::Connection(index as u16);
        let result = contain(|| call(connection)).map_err(ConnectionError::Panicked);
        *in_call = InCall::Nothing;
        result
    }

    /// Recovers from a call that a panic unwound out of (see [`fault`](crate::fault)). Runs
    /// no code but the server's own, except to ask the connections whether they subscribe
    /// once one is removed.
    fn recover(&mut self) {
        match core::mem::replace(&mut self.in_call, InCall::Nothing) {
            InCall::Nothing => {}
            InCall::Connection(index) => {
                let error = ConnectionError::Panicked(PanicMessage::unknown());
                let tags = &self.requests.slots;
                let server = self.requests.server;
                self.slots
                    .fail(server, usize::from(index), error, tags, &mut self.counters);
                self.refresh_subscribed();
            }
            InCall::Read => {
                // The group being read (or being found: then only the request at the
                // cursor) is abandoned: reading it again would panic again. It stays one
                // group, found without comparing keys again.
                let batch = &mut self.batch;
                let culprit_end = batch.group_end.max(batch.cursor + 1);
                if batch.abandon_until <= batch.cursor {
                    batch.reason = Abandoned::Panicked;
                }
                batch.abandon_until = batch.abandon_until.max(culprit_end);
                batch.group_end = culprit_end;
            }
            InCall::Sort => {
                let batch = &mut self.batch;
                batch.sorted = false;
                batch.abandon_until = batch.requests.len();
                batch.reason = Abandoned::Panicked;
            }
        }
    }

    /// Asks every connection whether it subscribes, publishes the answer to the demand
    /// word, and returns it. A connection whose `wants_updates` panics fails.
    fn refresh_subscribed(&mut self) -> bool {
        let tags = &self.requests.slots;
        let server = self.requests.server;
        let (slots, in_call, counters) = (&mut self.slots, &mut self.in_call, &mut self.counters);
        Self::ask_subscribed(slots, in_call, tags, counters, &self.signals, server)
    }

    /// [`refresh_subscribed`](Self::refresh_subscribed), on the parts of the server it
    /// needs: called at once when a connection fails (`wants_update` stays exact even if
    /// a panic cuts the call short afterwards).
    fn ask_subscribed(
        slots: &mut Slots<C>,
        in_call: &mut InCall,
        tags: &[Slot],
        counters: &mut Counters,
        signals: &Signals<N>,
        server: u32,
    ) -> bool {
        let mut subscribed = false;
        // Until the first that subscribes: the answer is known then.
        for index in 0..MAXC {
            let Some(connection) = slots.connections[index].as_mut() else {
                continue;
            };
            match Self::call(in_call, index, connection, |c| c.wants_updates()) {
                Ok(wants) => {
                    subscribed = wants;
                    if wants {
                        break;
                    }
                }
                Err(error) => slots.fail(server, index, error, tags, counters),
            }
        }
        signals.set_subscribed(subscribed);
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
        // A fan-out cut short by a panic is not resumed for an older snapshot.
        self.fanout = None;
        #[cfg(feature = "std")]
        if let Some(reader) = &self.reader {
            reader.store(std::sync::Arc::new(self.output.output_buffer().clone()));
        }
        true
    }

    /// Time left before a rate limit of `interval` since `last` lets work through.
    ///
    /// A reading earlier than `last` (a clock that went back, a tick counter that wrapped)
    /// counts as the interval having passed: waiting for the clock to catch up could take
    /// as long as the jump, while every `retry_after` would say less.
    fn wait_left(&self, interval: Option<Duration>, last: Option<Duration>) -> Option<Duration> {
        let (interval, last) = (interval?, last?);
        let elapsed = self.clock.now().checked_sub(last)?;
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
    /// connection (`mmf.async`'s `process_updates`).
    ///
    /// **Poller.** Fans out at most one snapshot: the newest. Connections that fail (or
    /// panic, with `std`) are removed at once, and the others still receive it. With
    /// [`Config::with_min_update_interval`], a snapshot that arrives too soon waits (and is
    /// superseded by newer ones) until the interval has passed; [`Processed::retry_after`]
    /// says when. Once the server is [closed](Self::close) the rate limit no longer
    /// applies, so the last snapshot reaches the subscribers. A fan-out that a panic cut
    /// short (see [`fault`](crate::fault)) is finished by the next call, unless a newer
    /// snapshot has come.
    pub fn process_updates(&mut self) -> Processed {
        // A connection removed because its last call unwound counts as failing in this one.
        let failed_before = self.counters.failed;
        self.recover();
        self.fold_request_counts();
        self.refresh();
        let subscribed = self.refresh_subscribed();
        let mut done = Processed::default();
        if self.fanout.is_none() {
            if !self.undelivered || !subscribed {
                done.failed = (self.counters.failed - failed_before) as usize;
                return done;
            }
            let interval = self.config.min_update_interval();
            if !self.signals.is_closed() {
                if let Some(left) = self.wait_left(interval, self.last_update_at) {
                    done.retry_after = Some(left);
                    done.failed = (self.counters.failed - failed_before) as usize;
                    return done;
                }
            }
            if interval.is_some() {
                self.last_update_at = Some(self.clock.now());
            }
            self.undelivered = false;
            self.counters.delivered += 1;
            self.fanout = Some(0);
        }
        let server = self.id();
        let snapshot = self.output.output_buffer();
        while let Some(index) = self.fanout.filter(|&i| i < MAXC) {
            if let Some(connection) = self.slots.connections[index].as_mut() {
                let delivered = Self::call(&mut self.in_call, index, connection, |c| {
                    if c.wants_updates() {
                        c.on_update(snapshot).map(|()| true)
                    } else {
                        Ok(false)
                    }
                });
                match delivered.and_then(|result| result) {
                    Ok(false) => {}
                    Ok(true) => {
                        done.handled += 1;
                        self.counters.deliveries += 1;
                    }
                    Err(error) => {
                        let tags = &self.requests.slots;
                        let (slots, counters) = (&mut self.slots, &mut self.counters);
                        slots.fail(server, index, error, tags, counters);
                        let in_call = &mut self.in_call;
                        Self::ask_subscribed(slots, in_call, tags, counters, &self.signals, server);
                    }
                }
            }
            self.fanout = Some(index + 1);
        }
        self.fanout = None;
        done.failed = (self.counters.failed - failed_before) as usize;
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

    /// Drains the request queue and answers (`mmf.async`'s `process_requests`).
    ///
    /// **Poller.** Takes at most `Q` requests; reads the newest snapshot once per distinct
    /// query; answers each connection once per query ([`Response::NotFound`] for a key the
    /// snapshot does not have); counts duplicates of an answered request as consolidated,
    /// and requests of removed or failed connections, duplicates included, as orphaned. A
    /// connection that fails (or panics, with `std`) is removed at once; the other
    /// connections are still answered. With [`Config::with_min_request_interval`], a call
    /// too soon after the last read leaves the requests queued to be consolidated into the
    /// next read, and [`Processed::retry_after`] says when. Once the server is
    /// [closed](Self::close) the rate limit no longer applies.
    ///
    /// If a panic unwound through the last call (see [`fault`](crate::fault)), this call
    /// first settles the requests it left: those whose read unwound are abandoned (their
    /// connections told, [`Abandoned::Panicked`]), the others answered; none is answered
    /// twice.
    pub fn process_requests(&mut self) -> Processed {
        let failed_before = self.counters.failed;
        self.recover();
        self.signals.begin_requests();
        self.fold_request_counts();
        let mut done = Processed::default();
        if self.batch.is_open() {
            // A batch a panic cut short: its requests were taken (and the rate limit
            // passed) already.
            self.batch.settled_before = self.batch.cursor;
            self.settle(self.batch.requests.len());
            self.close_batch();
        }
        if self.signals.requests_in_flight() != 0 {
            let interval = self.config.min_request_interval();
            let held = match self.signals.is_closed() {
                true => None,
                false => self.wait_left(interval, self.last_read_at),
            };
            if let Some(left) = held {
                done.retry_after = Some(left);
            } else {
                self.refresh();
                done.handled = self.take_batch();
                if done.handled > 0 {
                    if interval.is_some() {
                        self.last_read_at = Some(self.clock.now());
                    }
                    self.settle(self.batch.requests.len());
                    self.close_batch();
                }
            }
        }
        done.failed = (self.counters.failed - failed_before) as usize;
        done
    }

    /// Gives up on every accepted request without answering it: tells each connection
    /// once per query through [`Connection::on_abandoned`] ([`Abandoned::Stopped`]) and
    /// counts them in [`Stats::requests_abandoned`] (those of removed connections in
    /// [`Stats::requests_orphaned`]).
    ///
    /// **Poller.** For an owner that stops serving requests (a [`Runner`](crate::Runner)
    /// whose poller panicked calls it), so that whoever waits for an answer learns at once
    /// that none will come. It does not [close](Self::close) the request side: close it
    /// first, then call this until [`pending_requests`](Self::pending_requests) is zero (a
    /// request being put as it runs arrives a moment later). Requests a panic left
    /// abandoned are told [`Abandoned::Panicked`], as by `process_requests`.
    pub fn abandon_requests(&mut self) -> Processed {
        let failed_before = self.counters.failed;
        self.recover();
        self.signals.begin_requests();
        self.fold_request_counts();
        let mut done = Processed::default();
        // What a panic left abandoned keeps its reason.
        self.batch.settled_before = self.batch.cursor;
        self.settle(self.batch.abandon_until);
        loop {
            let batch = &mut self.batch;
            batch.abandon_until = batch.requests.len();
            batch.reason = Abandoned::Stopped;
            self.settle(self.batch.requests.len());
            self.close_batch();
            let taken = self.take_batch();
            if taken == 0 {
                break;
            }
            done.handled += taken;
        }
        done.failed = (self.counters.failed - failed_before) as usize;
        done
    }

    /// Drains the queue into the (settled, empty) batch and sorts it; returns how many
    /// requests it took.
    fn take_batch(&mut self) -> usize {
        let requests = &mut self.batch.requests;
        while requests.len() < Q {
            let Some(request) = self.requests.take() else {
                break;
            };
            requests.push(request);
        }
        // Pending now: at least the batch (and what is left in the queue). Counted here as
        // well as when the batch closes, in case a panic keeps it from closing.
        self.counters.high_water = self.counters.high_water.max(requests.len());
        self.in_call = InCall::Sort;
        self.batch.requests.sort_unstable();
        self.in_call = InCall::Nothing;
        self.batch.requests.len()
    }

    /// Settles the batch's requests from the cursor up to `end`, one at a time: each is
    /// counted, and the cursor moved past it, as soon as its fate is known.
    fn settle(&mut self, end: usize) {
        let server = self.id();
        let snapshot = self.output.output_buffer();
        let Self {
            batch,
            slots,
            counters,
            in_call,
            requests,
            signals,
            ..
        } = self;
        let tags = &requests.slots;
        // The value of the current group's key, read at its first request settled here.
        let mut value: Option<Option<D::Value>> = None;
        while batch.cursor < end.min(batch.requests.len()) {
            let at = batch.cursor;
            let abandon = at < batch.abandon_until;
            if at >= batch.group_end {
                // A new group: the requests for one query.
                batch.previous = None;
                value = None;
                batch.group_end = at + 1;
                if batch.sorted {
                    *in_call = InCall::Read;
                    let query = &batch.requests[at].query;
                    let same = batch.requests[at..]
                        .iter()
                        .take_while(|r| r.query == *query)
                        .count();
                    batch.group_end = at + same;
                    *in_call = InCall::Nothing;
                }
                if !abandon {
                    counters.reads += 1;
                }
            }
            let request = &batch.requests[at];
            // A copy: `previous` below is written while `request` is borrowed.
            let from = request.from;
            if !abandon && value.is_none() {
                if let Query::Key(key) = &request.query {
                    *in_call = InCall::Read;
                    value = Some(snapshot.get(key));
                    *in_call = InCall::Nothing;
                }
            }
            let outcome = match batch.previous {
                // A repeat shares the fate of the connection's first request for the query.
                Some((previous, outcome)) if previous == from => {
                    match outcome {
                        Outcome::Answered => counters.consolidated += 1,
                        Outcome::Orphaned => counters.orphaned += 1,
                        Outcome::Abandoned => counters.abandoned += 1,
                    }
                    outcome
                }
                _ => match slots.index_of(server, from) {
                    None => {
                        counters.orphaned += 1;
                        Outcome::Orphaned
                    }
                    Some(index) => {
                        let connection = slots.connections[index]
                            .as_mut()
                            .expect("index_of found it attached");
                        let (outcome, result) = if abandon {
                            let reason = batch.reason;
                            let result = Self::call(in_call, index, connection, |c| {
                                c.on_abandoned(&request.query, reason)
                            });
                            counters.abandoned += 1;
                            (Outcome::Abandoned, result)
                        } else {
                            let seq = snapshot.seq();
                            let response = match (&request.query, &value) {
                                (Query::Key(key), Some(Some(value))) => {
                                    Response::Value { key, value, seq }
                                }
                                (Query::Key(key), _) => Response::NotFound { key, seq },
                                (Query::All, _) => Response::Snapshot(snapshot),
                            };
                            let result =
                                Self::call(in_call, index, connection, |c| c.on_response(response));
                            if matches!(result, Ok(Ok(()))) {
                                counters.answered += 1;
                                (Outcome::Answered, result)
                            } else {
                                counters.orphaned += 1;
                                (Outcome::Orphaned, result)
                            }
                        };
                        if let Err(error) = result.and_then(|r| r) {
                            slots.fail(server, index, error, tags, counters);
                            Self::ask_subscribed(slots, in_call, tags, counters, signals, server);
                        }
                        outcome
                    }
                },
            };
            batch.previous = Some((from, outcome));
            batch.cursor = at + 1;
        }
    }

    /// Ends a settled batch: takes its requests out of the pending count.
    fn close_batch(&mut self) {
        let batch = &mut self.batch;
        if batch.is_open() {
            return;
        }
        let settled = batch.requests.len();
        if settled > 0 {
            // Between two batches the count only grows (refused requests leave again at
            // once), so its value just before this batch leaves is the peak since the last
            // (less what an earlier call settled already).
            let in_flight = self.signals.requests_in_flight() - batch.settled_before;
            self.counters.high_water = self.counters.high_water.max(in_flight);
            self.signals.leave_requests(settled);
        }
        batch.requests.clear();
        batch.cursor = 0;
        batch.group_end = 0;
        batch.abandon_until = 0;
        batch.sorted = true;
        batch.previous = None;
        batch.settled_before = 0;
    }

    /// [`process_updates`](Self::process_updates), then
    /// [`process_requests`](Self::process_requests).
    pub fn poll(&mut self) -> Processed {
        let updates = self.process_updates();
        updates.merge(self.process_requests())
    }

    /// Whether a snapshot was published that the poller has not taken, or a request was
    /// put since the poller last began processing requests: the work that the hook was (or
    /// would have been) told of.
    pub fn has_pending_events(&self) -> bool {
        self.output.updated() || self.signals.request_pending()
    }

    /// Requests accepted and not yet settled (queued, in a batch, or being put).
    pub fn pending_requests(&self) -> usize {
        // The batch's settled requests leave the count together, when it closes.
        self.signals.requests_in_flight() - self.batch.cursor
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

    /// Closes the request side and marks the server unserved: `wants_update` is false, and
    /// readers waiting for a newer snapshot are told none will come, until a poller works on
    /// it again. For a runner whose poller stops.
    #[cfg(feature = "std")]
    pub(crate) fn stop(&mut self) {
        self.signals.stop();
        if let Some(reader) = &self.reader {
            reader.unserved();
        }
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
            requests_abandoned: c.abandoned,
            reads: c.reads,
            pending_high_water: c.high_water.max(self.pending_requests()) as u64,
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
            .get_or_insert_with(|| crate::reader::Store::new(snapshot.clone()))
            .reader()
    }
}

/// Dropping the server closes its request side for good: every later `put_request`
/// returns [`RequestError::Closed`], [`Requester::is_closed`] is true and
/// [`Publisher::wants_update`] false, so no requester is told its request was accepted when
/// nobody will answer it. Requests still pending are dropped with the connections, unanswered
/// and uncounted (the counts go with the server); a connection whose owner waits for answers
/// learns it when it is dropped. To settle them first, [close](QueueServer::close) and call
/// [`process_requests`](QueueServer::process_requests) until
/// [`pending_requests`](QueueServer::pending_requests) is zero, or
/// [`abandon_requests`](QueueServer::abandon_requests). Runs none of the connections' code
/// (but their `Drop`).
impl<D: IDict, C, N, T, const Q: usize, const MAXC: usize> Drop
    for QueueServer<D, C, N, T, Q, MAXC>
{
    fn drop(&mut self) {
        self.signals.stop();
        log::debug!("server {} dropped", self.requests.server);
    }
}

impl<D: IDict, C, N, T, const Q: usize, const MAXC: usize> fmt::Debug
    for QueueServer<D, C, N, T, Q, MAXC>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueServer")
            .field("id", &self.requests.server)
            .field("capacity", &Q)
            .field("max_connections", &MAXC)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::{InCall, WideCount};
    use crate::{Connection, ConnectionError, QueueServer, Request, Response, Snapshot};
    use alloc::collections::BTreeMap;
    use alloc::vec::Vec;

    type State = BTreeMap<u8, u8>;

    /// Records the updates and answers it receives.
    #[derive(Default)]
    struct Log {
        updates: Vec<u64>,
        answers: usize,
    }

    impl Connection<State> for Log {
        fn on_update(&mut self, snapshot: &Snapshot<State>) -> Result<(), ConnectionError> {
            self.updates.push(snapshot.seq());
            Ok(())
        }

        fn on_response(&mut self, _: Response<'_, State>) -> Result<(), ConnectionError> {
            self.answers += 1;
            Ok(())
        }
    }

    // Where panics unwind without `std`, a connection's panic is not caught: it leaves
    // the server as these tests set it up by hand (the call recorded in `in_call`, the
    // fan-out or the batch where it stopped).

    #[test]
    fn a_connection_call_that_unwound_fails_the_connection_and_orphans_its_request() {
        let (_, mut server) = QueueServer::new(State::from([(1, 1)]));
        let culprit = server.add_connection(Log::default()).unwrap();
        let other = server.add_connection(Log::default()).unwrap();
        server.put_request(Request::key(culprit, 1)).unwrap();
        server.put_request(Request::key(other, 1)).unwrap();
        // on_response of `culprit` unwound: the batch was taken, nothing settled.
        server.refresh();
        server.take_batch();
        server.in_call = InCall::Connection(culprit.index());
        let done = server.process_requests();
        assert_eq!(done.failed, 1);
        let failed = server.take_failed().unwrap();
        assert_eq!(failed.id, culprit);
        assert_eq!(
            failed.error.to_string(),
            "connection panicked: (no message)"
        );
        assert_eq!(server.connection(other).unwrap().answers, 1);
        let stats = server.stats();
        assert_eq!((stats.requests_answered, stats.requests_orphaned), (1, 1));
        assert_eq!(server.pending_requests(), 0);
    }

    #[test]
    fn a_fan_out_that_unwound_goes_on_from_the_next_connection() {
        let (mut publisher, mut server) = QueueServer::new(State::new());
        let ids: Vec<_> = (0..3)
            .map(|_| server.add_connection(Log::default()).unwrap())
            .collect();
        publisher.put_update(&State::from([(1, 1)]));
        // The fan-out of snapshot 1 delivered to the first connection, then the second's
        // on_update unwound.
        assert!(server.refresh());
        server.undelivered = false;
        server.counters.delivered += 1;
        server.slots.connections[0]
            .as_mut()
            .unwrap()
            .updates
            .push(1);
        server.counters.deliveries += 1;
        server.fanout = Some(1);
        server.in_call = InCall::Connection(ids[1].index());
        let done = server.process_updates();
        assert_eq!((done.handled, done.failed), (1, 1));
        assert!(!server.is_attached(ids[1]));
        for id in [ids[0], ids[2]] {
            assert_eq!(server.connection(id).unwrap().updates, [1]);
        }
        let stats = server.stats();
        assert_eq!((stats.updates_delivered, stats.deliveries), (1, 2));
    }

    #[test]
    fn a_widened_count_survives_the_counter_wrapping() {
        // 10 counted so far; the counter stood 3 short of wrapping at the last fold.
        let mut count = WideCount {
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
