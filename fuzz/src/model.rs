//! A reference model of a single-threaded `QueueServer`, written from its documentation
//! (the crate docs, the docs of `Stats`, `Config`, `Request` and the server's methods, and
//! the design notes), with plain std collections and no atomics.
//!
//! The model keeps the state the documentation talks about, in the most direct form: the
//! request queue is a `VecDeque` of requests, a connection's share is counted from the
//! queue itself, the high-water mark is the most requests ever pending, and a batch is
//! answered by walking it sorted. Nothing here is shared with the crate except its public
//! value types (ids, requests, errors, stats), so the server and the model can disagree.
//!
//! Where the documentation leaves a choice open, the model follows the crate's reasonable
//! choice, and says so in a comment marked **Choice**.

use queueserver::{
    Abandoned, ConfigError, ConnectionError, ConnectionId, PanicMessage, Processed, Query, Request,
    RequestError, Stats,
};
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

/// The key of the IDict the fuzzer publishes.
pub type Key = u8;
/// Its values.
pub type Value = i32;
/// The IDict the fuzzer publishes.
pub type Data = BTreeMap<Key, Value>;

/// The key whose read panics (the server's `IDict::get` panics on it).
pub const PANIC_KEY: Key = 0xEE;

/// The message of a connection's deliberate panic.
pub const CONNECTION_PANIC: &str = "fuzz: a connection panics on purpose";

/// The message of the deliberate panic of a read of [`PANIC_KEY`].
pub const READ_PANIC: &str = "fuzz: the read of the key that panics";

/// A poller call that a panic unwound through: it returned nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unwound;

/// What a connection was handed, as it saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seen {
    /// `on_update` with the snapshot numbered `seq`.
    Update {
        /// Its sequence number.
        seq: u64,
        /// Its data.
        data: Data,
    },
    /// `on_response` with a value.
    Value {
        /// The key asked for.
        key: Key,
        /// Its value.
        value: Value,
        /// The snapshot it was read from.
        seq: u64,
    },
    /// `on_response` saying the key does not exist.
    NotFound {
        /// The key asked for.
        key: Key,
        /// The snapshot searched.
        seq: u64,
    },
    /// `on_response` with the whole snapshot.
    Snapshot {
        /// Its sequence number.
        seq: u64,
        /// Its data.
        data: Data,
    },
    /// `on_abandoned`: a request for `query` will not be answered.
    Abandoned {
        /// The query.
        query: Query<Key>,
        /// Why.
        why: Abandoned,
    },
}

/// One call a connection received, and what it returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    /// What it was handed.
    pub seen: Seen,
    /// What it answered.
    pub result: Result<(), ConnectionError>,
}

/// How a connection behaves: whether it subscribes, and when it fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Behaviour {
    /// What `wants_updates` returns when the connection is attached.
    pub wants_updates: bool,
    /// `on_update` fails once this many calls of it have succeeded.
    pub fail_update_after: Option<u32>,
    /// `on_response` fails once this many calls of it have succeeded.
    pub fail_response_after: Option<u32>,
    /// The error it fails with.
    pub error: ConnectionError,
    /// Whether it fails by panicking (with [`CONNECTION_PANIC`]) rather than returning the
    /// error; `error` is then the `ConnectionError::Panicked` the server makes of it.
    pub panics: bool,
}

impl Behaviour {
    /// A connection that never fails and does not subscribe.
    pub fn quiet() -> Self {
        Self {
            wants_updates: false,
            fail_update_after: None,
            fail_response_after: None,
            error: ConnectionError::Closed,
            panics: false,
        }
    }

    /// The error of a connection that panics.
    pub fn panicked() -> ConnectionError {
        ConnectionError::Panicked(PanicMessage::new(CONNECTION_PANIC))
    }

    /// The result of the next `on_update`, after `ok` successful ones.
    pub fn update_result(&self, ok: u32) -> Result<(), ConnectionError> {
        Self::result(self.fail_update_after, ok, self.error)
    }

