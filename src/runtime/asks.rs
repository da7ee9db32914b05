//! Many askers behind one connection: [`Asks`], [`Responder`], the [`Asker`] trait and the
//! [`Upstream`] requests go to.
//!
//! A connection has one id, and the server answers each of its requests once. Yet many
//! parties want to ask through it: threads of a GUI, the queries a Zenoh queryable
//! receives, the "ask" messages of every browser on a web view. Each is an **asker**: it
//! wants one answer, by a deadline. This module multiplexes them onto one connection; every
//! [relay](crate::runtime::relay) is built on it:
//!
//! - **one request per query in flight**: the first asker of a query sends the request;
//!   later askers of the same query join it, until its answer comes back;
//! - **fan-out**: the answer is prepared once (cloned, serialized, whatever the askers
//!   need) and handed to every asker of that query;
//! - **one bound**: at most `max` asks are outstanding, counting a request whose askers all
//!   left (expired or withdrawn) as one until its answer comes back. Past it,
//!   [`Asks::ask`] refuses at once with [`AskError::TooManyAsks`] and hands the asker and
//!   the query back. So the bound also caps the requests in flight, and the answers a relay
//!   holds for its askers;
//! - **a deadline per ask**: an asker whose deadline passes is told ([`AskError::TimedOut`],
//!   or [`AskError::Full`] / [`AskError::OverQuota`] when its request could never be
//!   queued) and removed;
//! - **no silent loss**: every asker accepted is told exactly once: answered, expired,
//!   [closed](AskError::Closed) (the connection went away, the server's request side
//!   closed), [abandoned](AskError::Abandoned) by the server, or withdrawn by its owner
//!   ([`Asks::cancel`]).
//!
//! # The two halves
//!
//! [`Asks::new`] builds both around an [`Upstream`] (a server's request path for one
//! connection, or a device's line): the [`Responder`] goes to whoever receives the
//! answers, the [`Asks`] handle (cheap to clone, `Send + Sync` when the asker is `Send`) to
//! whoever asks. [`Responder::retire`] takes the askers of a query out of the table when
//! its answer arrives (so that a later ask sends a new request: an ask is only ever
//! answered by a read made after it), and [`Responder::answer`] hands them the answer,
//! possibly on another thread; [`Responder::abandon`] tells them no answer will come, and
//! why. When the responder is
//! dropped (or [`close`](Responder::close)d) it tells every outstanding asker
//! [`AskError::Closed`] at once, and later asks are refused.
//!
//! # What an asker is
//!
//! Anything that implements [`Asker`]: it says what it receives (its
//! [`Reply`](Asker::Reply), prepared once per answer) and what it does with an answer or a
//! failure. The crate's [`Client`](crate::Client) completes a one-shot slot and wakes a
//! thread or a task. A Zenoh queryable's asker is a cloned `zenoh::Query` (its `Reply`, the
//! serialized value, is sent with `query.reply(..)`). A web view's asker is a page (its
//! `Reply` is the answer's JSON text, queued in the page's bounded outbox).
//!
//! ```
//! use queueserver::runtime::asks::{AskError, Asker, Asks, Refusal, Upstream};
//! use queueserver::Query;
//! use std::sync::{Arc, Mutex};
//! use std::time::{Duration, Instant};
//!
//! type State = std::collections::BTreeMap<&'static str, f64>;
//!
//! /// Records the requests it is given, as a server's queue would hold them.
//! #[derive(Clone, Default)]
//! struct Queue(Arc<Mutex<Vec<Query<&'static str>>>>);
//!
//! impl Upstream<&'static str> for Queue {
//!     fn put(&self, query: Query<&'static str>) -> Result<(), Refusal> {
//!         self.0.lock().unwrap().push(query);
//!         Ok(())
//!     }
//!     fn is_closed(&self) -> bool {
//!         false
//!     }
//! }
//!
//! /// A browser's outbox: a delivery only pushes.
//! struct Page(Arc<Mutex<Vec<String>>>);
//!
//! impl Asker for Page {
//!     type Reply = String; // the JSON text, made once per answer
//!     fn answer(self, reply: &String) {
//!         self.0.lock().unwrap().push(reply.clone());
//!     }
//!     fn fail(self, error: AskError) {
//!         self.0.lock().unwrap().push(format!("error: {error}"));
//!     }
//! }
//!
//! let queue = Queue::default();
//! let (asks, responder) = Asks::<State, Page>::new(queue.clone(), 64);
//!
//! // Two browsers ask for the same key: one request.
//! let deadline = Instant::now() + Duration::from_secs(5);
//! let (a, b) = (Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(Vec::new())));
//! asks.ask(Query::Key("x"), Page(Arc::clone(&a)), deadline).unwrap();
//! asks.ask(Query::Key("x"), Page(Arc::clone(&b)), deadline).unwrap();
//! assert_eq!(*queue.0.lock().unwrap(), [Query::Key("x")]);
//!
//! // The answer comes back: prepared once, handed to both.
//! let mut prepared = 0;
//! let answered = responder.respond(Query::Key(&"x"), || {
//!     prepared += 1;
//!     r#"{"x":1.5}"#.to_owned()
//! });
//! assert_eq!((answered, prepared), (2, 1));
//! assert_eq!(*a.lock().unwrap(), [r#"{"x":1.5}"#]);
//! assert_eq!(*b.lock().unwrap(), [r#"{"x":1.5}"#]);
//! ```
//!
//! # Where things run, and what they cost
//!
//! | operation | where | guarantee |
//! |---|---|---|
//! | [`Asks::ask`], [`Asks::ask_all`] | any thread | a short lock; may call [`Upstream::put`] (never blocks) once per new query, outside the lock; allocates (the asker's place in the table) |
//! | [`Responder::retire`], [`Responder::retire_abandoned`] | where the answer arrives (a relay's connection, on the poller) | a short lock to take the query's askers out of the table; no allocation |
//! | [`Responder::answer`], [`Responder::abandon`] | whoever serves the askers (a relay's worker side) | no lock: the reply is prepared once and handed to each asker; then [`flush`](Asks::flush) |
//! | [`Responder::close`] | any thread | a short lock to take every asker, each told outside it |
//! | [`Asks::sweep`], [`Asks::flush`], [`Asks::cancel`], [`Asks::expire`] | any thread | a short lock; `put` calls and asker calls outside it |
//!
//! The table is behind one `Mutex`, held only for bookkeeping: never while waiting, while
//! calling [`Upstream::put`] (and so a server's notify hook), or while calling, dropping or
//! preparing for an asker. An [`Asker`]'s `answer` and `fail` run on the thread that ends
//! the ask: they must not block.
//!
//! # Requests that cannot be queued yet
//!
//! When [`Upstream::put`] answers [`Refusal::Full`] or [`Refusal::OverQuota`], the askers
//! stay and the request is tried again by the next [`flush`](Asks::flush): after every
//! answer the responder hands out (the connection's share is then free again), and
//! whenever the owner of the askers calls it (a [`Client`](crate::Client) does while it
//! waits, a relay's worker at its next sweep). At its deadline, such an asker is told
//! `Full` or `OverQuota` rather than `TimedOut`. [`Refusal::Closed`] refuses every later ask
//! and ends the asks whose requests were not queued (the queued ones are still answered: a
//! server answers every request it accepted); [`Refusal::Detached`] ends them all.

