//! Many askers behind one connection (std): [`Asks`], [`Responder`] and the [`Asker`] trait.
//!
//! A connection has one id, and the server answers each of its requests once. Yet many
//! parties want to ask through it: threads of a GUI, the queries a Zenoh queryable
//! receives, the "ask" messages of every browser on a web view. Each is an **asker**: it
//! wants one answer, by a deadline. This module multiplexes them onto one connection:
//!
//! - **one request per query in flight**: the first asker of a query sends the request;
//!   later askers of the same query join it, until its answer comes back;
//! - **fan-out**: the answer is prepared once (cloned, serialized, whatever the askers
//!   need) and handed to every asker of that query;
//! - **a bound on outstanding asks**: past it, [`Asks::ask`] refuses at once with
//!   [`AskError::TooManyAsks`] and hands the asker and the query back;
//! - **a deadline per ask**: an asker whose deadline passes is told ([`AskError::TimedOut`],
//!   or [`AskError::Full`] / [`AskError::OverQuota`] when its request could never be
//!   queued) and removed;
//! - **no silent loss**: every asker accepted is told exactly once: answered, expired,
//!   [closed](AskError::Closed) (the connection dropped, the server's request side closed,
//!   the connection detached), [abandoned](AskError::Abandoned) by the server, or withdrawn
//!   by its owner ([`Asks::cancel`]).
//!
//! # The two halves
//!
//! [`Asks::attach`] builds both around a server's [`Requester`]: the [`Responder`] goes into
//! the connection the poller owns, the [`Asks`] handle (cheap to clone, `Send + Sync` when
//! the asker is `Send`) to whoever asks. In the connection's
//! [`on_response`](crate::Connection::on_response), the responder hands the answer to the
//! askers of its query; in its [`on_abandoned`](crate::Connection::on_abandoned),
//! [`Responder::abandon`] tells them no answer will come, and why. When the connection is
//! dropped (removed, or the server dropped) the responder tells every outstanding asker
//! [`AskError::Closed`] at once, and later asks are refused.
//!
//! # What an asker is
//!
//! Anything that implements [`Asker`]: it says what it receives (its
//! [`Reply`](Asker::Reply), prepared once per answer) and what it does with an answer or a
//! failure. The crate's [`Client`](crate::Client) completes a one-shot slot and wakes a
//! thread or a task. A Zenoh queryable's asker is a cloned `zenoh::Query` (its `Reply`, the
//! serialized value, is sent with `query.reply(..)`, and the final reply goes out when the
//! query is dropped). A web view's asker is the browser's bounded outbox (it try-pushes the
//! JSON text, and counts a drop when the outbox is full).
//!
//! ```
//! use queueserver::asks::{AskError, Asker, Asks};
//! use queueserver::{Abandoned, Connection, ConnectionError, Query, QueueServer};
//! use queueserver::{Response, Snapshot};
//! use std::sync::mpsc::SyncSender;
//! use std::time::{Duration, Instant};
//! use heapless::LinearMap;
//!
//! type State = LinearMap<&'static str, f64, 4>;
//!
//! /// A browser's outbox: bounded, and a delivery only tries to push.
//! struct Outbox(SyncSender<String>);
//!
//! impl Asker for Outbox {
//!     type Reply = String; // the JSON text, made once per answer
//!     fn answer(self, reply: &String) {
//!         let _ = self.0.try_send(reply.clone()); // a full outbox drops, never blocks
//!     }
//!     fn fail(self, error: AskError) {
//!         let _ = self.0.try_send(format!("{{\"error\":\"{error}\"}}"));
//!     }
//! }
//!
//! /// The connection the poller owns: it hands answers to the askers.
//! struct View(queueserver::asks::Responder<State, Outbox>);
//!
//! impl Connection<State> for View {
//!     fn on_update(&mut self, _: &Snapshot<State>) -> Result<(), ConnectionError> {
//!         Ok(())
//!     }
//!     fn on_response(&mut self, response: Response<'_, State>) -> Result<(), ConnectionError> {
//!         self.0.respond(&response, |response| match response {
//!             Response::Value { key, value, seq } => format!("{{\"{key}\":{value},\"seq\":{seq}}}"),
//!             Response::NotFound { key, .. } => format!("{{\"{key}\":null}}"),
//!             Response::Snapshot(s) => format!("{{\"seq\":{}}}", s.seq()),
//!         });
//!         Ok(())
//!     }
//!     fn on_abandoned(&mut self, q: &Query<&'static str>, why: Abandoned) -> Result<(), ConnectionError> {
//!         self.0.abandon(q, why); // no answer will come: its askers are told why
//!         Ok(())
//!     }
//! }
//!
//! let mut state = State::new();
//! state.insert("x", 1.5).unwrap();
//! let (_publisher, mut server) = QueueServer::new(state);
//! let asks = Asks::attach(server.requester(), 64, |responder| {
//!     server.add_connection(View(responder))
//! })
//! .unwrap();
//!
//! // Two browsers ask for the same key: one request.
//! let deadline = Instant::now() + Duration::from_secs(5);
//! let (a, from_a) = std::sync::mpsc::sync_channel(4);
//! let (b, from_b) = std::sync::mpsc::sync_channel(4);
//! asks.ask(Query::Key("x"), Outbox(a), deadline).unwrap();
//! asks.ask(Query::Key("x"), Outbox(b), deadline).unwrap();
//! assert_eq!(server.pending_requests(), 1);
//!
//! server.poll();
//! assert_eq!(from_a.try_recv().unwrap(), r#"{"x":1.5,"seq":0}"#);
//! assert_eq!(from_b.try_recv().unwrap(), r#"{"x":1.5,"seq":0}"#);
//! assert_eq!(server.stats().reads, 1);
//! ```
//!
//! # Where things run, and what they cost
//!
//! | operation | where | guarantee |
//! |---|---|---|
//! | [`Asks::ask`] | any thread | a short lock; may call `put_request` (never blocks) once, outside the lock; allocates (the asker's place in the table) |
//! | [`Responder::respond`] | poller | a short lock to take the query's askers; the reply is prepared once and handed to each outside the lock; then [`flush`](Asks::flush) |
//! | [`Responder::abandon`] | poller | a short lock to take the query's askers, each told [`AskError::Abandoned`] outside it; then [`flush`](Asks::flush) |
//! | [`Asks::sweep`], [`Asks::flush`], [`Asks::cancel`], [`Asks::expire`] | any thread | a short lock; `put_request` calls and asker calls outside it |
//!
//! The table is behind one `Mutex`, held only for bookkeeping: never while waiting, while
//! calling `put_request` (and so the server's notify hook), or while calling, dropping or
//! preparing for an asker. The poller therefore never waits on a slow asker; it can only
//! meet the lock held by another thread's bookkeeping, which takes time proportional to the
//! askers of one query (or, for [`sweep`](Asks::sweep) and a close, to all outstanding
//! asks, at most the bound). An [`Asker`]'s `answer` and `fail` run on the thread that ends
//! the ask (the poller, for an answer): they must not block.
//!
//! # Requests that cannot be queued yet
//!
//! When `put_request` answers [`Full`](crate::RequestError::Full) or
//! [`OverQuota`](crate::RequestError::OverQuota), the askers stay and the request is tried
//! again by the next [`flush`](Asks::flush): after every answer the responder hands out
//! (the connection's share is then free again), and whenever the owner of the askers calls
//! it (the [`Client`](crate::Client) does while it waits). At its deadline, such an asker is
//! told `Full` or `OverQuota` rather than `TimedOut`. [`Closed`](crate::RequestError::Closed)
//! refuses every later ask and ends the asks whose requests were not queued (the queued ones
//! are still answered: the server answers every request it accepted);
//! [`UnknownConnection`](crate::RequestError::UnknownConnection) ends them all.