    /// The result of the next `on_response`, after `ok` successful ones.
    pub fn response_result(&self, ok: u32) -> Result<(), ConnectionError> {
        Self::result(self.fail_response_after, ok, self.error)
    }

    fn result(after: Option<u32>, ok: u32, error: ConnectionError) -> Result<(), ConnectionError> {
        match after {
            Some(n) if ok >= n => Err(error),
            _ => Ok(()),
        }
    }
}

/// The settings a model and a server are built with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// The request queue's capacity `Q`.
    pub q: usize,
    /// The number of connection slots `MAXC`.
    pub maxc: usize,
    /// `Config::with_max_pending_per_connection`, if set.
    pub share: Option<u32>,
    /// `Config::with_min_update_interval`, if set.
    pub update_interval: Option<Duration>,
    /// `Config::with_min_request_interval`, if set.
    pub request_interval: Option<Duration>,
}

impl Settings {
    /// The per-connection share: the one set, or an even share of the queue, at least 1.
    pub fn share(&self) -> u32 {
        self.share.unwrap_or_else(|| {
            let even = self.q / self.maxc.max(1);
            u32::try_from(even.max(1)).unwrap_or(u32::MAX)
        })
    }

    /// Whether a server with these settings and a running clock may be built.
    pub fn check(&self) -> Result<(), ConfigError> {
        let share = self.share();
        if share == 0 || share as usize > self.q {
            return Err(ConfigError::Share {
                share,
                capacity: self.q,
            });
        }
        Ok(())
    }
}

/// An attached connection, as the model sees it.
#[derive(Clone, Debug)]
struct Conn {
    label: u32,
    behaviour: Behaviour,
    wants_updates: bool,
    updates_ok: u32,
    responses_ok: u32,
}

/// A connection the server removed because it failed: its id, label and error.
pub type FailedConn = (ConnectionId, u32, ConnectionError);

/// The rest of a batch whose read panicked, from the group being read: that group is
/// abandoned, the others answered, by the next call (documented: see `queueserver::fault`).
#[derive(Debug)]
struct Leftover {
    requests: Vec<Request<Key>>,
    /// The end of the group whose read panicked.
    culprit_end: usize,
}

impl Leftover {
    fn new(requests: &[Request<Key>]) -> Self {
        let query = &requests[0].query;
        Self {
            culprit_end: requests.iter().take_while(|r| r.query == *query).count(),
            requests: requests.to_vec(),
        }
    }
}

/// What becomes of a group of a batch.
#[derive(Clone, Copy, Debug)]
enum Fate {
    Answer,
    Abandon(Abandoned),
}

/// How a request was settled: a repeat of it by the same connection shares its fate.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Outcome {
    Answered,
    Orphaned,
    Abandoned,
}

/// The reference model of one server, its publisher, one requester and a counting hook.
#[derive(Debug)]
pub struct Model {
    settings: Settings,
    now: Duration,
    closed: bool,
    /// Publishes so far: the sequence number of the newest.
    published: u64,
    /// The data of the newest publish.
    newest: Data,
    /// The data of the snapshot the poller took last (its number is
    /// `stats.updates_published`).
    taken: Data,
    /// The snapshot taken last still waits for its fan-out.
    undelivered: bool,
    /// The subscription bit of `wants_update`, as the poller last wrote it.
    subscribed: bool,
    last_fan_out: Option<Duration>,
    last_read: Option<Duration>,
    slots: Vec<Option<Conn>>,
    /// The identity of the server modelled: its ids carry it.
    server: u32,
    /// Per slot: the generation of its connection, or of the next one; `u32::MAX` once the
    /// slot is retired.
    generations: Vec<u32>,
    queue: VecDeque<Request<Key>>,
    /// What a `process_requests` cut short by a panic left, to settle next.
    leftover: Option<Leftover>,
    /// The server was dropped: nobody serves it.
    dropped: bool,
    failed: VecDeque<FailedConn>,
    request_pending: bool,
    notified: (usize, usize),
    stats: Stats,
    calls: BTreeMap<u32, Vec<Call>>,
}