use crate::connection::Abandoned;
use crate::idict::IDict;
use crate::request::Query;
use crate::sync::{lock, Mutex, MutexGuard};
use alloc::collections::BTreeMap;
use core::fmt;
use core::marker::PhantomData;
use std::sync::Arc;
use std::time::Instant;

/// Somebody waiting for one answer: a thread, a task, a network query, a browser.
///
/// Exactly one of [`answer`](Self::answer) and [`fail`](Self::fail) is called for an
/// accepted asker, unless its owner withdraws it ([`Asks::cancel`], [`Asks::expire`], which
/// hand it back). Both run on whichever thread ends the ask (a relay's worker side, for
/// `answer`) and must not block: push into a bounded buffer without waiting, complete a
/// one-shot, send a network reply that queues. An asker that is dropped unanswered (which
/// only happens when a thread unwinds through the machinery) should tell its party it is
/// gone, as a `zenoh::Query` does by sending its final reply.
pub trait Asker {
    /// What the asker receives: prepared once per answer (by the closure given to
    /// [`Responder::respond`]) and lent to every asker of that query.
    type Reply;

    /// Delivers the answer.
    fn answer(self, reply: &Self::Reply);

    /// Ends the ask without an answer.
    fn fail(self, error: AskError);
}

/// Why an ask ended without an answer, or was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AskError {
    /// No answer will come: the connection went away (removed, the server dropped, its
    /// relay closed), or the server closed its request side before the request was queued.
    Closed,
    /// No answer will come: the server abandoned the request
    /// ([`Connection::on_abandoned`](crate::Connection::on_abandoned)), for the reason
    /// given: a panic while its value was read, or a server that stopped serving (a
    /// [`Runner`](crate::Runner) whose poller panicked). The connection stays usable: a
    /// later ask is tried again.
    Abandoned(Abandoned),
    /// The deadline passed while the request was queued or being answered.
    TimedOut,
    /// The deadline passed before the request could be queued: the server's request queue
    /// stayed full.
    Full,
    /// The deadline passed before the request could be queued: the connection's share of
    /// the queue stayed taken.
    OverQuota,
    /// Refused at once: the connection already has its bound of outstanding asks.
    TooManyAsks,
}

impl fmt::Display for AskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Closed => "closed: no answer will come",
            Self::Abandoned(why) => return write!(f, "abandoned: {why}"),
            Self::TimedOut => "timed out waiting for the answer",
            Self::Full => "timed out: the request queue stayed full",
            Self::OverQuota => "timed out: the connection's share of the queue stayed taken",
            Self::TooManyAsks => "too many outstanding asks",
        })
    }
}

impl std::error::Error for AskError {}

/// Why an [`Upstream`] did not take a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// No room now (a server's queue is full): the request is tried again later.
    Full,
    /// The connection's share of the room is taken: the request is tried again later.
    OverQuota,
    /// Nothing more will be taken; requests taken before are still answered.
    Closed,
    /// The connection is gone: requests taken before will not be answered either.
    Detached,
}