use crate::connection::{Abandoned, ConnectionId, Response};
use crate::idict::IDict;
use crate::notify::Notify;
use crate::request::{Query, Request, RequestError, Requester};
use alloc::collections::BTreeMap;
use core::fmt;
use core::marker::PhantomData;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Instant;

/// Somebody waiting for one answer: a thread, a task, a network query, a browser.
///
/// Exactly one of [`answer`](Self::answer) and [`fail`](Self::fail) is called for an
/// accepted asker, unless its owner withdraws it ([`Asks::cancel`], [`Asks::expire`], which
/// hand it back). Both run on whichever thread ends the ask (the poller, for `answer`) and
/// must not block: push into a bounded buffer without waiting, complete a one-shot, send a
/// network reply that queues. An asker that is dropped unanswered (which only happens when
/// a thread unwinds through the machinery) should tell its party it is gone, as a
/// `zenoh::Query` does by sending its final reply.
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
    /// No answer will come: the connection was dropped (removed, or the server dropped),
    /// the server closed its request side before the request was queued, or the connection
    /// is no longer attached.
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
    /// Some queries still wait for room in the server's queue: sweep (or
    /// [`flush`](Asks::flush)) again soon.
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
    /// Requests the server accepted (at most one per query in flight).
    pub requests_sent: u64,
    /// `put_request` calls refused because the queue was full or the share taken (tried
    /// again later).
    pub requests_deferred: u64,
    /// Answers the responder received from the server.
    pub responses: u64,
}