impl Model {
    /// A model of the server `server` (its identity), built with `settings` from `initial`,
    /// or the error the builder gives.
    pub fn new(settings: Settings, initial: Data, server: u32) -> Result<Self, ConfigError> {
        settings.check()?;
        Ok(Self {
            settings,
            now: Duration::ZERO,
            closed: false,
            published: 0,
            newest: initial.clone(),
            taken: initial,
            undelivered: false,
            subscribed: false,
            last_fan_out: None,
            last_read: None,
            slots: vec![None; settings.maxc],
            server,
            generations: vec![0; settings.maxc],
            queue: VecDeque::new(),
            leftover: None,
            dropped: false,
            failed: VecDeque::new(),
            request_pending: false,
            notified: (0, 0),
            stats: Stats::default(),
            calls: BTreeMap::new(),
        })
    }

    // ----- the computation -----

    /// `Publisher::put_update(data)`.
    pub fn publish(&mut self, data: &Data) {
        // The hook is told when the publish finds the last snapshot taken.
        if !self.update_pending() {
            self.notified.0 += 1;
        }
        self.published += 1;
        self.newest.clone_from(data);
    }

    /// A publish waits that the poller has not taken.
    fn update_pending(&self) -> bool {
        self.published > self.stats.updates_published
    }

    /// `Publisher::published()`.
    pub fn published(&self) -> u64 {
        self.published
    }

    // ----- connections -----

    fn conn(&self, id: ConnectionId) -> Option<&Conn> {
        let index = usize::from(id.index());
        match self.slots.get(index) {
            Some(Some(conn))
                if id.server() == self.server && self.generations[index] == id.generation() =>
            {
                Some(conn)
            }
            _ => None,
        }
    }

    /// Requests queued in slot `index` under a generation of the same parity as
    /// `generation`: what the share counter of a connection of that generation counts.
    fn queued_like(&self, index: usize, generation: u32) -> usize {
        self.queue
            .iter()
            .filter(|r| {
                usize::from(r.from.index()) == index && r.from.generation() % 2 == generation % 2
            })
            .count()
    }

    fn any_subscriber(&self) -> bool {
        self.slots.iter().flatten().any(|c| c.wants_updates)
    }

    /// `QueueServer::add_connection`: the id, or the label handed back when every slot is
    /// taken.
    pub fn add_connection(
        &mut self,
        label: u32,
        behaviour: Behaviour,
    ) -> Result<ConnectionId, u32> {
        let free: Vec<usize> = (0..self.settings.maxc)
            .filter(|&i| self.slots[i].is_none() && self.generations[i] != u32::MAX)
            .collect();
        // Documented: a newcomer gets a generation whose share counter is empty (the
        // slot's next one, or the one after), in the lowest slot that has one; failing
        // that, the lowest free slot and its next generation.
        let clean = free.iter().find_map(|&i| {
            let next = self.generations[i];
            [next, next.saturating_add(1)]
                .into_iter()
                .find(|&g| g != u32::MAX && self.queued_like(i, g) == 0)
                .map(|g| (i, g))
        });
        let Some((index, generation)) =
            clean.or_else(|| free.first().map(|&i| (i, self.generations[i])))
        else {
            return Err(label);
        };
        self.generations[index] = generation;
        self.slots[index] = Some(Conn {
            label,
            behaviour,
            wants_updates: behaviour.wants_updates,
            updates_ok: 0,
            responses_ok: 0,
        });
        self.calls.entry(label).or_default();
        self.stats.connections_added += 1;
        self.subscribed = self.any_subscriber();
        Ok(ConnectionId::from_parts(
            self.server,
            index as u16,
            generation,
        ))
    }