/// Where an [`Asks`] puts its requests: a server's request path under one connection's id
/// (what a [relay](crate::runtime::relay) attached to a server uses), or a device's line.
pub trait Upstream<K>: Send + Sync {
    /// Puts the request for `query`.
    ///
    /// **Never blocks**: called from whichever thread asks, a relay's worker, or a
    /// waiting caller.
    ///
    /// # Errors
    ///
    /// [`Refusal`]: why it was not taken.
    fn put(&self, query: Query<K>) -> Result<(), Refusal>;

    /// Whether every later request would be refused.
    fn is_closed(&self) -> bool;
}

/// An ask [`Asks::ask`] refused, handed back: the query, the asker, and why
/// ([`AskError::TooManyAsks`] or [`AskError::Closed`]).
pub struct Refused<K, A> {
    /// Why.
    pub error: AskError,
    /// The query asked for.
    pub query: Query<K>,
    /// The asker, untouched: neither `answer` nor `fail` was called.
    pub asker: A,
}

impl<K: fmt::Debug, A> fmt::Debug for Refused<K, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Refused")
            .field("error", &self.error)
            .field("query", &self.query)
            .finish_non_exhaustive()
    }
}

impl<K, A> fmt::Display for Refused<K, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ask refused: {}", self.error)
    }
}

impl<K: fmt::Debug, A> std::error::Error for Refused<K, A> {}

/// Names one accepted ask, for [`Asks::cancel`] and [`Asks::expire`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ticket<K> {
    query: Query<K>,
    id: u64,
}

impl<K> Ticket<K> {
    /// The query asked for.
    pub fn query(&self) -> &Query<K> {
        &self.query
    }
}

/// What a [`sweep`](Asks::sweep) did, and when the next one is due.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sweep {
    /// Asks whose deadline had passed, now told and removed.
    pub expired: usize,
    /// The earliest deadline of the asks still outstanding.
    pub next_deadline: Option<Instant>,
    /// Some queries still wait for room upstream: sweep (or [`flush`](Asks::flush))
    /// again soon.
    pub unsent: bool,
}

/// Counts of one connection's asks. Asks accepted, and not [`outstanding`](Self::outstanding),
/// were answered, expired, closed, abandoned or cancelled:
/// `asked = answered + expired + closed + abandoned + cancelled + outstanding`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AskStats {
    /// Asks accepted.
    pub asked: u64,
    /// Asks refused at once (too many, or closed).
    pub refused: u64,
    /// Asks answered.
    pub answered: u64,
    /// Asks whose deadline passed.
    pub expired: u64,
    /// Asks told [`AskError::Closed`].
    pub closed: u64,
    /// Asks told [`AskError::Abandoned`].
    pub abandoned: u64,
    /// Asks withdrawn with [`Asks::cancel`].
    pub cancelled: u64,
    /// Asks not ended yet.
    pub outstanding: u64,
    /// Requests in flight whose askers all left: each holds a place under the bound until
    /// its answer comes back.
    pub orphans: u64,
    /// Requests the upstream took (at most one per query in flight). Asks joined a request
    /// in flight `asked - requests_sent` times, give or take the asks still waiting for
    /// room.
    pub requests_sent: u64,
    /// Requests refused because the upstream had no room, or the share was taken (tried
    /// again later).
    pub requests_deferred: u64,
    /// Answers the responder received.
    pub responses: u64,
}

/// Where the request of a query stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// Not queued, nor being put: the upstream had no room for it, and why. The next flush
    /// tries again.
    NoRoom(AskError),
    /// Being put, or taken: its answer will come (unless the connection goes away).
    /// `refused`: why it was refused before, while it is being put again (until it is
    /// taken, it still has not found room).
    Sent { refused: Option<AskError> },
}

impl Stage {
    const FRESH: Self = Self::Sent { refused: None };

    fn is_sent(self) -> bool {
        matches!(self, Self::Sent { .. })
    }
}

/// One asker waiting.
struct Waiting<A> {
    id: u64,
    asker: A,
    deadline: Instant,
}

/// The askers of one query, and its request.
struct Entry<A> {
    /// Tells this entry from a later one of the same query, for a `put` result that comes
    /// back after the lock was released.
    round: u64,
    stage: Stage,
    askers: Vec<Waiting<A>>,
    /// Its request is in flight and every asker left: it counts as one under the bound.
    orphan: bool,
}

impl<A> Entry<A> {
    /// The error an asker of this entry gets when its deadline passes.
    fn expiry(&self) -> AskError {
        match self.stage {
            Stage::NoRoom(why) | Stage::Sent { refused: Some(why) } => why,
            Stage::Sent { refused: None } => AskError::TimedOut,
        }
    }
}

/// The table behind the lock.
struct Table<K, A> {
    /// Later asks are refused; set by a close, or when the upstream says it is closed.
    closed: bool,
    max: usize,
    next_id: u64,
    next_round: u64,
    /// Entries in the `NoRoom` stage.
    unsent: usize,
    /// Askers taken out for their answer and not told yet (counted outstanding).
    delivering: u64,
    keys: BTreeMap<K, Entry<A>>,
    all: Option<Entry<A>>,
    stats: AskStats,
}