/// Where a query's request stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sent {
    /// Not queued, nor being put: refused for want of room (why, if so). Sent by the next
    /// flush.
    Unsent(Option<AskError>),
    /// Being put, or queued: the answer will come (unless the connection goes away). While
    /// a request refused before is being put again, why it was refused: until it is
    /// accepted, it still has not found room.
    Queued(Option<AskError>),
}

impl Sent {
    fn is_queued(self) -> bool {
        matches!(self, Self::Queued(_))
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
    /// Tells this entry from a later one of the same query, for a `put_request` result
    /// that comes back after the lock was released.
    round: u64,
    sent: Sent,
    askers: Vec<Waiting<A>>,
}

impl<A> Entry<A> {
    /// The error an asker of this entry gets when its deadline passes.
    fn expiry(&self) -> AskError {
        match self.sent {
            Sent::Unsent(Some(why)) | Sent::Queued(Some(why)) => why,
            Sent::Unsent(None) | Sent::Queued(None) => AskError::TimedOut,
        }
    }
}

/// The table behind the lock.
struct Table<K, A> {
    /// Later asks are refused; set by a close, or when the server says its request side is
    /// closed.
    closed: bool,
    max: usize,
    next_id: u64,
    next_round: u64,
    /// Entries in the `Unsent` state.
    unsent: usize,
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
        if matches!(entry.sent, Sent::Unsent(_)) {
            self.unsent -= 1;
        }
        self.stats.outstanding -= entry.askers.len() as u64;
        Some(entry)
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
        self.stats.outstanding = 0;
        entries
    }

    /// Removes an entry left with no asker, unless its request is queued (then it stays
    /// until the answer comes, so that a new asker of the query joins it instead of
    /// sending a second request).
    fn tidy(&mut self, query: Query<&K>) {
        if let Some(entry) = self.entry(query.clone()) {
            if entry.askers.is_empty() && !entry.sent.is_queued() {
                self.remove(query);
            }
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
}

fn as_ref<K>(query: &Query<K>) -> Query<&K> {
    match query {
        Query::Key(key) => Query::Key(key),
        Query::All => Query::All,
    }
}

/// The query a response answers.
fn query_of<'a, D: IDict>(response: &Response<'a, D>) -> Query<&'a D::Key> {
    match response {
        Response::Value { key, .. } | Response::NotFound { key, .. } => Query::Key(*key),
        Response::Snapshot(_) => Query::All,
    }
}

/// A server's [`Requester`], with its types erased.
trait Put<K>: Send + Sync {
    fn put(&self, request: Request<K>) -> Result<(), RequestError<K>>;
    fn is_closed(&self) -> bool;
}