    fn detach(&mut self, index: usize) -> Conn {
        let conn = self.slots[index].take().expect("an attached slot");
        // Documented: every later connection of the slot has a higher generation; the slot
        // retires when they run out.
        self.generations[index] += 1;
        self.stats.connections_removed += 1;
        self.subscribed = self.any_subscriber();
        conn
    }

    /// `QueueServer::remove_connection`: the label of the connection removed.
    pub fn remove_connection(&mut self, id: ConnectionId) -> Option<u32> {
        self.conn(id)?;
        Some(self.detach(usize::from(id.index())).label)
    }

    fn fail(&mut self, index: usize, error: ConnectionError) {
        let id = ConnectionId::from_parts(self.server, index as u16, self.generations[index]);
        let conn = self.detach(index);
        self.stats.connections_failed += 1;
        // Documented: the last `MAXC` failed connections are kept; the oldest makes room.
        if self.failed.len() == self.settings.maxc {
            self.failed.pop_front();
        }
        self.failed.push_back((id, conn.label, error));
    }

    /// `QueueServer::take_failed`.
    pub fn take_failed(&mut self) -> Option<FailedConn> {
        self.failed.pop_front()
    }

    /// Changes what an attached connection's `wants_updates` returns; whether `id` is
    /// attached (`QueueServer::connection_mut(id).is_some()`).
    pub fn set_wants_updates(&mut self, id: ConnectionId, wants: bool) -> bool {
        let index = usize::from(id.index());
        if self.conn(id).is_none() {
            return false;
        }
        // Documented: `wants_updates` is read by the poller on `process_updates`; the
        // demand bit changes then, not now.
        self.slots[index].as_mut().expect("attached").wants_updates = wants;
        true
    }

    /// `QueueServer::is_attached`.
    pub fn is_attached(&self, id: ConnectionId) -> bool {
        self.conn(id).is_some()
    }

    /// The label of the connection `id` (`QueueServer::connection`).
    pub fn label(&self, id: ConnectionId) -> Option<u32> {
        self.conn(id).map(|c| c.label)
    }

    /// `QueueServer::connection_ids`, in slot order.
    pub fn connection_ids(&self) -> Vec<ConnectionId> {
        (0..self.settings.maxc)
            .filter(|&i| self.slots[i].is_some())
            .map(|i| ConnectionId::from_parts(self.server, i as u16, self.generations[i]))
            .collect()
    }

    /// The calls each connection ever received, by label.
    pub fn calls(&self) -> &BTreeMap<u32, Vec<Call>> {
        &self.calls
    }

    fn call(&mut self, index: usize, seen: Seen, update: bool) -> Result<(), ConnectionError> {
        let conn = self.slots[index].as_mut().expect("an attached slot");
        let result = if update {
            conn.behaviour.update_result(conn.updates_ok)
        } else {
            conn.behaviour.response_result(conn.responses_ok)
        };
        if result.is_ok() {
            if update {
                conn.updates_ok += 1;
            } else {
                conn.responses_ok += 1;
            }
        }
        self.calls
            .get_mut(&conn.label)
            .expect("a known label")
            .push(Call { seen, result });
        result
    }

    // ----- the clock and the rate limits -----

    /// `ManualClock::advance(by)`.
    pub fn advance(&mut self, by: Duration) {
        self.now = self.now.saturating_add(by);
    }

    /// `ManualClock::rewind(by)`.
    pub fn rewind(&mut self, by: Duration) {
        self.now = self.now.saturating_sub(by);
    }

    /// The time left before a limit of `interval`, last let through at `last`, lets work
    /// through. Documented: the limit is lifted once the server is closed.
    fn wait_left(&self, interval: Option<Duration>, last: Option<Duration>) -> Option<Duration> {
        if self.closed {
            return None;
        }
        // Documented: a reading earlier than the last counts as the interval passed.
        let elapsed = self.now.checked_sub(last?)?;
        let interval = interval?;
        (elapsed < interval).then(|| interval - elapsed)
    }

    // ----- updates -----