impl<K: Ord, A> Table<K, A> {
    fn entry(&mut self, query: Query<&K>) -> Option<&mut Entry<A>> {
        match query {
            Query::Key(key) => self.keys.get_mut(key),
            Query::All => self.all.as_mut(),
        }
    }

    fn remove(&mut self, query: Query<&K>) -> Option<Entry<A>> {
        let entry = match query {
            Query::Key(key) => self.keys.remove(key),
            Query::All => self.all.take(),
        }?;
        if matches!(entry.stage, Stage::NoRoom(_)) {
            self.unsent -= 1;
        }
        if entry.orphan {
            self.stats.orphans -= 1;
        }
        self.stats.outstanding -= entry.askers.len() as u64;
        Some(entry)
    }

    /// Takes the entry of `query` out for its answer (or abandonment): its askers stay
    /// outstanding, as being delivered, until told.
    fn retire(&mut self, query: Query<&K>) -> Vec<Waiting<A>> {
        let entry = match query {
            Query::Key(key) => self.keys.remove(key),
            Query::All => self.all.take(),
        };
        let Some(entry) = entry else {
            return Vec::new();
        };
        if matches!(entry.stage, Stage::NoRoom(_)) {
            self.unsent -= 1;
        }
        if entry.orphan {
            self.stats.orphans -= 1;
        }
        self.delivering += entry.askers.len() as u64;
        entry.askers
    }

    /// Places taken under the bound: asks outstanding (those being delivered included),
    /// and requests in flight with no asker left.
    fn taken(&self) -> u64 {
        self.stats.outstanding + self.stats.orphans
    }

    /// Every entry, with its query.
    fn entries_mut(&mut self) -> impl Iterator<Item = (Query<&K>, &mut Entry<A>)> {
        let all = self.all.as_mut().map(|entry| (Query::All, entry));
        let keys = self
            .keys
            .iter_mut()
            .map(|(key, entry)| (Query::Key(key), entry));
        all.into_iter().chain(keys)
    }

    /// Takes every entry out.
    fn drain(&mut self) -> Vec<Entry<A>> {
        let mut entries: Vec<Entry<A>> = self.all.take().into_iter().collect();
        entries.extend(core::mem::take(&mut self.keys).into_values());
        self.unsent = 0;
        // Askers being delivered are told by whoever holds them.
        self.stats.outstanding = self.delivering;
        self.stats.orphans = 0;
        entries
    }

    /// After askers left an entry: removes it if none is left and its request is not in
    /// flight; if its request is in flight, it stays (so that a new asker of the query
    /// joins it instead of sending a second request) and holds a place as an orphan.
    fn tidy(&mut self, query: Query<&K>) {
        let Some(entry) = self.entry(query.clone()) else {
            return;
        };
        if !entry.askers.is_empty() {
            return;
        }
        if entry.stage.is_sent() {
            if !entry.orphan {
                entry.orphan = true;
                self.stats.orphans += 1;
            }
        } else {
            self.remove(query);
        }
    }

    /// Removes the ask `ticket` names, if it is still outstanding; with the error it would
    /// get at its deadline.
    fn take(&mut self, ticket: &Ticket<K>) -> Option<(A, AskError)> {
        let entry = self.entry(as_ref(&ticket.query))?;
        let at = entry.askers.iter().position(|w| w.id == ticket.id)?;
        let waiting = entry.askers.swap_remove(at);
        let expiry = entry.expiry();
        self.stats.outstanding -= 1;
        self.tidy(as_ref(&ticket.query));
        Some((waiting.asker, expiry))
    }

    /// Whether `count` more askers fit, for queries whose entries `queries` name: one
    /// joining an orphan takes the orphan's place.
    fn has_room<'q>(&self, queries: impl Iterator<Item = Query<&'q K>>) -> bool
    where
        K: 'q,
    {
        let mut needed = 0u64;
        for query in queries {
            let entry = match query {
                Query::Key(key) => self.keys.get(key),
                Query::All => self.all.as_ref(),
            };
            if !entry.is_some_and(|e| e.orphan) {
                needed += 1;
            }
        }
        self.taken() + needed <= self.max as u64
    }
}

fn as_ref<K>(query: &Query<K>) -> Query<&K> {
    match query {
        Query::Key(key) => Query::Key(key),
        Query::All => Query::All,
    }
}

trait Cloned<K> {
    fn cloned(self) -> Query<K>;
}

impl<K: Clone> Cloned<K> for Query<&K> {
    fn cloned(self) -> Query<K> {
        match self {
            Query::Key(key) => Query::Key(key.clone()),
            Query::All => Query::All,
        }
    }
}

/// What the two halves share.
struct Inner<K, A> {
    upstream: Box<dyn Upstream<K>>,
    table: Mutex<Table<K, A>>,
}