impl<K: Send, N: Notify, const Q: usize, const MAXC: usize> Put<K> for Requester<K, N, Q, MAXC> {
    fn put(&self, request: Request<K>) -> Result<(), RequestError<K>> {
        self.put_request(request)
    }

    fn is_closed(&self) -> bool {
        Requester::is_closed(self)
    }
}

/// What the two halves share.
struct Inner<K, A> {
    /// The connection's id: set once, when the connection is attached, before either half
    /// is handed out.
    id: OnceLock<ConnectionId>,
    requester: Box<dyn Put<K>>,
    table: Mutex<Table<K, A>>,
}

impl<K: Clone + Ord, A: Asker> Inner<K, A> {
    fn table(&self) -> MutexGuard<'_, Table<K, A>> {
        // A panic while the lock was held (in a key's `Ord` or `Clone`) leaves the table
        // consistent enough to go on: at worst a count is off; askers are still told.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Puts the request of `query` (its entry is `Queued` in round `round`) and records a
    /// refusal. Called without the lock.
    fn send(&self, query: Query<K>, round: u64) {
        let Some(&from) = self.id.get() else {
            // Cannot happen: the halves are handed out once the id is set.
            return self.close();
        };
        let error = match self.requester.put(Request {
            query: query.clone(),
            from,
        }) {
            Ok(()) => {
                let mut table = self.table();
                table.stats.requests_sent += 1;
                if let Some(entry) = table.entry(as_ref(&query)).filter(|e| e.round == round) {
                    // Queued at last: from now on, waiting is for the answer.
                    entry.sent = Sent::Queued(None);
                }
                return;
            }
            Err(error) => error,
        };
        let mut ended: Vec<Waiting<A>> = Vec::new();
        {
            let mut table = self.table();
            let deferred = match error {
                RequestError::Full(request) => Ok((request, AskError::Full)),
                RequestError::OverQuota(request) => Ok((request, AskError::OverQuota)),
                other => Err(other),
            };
            match deferred {
                Ok((request, why)) => {
                    table.stats.requests_deferred += 1;
                    let query = as_ref(&request.query);
                    if let Some(entry) = table.entry(query.clone()).filter(|e| e.round == round) {
                        entry.sent = Sent::Unsent(Some(why));
                        table.unsent += 1;
                        table.tidy(query);
                    }
                }
                Err(RequestError::Closed(request)) => {
                    // Nothing more will be queued. Requests already queued are still
                    // answered; the others never will be.
                    table.closed = true;
                    let query = as_ref(&request.query);
                    if let Some(entry) = table.entry(query).filter(|e| e.round == round) {
                        entry.sent = Sent::Unsent(Some(AskError::Closed));
                        table.unsent += 1;
                    }
                    let unsent: Vec<Query<K>> = table
                        .entries_mut()
                        .filter(|(_, e)| matches!(e.sent, Sent::Unsent(_)))
                        .map(|(q, _)| q.cloned())
                        .collect();
                    for query in &unsent {
                        if let Some(entry) = table.remove(as_ref(query)) {
                            ended.extend(entry.askers);
                        }
                    }
                }
                // `UnknownConnection` (the other refusals were taken above).
                Err(_) => {
                    // Detached: nothing queued will be answered either.
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
                .filter(|(_, e)| matches!(e.sent, Sent::Unsent(_)))
                .map(|(query, entry)| {
                    if let Sent::Unsent(why) = entry.sent {
                        entry.sent = Sent::Queued(why);
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

/// The askers' half: asks through one connection. Cheap to clone; `Send + Sync` when `A`
/// is `Send`. See the [module docs](self).
pub struct Asks<D: IDict, A> {
    inner: Arc<Inner<D::Key, A>>,
    id: ConnectionId,
}

impl<D: IDict, A> Clone for Asks<D, A> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            id: self.id,
        }
    }
}

/// The connection's half: hands the server's answers to the askers. Owned by the
/// connection; dropping it ends every outstanding ask with [`AskError::Closed`] and
/// refuses later ones.
pub struct Responder<D: IDict, A: Asker> {
    inner: Arc<Inner<D::Key, A>>,
    _idict: PhantomData<fn() -> D>,
}

impl<D: IDict, A: Asker> Asks<D, A> {
    /// Builds both halves around `requester`, and attaches the connection that holds the
    /// [`Responder`] with `attach`, which returns the id it was attached under.
    ///
    /// `requester` must be the requester of the server `attach` adds the connection to
    /// (`server.requester()`), and `attach` must return the id that server gave it
    /// (`server.add_connection(..)`): that is the only place an id enters, and every
    /// request is then made under it. At most `max_asks` asks may be outstanding at once.
    ///
    /// # Errors
    ///
    /// Whatever `attach` returns (for `add_connection`, the connection handed back when
    /// every slot is taken).
    pub fn attach<N, E, const Q: usize, const MAXC: usize>(
        requester: Requester<D::Key, N, Q, MAXC>,
        max_asks: usize,
        attach: impl FnOnce(Responder<D, A>) -> Result<ConnectionId, E>,
    ) -> Result<Self, E>
    where
        D::Key: 'static,
        N: Notify + 'static,
    {
        let inner = Arc::new(Inner {
            id: OnceLock::new(),
            requester: Box::new(requester),
            table: Mutex::new(Table {
                closed: false,
                max: max_asks,
                next_id: 0,
                next_round: 0,
                unsent: 0,
                keys: BTreeMap::new(),
                all: None,
                stats: AskStats::default(),
            }),
        });
        let responder = Responder {
            inner: Arc::clone(&inner),
            _idict: PhantomData,
        };
        let id = attach(responder)?;
        // The only set: `inner` was made above.
        let _ = inner.id.set(id);
        Ok(Self { inner, id })
    }

    /// Asks for `query` on behalf of `asker`, until `deadline`.
    ///
    /// **Any thread.** Joins the request in flight for `query` if there is one; else puts
    /// one (`put_request` never blocks; it runs outside the lock). The asker is then told
    /// exactly once, through [`Asker::answer`] or [`Asker::fail`], possibly before this
    /// returns (when the server refuses the request for good), unless it is withdrawn with
    /// [`cancel`](Self::cancel) or [`expire`](Self::expire).
    ///
    /// The deadline is enforced by [`sweep`](Self::sweep) and [`expire`](Self::expire):
    /// whoever owns the askers calls one of them by then.
    ///
    /// # Errors
    ///
    /// [`Refused`] hands the query and the asker back, untouched, with
    /// [`AskError::TooManyAsks`] when `max_asks` asks are outstanding, or
    /// [`AskError::Closed`] once the connection is gone or the server has closed its
    /// request side.
    pub fn ask(
        &self,
        query: Query<D::Key>,
        asker: A,
        deadline: Instant,
    ) -> Result<Ticket<D::Key>, Refused<D::Key, A>> {
        let mut table = self.inner.table();
        let refusal = if table.closed {
            Some(AskError::Closed)
        } else if table.stats.outstanding >= table.max as u64 {
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
        let id = table.next_id;
        table.next_id += 1;
        table.stats.asked += 1;
        table.stats.outstanding += 1;
        let ticket = Ticket {
            query: query.clone(),
            id,
        };
        let waiting = Waiting {
            id,
            asker,
            deadline,
        };
        let send = if let Some(entry) = table.entry(as_ref(&query)) {
            entry.askers.push(waiting);
            match entry.sent {
                Sent::Queued(_) => None,
                // Waiting for room: try again now.
                Sent::Unsent(why) => {
                    entry.sent = Sent::Queued(why);
                    let round = entry.round;
                    table.unsent -= 1;
                    Some(round)
                }
            }
        } else {
            let round = table.next_round;
            table.next_round += 1;
            let entry = Entry {
                round,
                sent: Sent::Queued(None),
                askers: alloc::vec![waiting],
            };
            match ticket.query.clone() {
                Query::Key(key) => drop(table.keys.insert(key, entry)),
                Query::All => table.all = Some(entry),
            }
            Some(round)
        };
        drop(table);
        if let Some(round) = send {
            self.inner.send(query, round);
        }
        Ok(ticket)
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
                while at < entry.askers.len() {
                    let deadline = entry.askers[at].deadline;
                    if deadline <= now {
                        expired.push((entry.askers.swap_remove(at).asker, error));
                    } else {
                        next_deadline = Some(next_deadline.map_or(deadline, |d| d.min(deadline)));
                        at += 1;
                    }
                }
                if entry.askers.is_empty() && !entry.sent.is_queued() {
                    emptied.push(query.cloned());
                }
            }
            table.stats.expired += expired.len() as u64;
            table.stats.outstanding -= expired.len() as u64;
            for query in &emptied {
                table.remove(as_ref(query));
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

    /// Puts the request of every query that is waiting for room in the server's queue;
    /// returns whether some still wait.
    ///
    /// **Any thread.** A short lock when nothing waits (the common case); else one
    /// `put_request` per waiting query, outside the lock.
    pub fn flush(&self) -> bool {
        self.inner.flush()
    }

    /// The id of the connection every request is made under.
    pub fn id(&self) -> ConnectionId {
        self.id
    }

    /// Whether later asks are refused: the connection is gone, or the server closed its
    /// request side.
    pub fn is_closed(&self) -> bool {
        self.inner.table().closed || self.inner.requester.is_closed()
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

impl<D: IDict, A: Asker> Responder<D, A> {
    /// Hands the server's `response` to every asker of its query, then
    /// [`flush`](Asks::flush)es (the answer has freed the connection's share of the queue).
    ///
    /// **Poller** (in [`Connection::on_response`](crate::Connection::on_response)). A short
    /// lock to take the askers; if there are any, `prepare` makes the reply once, and each
    /// asker's [`answer`](Asker::answer) is called with it, outside the lock. Returns how
    /// many askers were answered (0 when all of them had withdrawn or expired).
    pub fn respond<F>(&self, response: &Response<'_, D>, prepare: F) -> usize
    where
        F: FnOnce(&Response<'_, D>) -> A::Reply,
    {
        let entry = {
            let mut table = self.inner.table();
            table.stats.responses += 1;
            let entry = table.remove(query_of(response));
            if let Some(entry) = &entry {
                table.stats.answered += entry.askers.len() as u64;
            }
            entry
        };
        let mut answered = 0;
        if let Some(entry) = entry.filter(|e| !e.askers.is_empty()) {
            let reply = prepare(response);
            for waiting in entry.askers {
                waiting.asker.answer(&reply);
                answered += 1;
            }
        }
        self.inner.flush();
        answered
    }

    /// Ends the asks of `query` with [`AskError::Abandoned`]`(why)`: for a connection told
    /// that the server will never answer its request for `query`
    /// ([`Connection::on_abandoned`](crate::Connection::on_abandoned)). Then
    /// [`flush`](Asks::flush)es: the abandoned request has freed the connection's share of
    /// the queue (and once the server has closed its request side, the asks still waiting
    /// for room learn it at once).
    ///
    /// **Poller.** A short lock; the askers are told outside it. Returns how many asks it
    /// ended.
    pub fn abandon(&self, query: &Query<D::Key>, why: Abandoned) -> usize {
        let entry = {
            let mut table = self.inner.table();
            let entry = table.remove(as_ref(query));
            if let Some(entry) = &entry {
                table.stats.abandoned += entry.askers.len() as u64;
            }
            entry
        };
        let mut ended = 0;
        for waiting in entry.into_iter().flat_map(|e| e.askers) {
            waiting.asker.fail(AskError::Abandoned(why));
            ended += 1;
        }
        self.inner.flush();
        ended
    }
}

impl<D: IDict, A: Asker> Drop for Responder<D, A> {
    fn drop(&mut self) {
        self.inner.close();
    }
}

impl<D: IDict, A> fmt::Debug for Asks<D, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Asks")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl<D: IDict, A: Asker> fmt::Debug for Responder<D, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Responder")
            .field("id", &self.inner.id.get())
            .finish_non_exhaustive()
    }
}