    /// Takes the newest publish if the poller has not seen it yet.
    fn take_newest(&mut self) {
        let seen = self.stats.updates_published;
        if self.published == seen {
            return;
        }
        // Documented: the snapshots published between the last one taken and this one
        // were overwritten; a taken one that was never fanned out is superseded.
        self.stats.updates_overwritten += self.published - seen - 1;
        self.stats.updates_published = self.published;
        self.stats.updates_received += 1;
        if self.undelivered {
            self.stats.updates_superseded += 1;
        }
        self.undelivered = true;
        self.taken.clone_from(&self.newest);
    }

    /// `QueueServer::process_updates`.
    pub fn process_updates(&mut self) -> Processed {
        self.take_newest();
        self.subscribed = self.any_subscriber();
        let mut done = Processed::default();
        // **Choice**: nothing to fan out, or nobody to fan it out to, is no work, so no
        // retry time either.
        if !self.undelivered || !self.subscribed {
            return done;
        }
        let interval = self.settings.update_interval;
        if let Some(left) = self.wait_left(interval, self.last_fan_out) {
            done.retry_after = Some(left);
            return done;
        }
        if interval.is_some() {
            self.last_fan_out = Some(self.now);
        }
        self.undelivered = false;
        self.stats.updates_delivered += 1;
        let seq = self.stats.updates_published;
        let mut failures = Vec::new();
        // **Choice**: subscribers are called in slot order, so the failed ones are handed
        // back in slot order.
        for index in 0..self.settings.maxc {
            if !self.slots[index].as_ref().is_some_and(|c| c.wants_updates) {
                continue;
            }
            let seen = Seen::Update {
                seq,
                data: self.taken.clone(),
            };
            match self.call(index, seen, true) {
                Ok(()) => done.handled += 1,
                Err(error) => failures.push((index, error)),
            }
        }
        self.stats.deliveries += done.handled as u64;
        done.failed = failures.len();
        for (index, error) in failures {
            self.fail(index, error);
        }
        done
    }

    // ----- requests -----

    /// `Requester::put_request` (and `QueueServer::put_request`).
    pub fn put_request(&mut self, request: Request<Key>) -> Result<(), RequestError<Key>> {
        let result = self.try_put(request);
        if result.is_ok() {
            self.stats.requests_accepted += 1;
            let pending = self.pending_requests() as u64;
            self.stats.pending_high_water = self.stats.pending_high_water.max(pending);
            if !self.request_pending {
                self.request_pending = true;
                self.notified.1 += 1;
            }
        } else {
            self.stats.requests_rejected += 1;
        }
        result
    }

    fn try_put(&mut self, request: Request<Key>) -> Result<(), RequestError<Key>> {
        // **Choice**: an unknown connection is told so even once the server is closed;
        // documented: the share is checked before the queue's room.
        if self.conn(request.from).is_none() {
            return Err(RequestError::UnknownConnection(request));
        }
        if self.closed {
            return Err(RequestError::Closed(request));
        }
        // Documented: a connection's share counts its own requests queued, and those of the
        // slot's former connections of the same generation parity (only ever left queued
        // when no slot with an empty counter was free for it).
        let queued = self.queued_like(usize::from(request.from.index()), request.from.generation());
        if queued >= self.settings.share() as usize {
            return Err(RequestError::OverQuota(request));
        }
        if self.queue.len() >= self.settings.q {
            return Err(RequestError::Full(request));
        }
        self.queue.push_back(request);
        Ok(())
    }