impl<K: Clone + Ord, A: Asker> Inner<K, A> {
    fn table(&self) -> MutexGuard<'_, Table<K, A>> {
        // A panic while the lock was held (in a key's `Ord` or `Clone`) leaves the table
        // consistent enough to go on: at worst a count is off; askers are still told.
        lock(&self.table)
    }

    /// Puts the request of `query` (its entry is `Sent` in round `round`) and records a
    /// refusal. Called without the lock.
    fn send(&self, query: Query<K>, round: u64) {
        let refusal = match self.upstream.put(query.clone()) {
            Ok(()) => {
                let mut table = self.table();
                table.stats.requests_sent += 1;
                if let Some(entry) = table.entry(as_ref(&query)).filter(|e| e.round == round) {
                    // Taken at last: from now on, waiting is for the answer.
                    entry.stage = Stage::FRESH;
                }
                return;
            }
            Err(refusal) => refusal,
        };
        let mut ended: Vec<Waiting<A>> = Vec::new();
        {
            let mut table = self.table();
            match refusal {
                Refusal::Full | Refusal::OverQuota => {
                    let why = if refusal == Refusal::Full {
                        AskError::Full
                    } else {
                        AskError::OverQuota
                    };
                    table.stats.requests_deferred += 1;
                    let query = as_ref(&query);
                    if let Some(entry) = table.entry(query.clone()).filter(|e| e.round == round) {
                        entry.stage = Stage::NoRoom(why);
                        if entry.orphan {
                            // Not in flight any more: nothing to hold a place for.
                            entry.orphan = false;
                            table.stats.orphans -= 1;
                        }
                        table.unsent += 1;
                        table.tidy(query);
                    }
                }
                Refusal::Closed => {
                    // Nothing more will be taken. Requests taken before are still
                    // answered; the others never will be.
                    table.closed = true;
                    if let Some(entry) = table.entry(as_ref(&query)).filter(|e| e.round == round) {
                        entry.stage = Stage::NoRoom(AskError::Closed);
                        if entry.orphan {
                            entry.orphan = false;
                            table.stats.orphans -= 1;
                        }
                        table.unsent += 1;
                    }
                    let unsent: Vec<Query<K>> = table
                        .entries_mut()
                        .filter(|(_, e)| matches!(e.stage, Stage::NoRoom(_)))
                        .map(|(q, _)| q.cloned())
                        .collect();
                    for query in &unsent {
                        if let Some(entry) = table.remove(as_ref(query)) {
                            ended.extend(entry.askers);
                        }
                    }
                }
                Refusal::Detached => {
                    // Nothing taken will be answered either.
                    table.closed = true;
                    for entry in table.drain() {
                        ended.extend(entry.askers);
                    }
                }
            }
            table.stats.closed += ended.len() as u64;
        }
        for waiting in ended {
            waiting.asker.fail(AskError::Closed);
        }
    }

    /// Counts `n` askers being delivered as told, `how`.
    fn settle(&self, n: u64, how: Told) {
        let mut table = self.table();
        table.delivering -= n;
        table.stats.outstanding -= n;
        let stats = &mut table.stats;
        match how {
            Told::Answered => stats.answered += n,
            Told::Abandoned => stats.abandoned += n,
            Told::Closed => stats.closed += n,
        }
    }

    /// Ends every ask with [`AskError::Closed`] and refuses later ones.
    fn close(&self) {
        let entries = {
            let mut table = self.table();
            table.closed = true;
            let entries = table.drain();
            let ended: usize = entries.iter().map(|e| e.askers.len()).sum();
            table.stats.closed += ended as u64;
            entries
        };
        for waiting in entries.into_iter().flat_map(|e| e.askers) {
            waiting.asker.fail(AskError::Closed);
        }
    }

    /// Puts the request of every query waiting for room.
    fn flush(&self) -> bool {
        let batch: Vec<(Query<K>, u64)> = {
            let mut table = self.table();
            if table.unsent == 0 {
                return false;
            }
            table.unsent = 0;
            table
                .entries_mut()
                .filter(|(_, e)| matches!(e.stage, Stage::NoRoom(_)))
                .map(|(query, entry)| {
                    if let Stage::NoRoom(why) = entry.stage {
                        entry.stage = Stage::Sent { refused: Some(why) };
                    }
                    (query.cloned(), entry.round)
                })
                .collect()
        };
        for (query, round) in batch {
            self.send(query, round);
        }
        self.table().unsent != 0
    }

    /// Adds `asker` to the table, under the lock; the round to send if a request must be
    /// put. The caller has checked that it is not closed and that there is room.
    fn enter(
        table: &mut Table<K, A>,
        query: &Query<K>,
        asker: A,
        deadline: Instant,
    ) -> (u64, Option<u64>) {
        let id = table.next_id;
        table.next_id += 1;
        table.stats.asked += 1;
        table.stats.outstanding += 1;
        let waiting = Waiting {
            id,
            asker,
            deadline,
        };
        if let Some(entry) = table.entry(as_ref(query)) {
            entry.askers.push(waiting);
            let was_orphan = core::mem::replace(&mut entry.orphan, false);
            let send = match entry.stage {
                Stage::Sent { .. } => None,
                // Waiting for room: try again now.
                Stage::NoRoom(why) => {
                    entry.stage = Stage::Sent { refused: Some(why) };
                    Some(entry.round)
                }
            };
            if was_orphan {
                table.stats.orphans -= 1;
            }
            if send.is_some() {
                table.unsent -= 1;
            }
            (id, send)
        } else {
            let round = table.next_round;
            table.next_round += 1;
            let entry = Entry {
                round,
                stage: Stage::FRESH,
                askers: alloc::vec![waiting],
                orphan: false,
            };
            match query.clone() {
                Query::Key(key) => drop(table.keys.insert(key, entry)),
                Query::All => table.all = Some(entry),
            }
            (id, Some(round))
        }
    }
}

/// The askers' half: asks through one connection. Cheap to clone; `Send + Sync` when `A`
/// is `Send`. See the [module docs](self).
pub struct Asks<D: IDict, A> {
    inner: Arc<Inner<D::Key, A>>,
}

impl<D: IDict, A> Clone for Asks<D, A> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

/// The answers' half: hands answers to the askers. Dropping it ends every outstanding ask
/// with [`AskError::Closed`] and refuses later ones.
pub struct Responder<D: IDict, A: Asker> {
    inner: Arc<Inner<D::Key, A>>,
    _idict: PhantomData<fn() -> D>,
}

impl<D: IDict, A: Asker> Asks<D, A> {
    /// Both halves around `upstream`: at most `max` asks may be outstanding at once,
    /// counting a request in flight whose askers all left as one.
    pub fn new(upstream: impl Upstream<D::Key> + 'static, max: usize) -> (Self, Responder<D, A>) {
        let inner = Arc::new(Inner {
            upstream: Box::new(upstream),
            table: Mutex::new(Table {
                closed: false,
                max,
                next_id: 0,
                next_round: 0,
                unsent: 0,
                delivering: 0,
                keys: BTreeMap::new(),
                all: None,
                stats: AskStats::default(),
            }),
        });
        let responder = Responder {
            inner: Arc::clone(&inner),
            _idict: PhantomData,
        };
        (Self { inner }, responder)
    }

    /// Asks for `query` on behalf of `asker`, until `deadline`.
    ///
    /// **Any thread.** Joins the request in flight for `query` if there is one; else puts
    /// one (`put` never blocks; it runs outside the lock). The asker is then told exactly
    /// once, through [`Asker::answer`] or [`Asker::fail`], possibly before this returns
    /// (when the upstream refuses the request for good), unless it is withdrawn with
    /// [`cancel`](Self::cancel) or [`expire`](Self::expire).
    ///
    /// The deadline is enforced by [`sweep`](Self::sweep) and [`expire`](Self::expire):
    /// whoever owns the askers calls one of them by then.
    ///
    /// # Errors
    ///
    /// [`Refused`] hands the query and the asker back, untouched, with
    /// [`AskError::TooManyAsks`] when the bound is reached, or [`AskError::Closed`] once the
    /// connection is gone or the upstream is closed.
    pub fn ask(
        &self,
        query: Query<D::Key>,
        asker: A,
        deadline: Instant,
    ) -> Result<Ticket<D::Key>, Refused<D::Key, A>> {
        let mut table = self.inner.table();
        let refusal = if table.closed {
            Some(AskError::Closed)
        } else if !table.has_room(core::iter::once(as_ref(&query))) {
            Some(AskError::TooManyAsks)
        } else {
            None
        };
        if let Some(error) = refusal {
            table.stats.refused += 1;
            drop(table);
            return Err(Refused {
                error,
                query,
                asker,
            });
        }
        let (id, send) = Inner::enter(&mut table, &query, asker, deadline);
        drop(table);
        let ticket = Ticket {
            query: query.clone(),
            id,
        };
        if let Some(round) = send {
            self.inner.send(query, round);
        }
        Ok(ticket)
    }

    /// Asks for every query of `asks`, each on behalf of its asker, until `deadline`: all
    /// of them, or none. For one party that stands for several queries (a remote get of a
    /// wildcard), so that it is answered whole or refused whole.
    ///
    /// **Any thread.** As [`ask`](Self::ask), with one lock for all of them.
    ///
    /// # Errors
    ///
    /// Every ask handed back, untouched, when the bound has no room for all of them
    /// ([`AskError::TooManyAsks`]) or the connection is gone ([`AskError::Closed`]).
    #[allow(clippy::type_complexity)]
    pub fn ask_all(
        &self,
        asks: Vec<(Query<D::Key>, A)>,
        deadline: Instant,
    ) -> Result<Vec<Ticket<D::Key>>, (AskError, Vec<(Query<D::Key>, A)>)> {
        let mut table = self.inner.table();
        let refusal = if table.closed {
            Some(AskError::Closed)
        } else if !table.has_room(asks.iter().map(|(q, _)| as_ref(q))) {
            Some(AskError::TooManyAsks)
        } else {
            None
        };
        if let Some(error) = refusal {
            table.stats.refused += asks.len() as u64;
            drop(table);
            return Err((error, asks));
        }
        let mut tickets = Vec::with_capacity(asks.len());
        let mut sends = Vec::new();
        for (query, asker) in asks {
            let (id, send) = Inner::enter(&mut table, &query, asker, deadline);
            if let Some(round) = send {
                sends.push((query.clone(), round));
            }
            tickets.push(Ticket { query, id });
        }
        drop(table);
        for (query, round) in sends {
            self.inner.send(query, round);
        }
        Ok(tickets)
    }