    /// `QueueServer::process_requests`: `Err` when the read of [`PANIC_KEY`] panics.
    pub fn process_requests(&mut self) -> Result<Processed, Unwound> {
        self.request_pending = false;
        let failed_before = self.stats.connections_failed;
        let mut done = Processed::default();
        // Documented: requests a panic left are settled first (the group being read
        // abandoned, the rest answered), with no new read of the queue in between.
        if let Some(left) = self.leftover.take() {
            let culprit_end = left.culprit_end;
            self.settle(&left.requests, |at| {
                if at < culprit_end {
                    Fate::Abandon(Abandoned::Panicked)
                } else {
                    Fate::Answer
                }
            })?;
        }
        if !self.queue.is_empty() {
            let interval = self.settings.request_interval;
            if let Some(left) = self.wait_left(interval, self.last_read) {
                done.retry_after = Some(left);
            } else {
                // Documented: answers come from the newest snapshot. **Choice**: it is
                // taken only when requests are about to be answered.
                self.take_newest();
                if interval.is_some() {
                    self.last_read = Some(self.now);
                }
                let batch = self.take_batch();
                done.handled = batch.len();
                self.settle(&batch, |_| Fate::Answer)?;
            }
        }
        done.failed = (self.stats.connections_failed - failed_before) as usize;
        Ok(done)
    }

    /// `QueueServer::abandon_requests`.
    pub fn abandon_requests(&mut self) -> Processed {
        self.request_pending = false;
        let failed_before = self.stats.connections_failed;
        let mut done = Processed::default();
        let stopped = Fate::Abandon(Abandoned::Stopped);
        if let Some(left) = self.leftover.take() {
            let culprit_end = left.culprit_end;
            let settled = self.settle(&left.requests, |at| {
                if at < culprit_end {
                    Fate::Abandon(Abandoned::Panicked)
                } else {
                    stopped
                }
            });
            assert!(settled.is_ok(), "abandoning reads nothing");
        }
        while !self.queue.is_empty() {
            let batch = self.take_batch();
            done.handled += batch.len();
            let settled = self.settle(&batch, |_| stopped);
            assert!(settled.is_ok(), "abandoning reads nothing");
        }
        done.failed = (self.stats.connections_failed - failed_before) as usize;
        done
    }

    /// Takes at most `Q` requests off the queue, sorted. Documented: a batch is handled in
    /// the order of `Request`: by query, then connection.
    fn take_batch(&mut self) -> Vec<Request<Key>> {
        let n = self.queue.len().min(self.settings.q);
        let mut batch: Vec<Request<Key>> = self.queue.drain(..n).collect();
        batch.sort();
        batch
    }

    /// Settles `batch` group by group (a group: the requests for one query), each as
    /// `fate` says of the group starting at that index. A read of [`PANIC_KEY`] panics:
    /// the rest of the batch, from that group, is left over, and the call unwinds.
    fn settle(
        &mut self,
        batch: &[Request<Key>],
        fate: impl Fn(usize) -> Fate,
    ) -> Result<(), Unwound> {
        let mut start = 0;
        while start < batch.len() {
            let query = &batch[start].query;
            let end = start
                + batch[start..]
                    .iter()
                    .take_while(|r| r.query == *query)
                    .count();
            let fate = fate(start);
            if let Fate::Answer = fate {
                self.stats.reads += 1;
                if *query == Query::Key(PANIC_KEY) {
                    self.leftover = Some(Leftover::new(&batch[start..]));
                    return Err(Unwound);
                }
            }
            let seq = self.stats.updates_published;
            let mut last: Option<(ConnectionId, Outcome)> = None;
            for request in &batch[start..end] {
                // Documented: a repeat of a connection's query shares the fate of the
                // first: consolidated into its answer, or orphaned or abandoned with it.
                if let Some((from, outcome)) = last {
                    if from == request.from {
                        match outcome {
                            Outcome::Answered => self.stats.requests_consolidated += 1,
                            Outcome::Orphaned => self.stats.requests_orphaned += 1,
                            Outcome::Abandoned => self.stats.requests_abandoned += 1,
                        }
                        continue;
                    }
                }
                let index = usize::from(request.from.index());
                let outcome = if self.conn(request.from).is_none() {
                    self.stats.requests_orphaned += 1;
                    Outcome::Orphaned
                } else {
                    match fate {
                        Fate::Abandon(why) => {
                            let seen = Seen::Abandoned {
                                query: request.query.clone(),
                                why,
                            };
                            self.stats.requests_abandoned += 1;
                            if let Err(error) = self.call(index, seen, false) {
                                self.fail(index, error);
                            }
                            Outcome::Abandoned
                        }
                        Fate::Answer => {
                            let seen = match request.query {
                                Query::Key(key) => match self.taken.get(&key) {
                                    Some(&value) => Seen::Value { key, value, seq },
                                    None => Seen::NotFound { key, seq },
                                },
                                Query::All => Seen::Snapshot {
                                    seq,
                                    data: self.taken.clone(),
                                },
                            };
                            match self.call(index, seen, false) {
                                Ok(()) => {
                                    self.stats.requests_answered += 1;
                                    Outcome::Answered
                                }
                                // Documented: a connection that fails is removed at once.
                                Err(error) => {
                                    self.stats.requests_orphaned += 1;
                                    self.fail(index, error);
                                    Outcome::Orphaned
                                }
                            }
                        }
                    }
                };
                last = Some((request.from, outcome));
            }
            start = end;
        }
        Ok(())
    }