    /// Withdraws an ask: hands its asker back (neither `answer` nor `fail` was called), or
    /// `None` if the ask has already ended (its asker was, or is being, told).
    ///
    /// **Any thread.** A short lock. Counted in [`AskStats::cancelled`].
    pub fn cancel(&self, ticket: &Ticket<D::Key>) -> Option<A> {
        let mut table = self.inner.table();
        let (asker, _) = table.take(ticket)?;
        table.stats.cancelled += 1;
        Some(asker)
    }

    /// Ends an ask as if its deadline had passed: hands its asker back with the error it
    /// would be told ([`AskError::TimedOut`], [`AskError::Full`] or
    /// [`AskError::OverQuota`]), or `None` if the ask has already ended.
    ///
    /// **Any thread.** A short lock. Counted in [`AskStats::expired`]. For an owner that
    /// waits for one ask itself and reports the error its own way.
    pub fn expire(&self, ticket: &Ticket<D::Key>) -> Option<(A, AskError)> {
        let mut table = self.inner.table();
        let ended = table.take(ticket)?;
        table.stats.expired += 1;
        Some(ended)
    }

    /// Tells every ask whose deadline is not after `now` that it expired, removes it, then
    /// [`flush`](Self::flush)es; says when to sweep next.
    ///
    /// **Any thread.** A lock for the length of one pass over the outstanding asks; the
    /// expired askers are told outside it.
    pub fn sweep(&self, now: Instant) -> Sweep {
        let mut expired: Vec<(A, AskError)> = Vec::new();
        let mut next_deadline: Option<Instant> = None;
        {
            let mut table = self.inner.table();
            let mut emptied: Vec<Query<D::Key>> = Vec::new();
            for (query, entry) in table.entries_mut() {
                let error = entry.expiry();
                let mut at = 0;
                let before = entry.askers.len();
                while at < entry.askers.len() {
                    let deadline = entry.askers[at].deadline;
                    if deadline <= now {
                        expired.push((entry.askers.swap_remove(at).asker, error));
                    } else {
                        next_deadline = Some(next_deadline.map_or(deadline, |d| d.min(deadline)));
                        at += 1;
                    }
                }
                if before > 0 && entry.askers.is_empty() {
                    emptied.push(query.cloned());
                }
            }
            table.stats.expired += expired.len() as u64;
            table.stats.outstanding -= expired.len() as u64;
            for query in &emptied {
                table.tidy(as_ref(query));
            }
        }
        let count = expired.len();
        for (asker, error) in expired {
            asker.fail(error);
        }
        Sweep {
            expired: count,
            next_deadline,
            unsent: self.flush(),
        }
    }

    /// Puts the request of every query that is waiting for room upstream; returns whether
    /// some still wait.
    ///
    /// **Any thread.** A short lock when nothing waits (the common case); else one `put`
    /// per waiting query, outside the lock.
    pub fn flush(&self) -> bool {
        self.inner.flush()
    }

    /// Whether some query waits for room upstream (a [`flush`](Self::flush) would put it).
    ///
    /// **Any thread.** A short lock.
    pub fn has_unsent(&self) -> bool {
        self.inner.table().unsent != 0
    }

    /// Whether later asks are refused: the connection is gone, or the upstream is closed.
    pub fn is_closed(&self) -> bool {
        self.inner.table().closed || self.inner.upstream.is_closed()
    }

    /// How many asks are outstanding.
    pub fn outstanding(&self) -> usize {
        self.inner.table().stats.outstanding as usize
    }

    /// The bound on outstanding asks.
    pub fn max_asks(&self) -> usize {
        self.inner.table().max
    }

    /// The counts so far.
    pub fn stats(&self) -> AskStats {
        self.inner.table().stats
    }
}

/// How the askers of a [`Retired`] were told.
#[derive(Clone, Copy)]
enum Told {
    Answered,
    Abandoned,
    Closed,
}

/// The askers of one query, taken out of the table by [`Responder::retire`]: handed an
/// answer with [`Responder::answer`], or told why none comes with [`Responder::abandon`].
/// They count as outstanding until then. Dropped otherwise (a thread unwinding), each is
/// counted closed and dropped, and tells its party as its `Drop` does.
pub struct Retired<K, A> {
    askers: Vec<Waiting<A>>,
    inner: Option<Arc<Inner<K, A>>>,
}

impl<K, A> Retired<K, A> {
    /// No askers: for an answer nobody waits for.
    pub const fn none() -> Self {
        Self {
            askers: Vec::new(),
            inner: None,
        }
    }

    /// How many askers it holds.
    pub fn len(&self) -> usize {
        self.askers.len()
    }

    /// Whether it holds no asker.
    pub fn is_empty(&self) -> bool {
        self.askers.is_empty()
    }
}