    /// `QueueServer::poll`: `Err` when its `process_requests` unwinds.
    pub fn poll(&mut self) -> Result<Processed, Unwound> {
        let updates = self.process_updates();
        Ok(updates.merge(self.process_requests()?))
    }

    /// Drops the server: documented, its request side closes for good and `wants_update`
    /// turns false.
    pub fn drop_server(&mut self) {
        self.closed = true;
        self.dropped = true;
    }

    /// `QueueServer::close`.
    pub fn close(&mut self) {
        self.closed = true;
    }

    // ----- what the server shows -----

    /// `QueueServer::stats`.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// `QueueServer::pending_requests`.
    pub fn pending_requests(&self) -> usize {
        self.queue.len() + self.leftover.as_ref().map_or(0, |l| l.requests.len())
    }

    /// `QueueServer::wants_update` and `Publisher::wants_update`.
    pub fn wants_update(&self) -> bool {
        !self.dropped && (self.subscribed || self.pending_requests() > 0)
    }

    /// `QueueServer::has_pending_events`.
    pub fn has_pending_events(&self) -> bool {
        self.update_pending() || self.request_pending
    }

    /// `QueueServer::is_closed` and `Requester::is_closed`.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The newest snapshot the poller took: `QueueServer::snapshot` and `Reader::load`.
    pub fn snapshot(&self) -> (u64, &Data) {
        (self.stats.updates_published, &self.taken)
    }

    /// How often the hook was told of (updates, requests).
    pub fn notified(&self) -> (usize, usize) {
        self.notified
    }

    /// `QueueServer::share`.
    pub fn share(&self) -> u32 {
        self.settings.share()
    }

    /// Checks the identities `Stats` documents; `Err` says which one fails.
    pub fn check_identities(&self) -> Result<(), String> {
        let s = &self.stats;
        let pending = u64::from(self.undelivered);
        let checks = [
            (
                "published = received + overwritten",
                s.updates_published == s.updates_received + s.updates_overwritten,
            ),
            (
                "received = delivered + superseded + pending fan-out",
                s.updates_received == s.updates_delivered + s.updates_superseded + pending,
            ),
            (
                "accepted = answered + consolidated + orphaned + abandoned + pending",
                s.requests_accepted
                    == s.requests_answered
                        + s.requests_consolidated
                        + s.requests_orphaned
                        + s.requests_abandoned
                        + self.pending_requests() as u64,
            ),
            (
                "removed = failed + removed by hand <= added",
                s.connections_failed <= s.connections_removed
                    && s.connections_removed <= s.connections_added,
            ),
        ];
        match checks.iter().find(|(_, ok)| !ok) {
            Some((what, _)) => Err(format!("stats identity broken: {what}: {s:?}")),
            None => Ok(()),
        }
    }
}