impl<K: Clone + Ord, A: Asker> Retired<K, A> {
    /// Counts its askers told, and hands them over to be told.
    fn settle(mut self, how: Told) -> Vec<Waiting<A>> {
        let askers = core::mem::take(&mut self.askers);
        if let Some(inner) = &self.inner {
            inner.settle(askers.len() as u64, how);
        }
        askers
    }
}

impl<K, A> Drop for Retired<K, A> {
    fn drop(&mut self) {
        if self.askers.is_empty() {
            return;
        }
        if let Some(inner) = &self.inner {
            let mut table = lock(&inner.table);
            let n = self.askers.len() as u64;
            table.delivering -= n;
            table.stats.outstanding -= n;
            table.stats.closed += n;
        }
        // The askers are dropped after the lock: each tells its party it is gone.
    }
}

impl<K, A> fmt::Debug for Retired<K, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retired")
            .field("askers", &self.askers.len())
            .finish()
    }
}

impl<D: IDict, A: Asker> Responder<D, A> {
    /// Takes the askers of `query` out of the table, for its answer: from now on a new ask
    /// of `query` sends a new request, so that an ask is only ever answered by a read made
    /// after it was asked. Counts the answer (and the askers as answered).
    ///
    /// **Where the answer arrives** (a relay's connection, on the poller). A short lock;
    /// no allocation.
    pub fn retire(&self, query: Query<&D::Key>) -> Retired<D::Key, A> {
        let mut table = self.inner.table();
        table.stats.responses += 1;
        let askers = table.retire(query);
        drop(table);
        Retired {
            askers,
            inner: Some(Arc::clone(&self.inner)),
        }
    }

    /// Takes the askers of `query` out of the table, for an abandonment: told by
    /// [`abandon`](Self::abandon).
    ///
    /// **Where the abandonment arrives.** A short lock; no allocation.
    pub fn retire_abandoned(&self, query: &Query<D::Key>) -> Retired<D::Key, A> {
        let askers = self.inner.table().retire(as_ref(query));
        Retired {
            askers,
            inner: Some(Arc::clone(&self.inner)),
        }
    }

    /// Hands an answer to `retired`'s askers: `prepare` makes the reply once (not at all
    /// when none is left), each asker's [`answer`](Asker::answer) gets it. Then
    /// [`flush`](Asks::flush)es: the answer has freed the connection's share upstream.
    /// Returns how many askers it answered.
    ///
    /// **The worker side.** No lock while preparing or delivering.
    ///
    /// If `prepare` panics, the askers are told [`AskError::Closed`] before the panic goes
    /// on: nobody is left waiting for a reply that will not be made.
    pub fn answer<F>(&self, retired: Retired<D::Key, A>, prepare: F) -> usize
    where
        F: FnOnce() -> A::Reply,
    {
        let count = retired.askers.len();
        if count > 0 {
            let reply = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(prepare)) {
                Ok(reply) => reply,
                Err(panic) => {
                    self.close_retired(retired);
                    std::panic::resume_unwind(panic)
                }
            };
            for waiting in retired.settle(Told::Answered) {
                waiting.asker.answer(&reply);
            }
        } else {
            drop(retired);
        }
        self.inner.flush();
        count
    }

    /// Tells `retired`'s askers [`AskError::Abandoned`]`(why)`: the server will never answer
    /// their request ([`Connection::on_abandoned`](crate::Connection::on_abandoned)). Then
    /// [`flush`](Asks::flush)es (the abandoned request has freed the connection's share;
    /// and once the server has closed its request side, the asks still waiting for room
    /// learn it at once). Returns how many it told.
    ///
    /// **The worker side.**
    pub fn abandon(&self, retired: Retired<D::Key, A>, why: Abandoned) -> usize {
        let askers = retired.settle(Told::Abandoned);
        let count = askers.len();
        for waiting in askers {
            waiting.asker.fail(AskError::Abandoned(why));
        }
        self.inner.flush();
        count
    }

    /// Tells `retired`'s askers [`AskError::Closed`]: their answer cannot be delivered (the
    /// relay that held it ended).
    pub fn close_retired(&self, retired: Retired<D::Key, A>) -> usize {
        let askers = retired.settle(Told::Closed);
        let count = askers.len();
        for waiting in askers {
            waiting.asker.fail(AskError::Closed);
        }
        count
    }

    /// [`retire`](Self::retire) and [`answer`](Self::answer) at once, for an answer
    /// received where the askers are served.
    pub fn respond<F>(&self, query: Query<&D::Key>, prepare: F) -> usize
    where
        F: FnOnce() -> A::Reply,
    {
        let retired = self.retire(query);
        self.answer(retired, prepare)
    }

    /// Ends every outstanding ask with [`AskError::Closed`] and refuses later ones, as
    /// dropping the responder does.
    pub fn close(&self) {
        self.inner.close();
    }

    /// The askers' half.
    pub fn asks(&self) -> Asks<D, A> {
        Asks {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<D: IDict, A: Asker> Drop for Responder<D, A> {
    fn drop(&mut self) {
        self.inner.close();
    }
}

impl<D: IDict, A> fmt::Debug for Asks<D, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Asks").finish_non_exhaustive()
    }
}

impl<D: IDict, A: Asker> fmt::Debug for Responder<D, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Responder").finish_non_exhaustive()
    }
}
