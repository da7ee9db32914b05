//! [`Client`] (std): ask for a value from any thread, and get the answer back.
//!
//! A client is bound to one connection of a server, a [`ClientConnection`] the poller owns.
//! Any number of threads and tasks share it (it is `Send + Sync + Clone`) and ask through
//! it, blocking ([`Client::get`], [`Client::get_all`]) or async ([`Client::get_async`],
//! [`Client::get_all_async`], futures for any executor). It is a
//! [relay](crate::runtime::relay) whose worker side is the callers themselves: the poller
//! hands each answer to the relay's queue and wakes one waiting caller, which hands every
//! queued answer to its askers. So, through the [`asks`](crate::runtime::asks) machinery:
//!
//! - concurrent asks for the same key share one request: the first puts it, the others
//!   join it, and the answer comes back to all of them;
//! - every ask has a deadline, and ends by it: answered, or with an [`AskError`] saying
//!   why not ([`TimedOut`](AskError::TimedOut), or [`Full`](AskError::Full) /
//!   [`OverQuota`](AskError::OverQuota) when the request could not be queued before the
//!   deadline; requests refused for want of room are tried again while the caller waits);
//! - at most `max_asks` asks are outstanding at once; past that, an ask fails at once with
//!   [`AskError::TooManyAsks`];
//! - when the connection is dropped (the server dropped, or the connection removed and
//!   dropped) every waiting caller gets [`AskError::Closed`] at once; once the server has
//!   closed its request side, an ask that cannot be queued gets `Closed` too;
//! - when the server gives up on a request it accepted (a panic while reading its value,
//!   or a [`Runner`](crate::Runner) whose poller panicked abandoning what it had accepted:
//!   see [`fault`](crate::fault)), it tells the connection through
//!   [`Connection::on_abandoned`](crate::Connection::on_abandoned), and the callers waiting for that answer get
//!   [`AskError::Abandoned`] at once, with the reason. The client itself stays usable: a later ask is queued
//!   again, if the server still accepts requests.
//!
//! The client speaks for its own connection only: its id is fixed when it is attached, and
//! no method takes another.
//!
//! One case still ends at the deadline rather than at once: a connection removed with
//! [`remove_connection`](crate::QueueServer::remove_connection) and *kept* (not dropped),
//! or one the server removed as failed (a panic while it prepared an answer: cloning the
//! value or the snapshot) and keeps for [`take_failed`](crate::QueueServer::take_failed).
//! The server then drops its queued requests (counted orphaned) without telling it, so the
//! asks waiting for them end `TimedOut`; the next request the client puts is refused as
//! unknown, which ends every ask with `Closed`. Dropping the removed connection ends them
//! all at once.
//!
//! # Where things run
//!
//! | operation | where | guarantee |
//! |---|---|---|
//! | [`Client::get`], [`Client::get_all`] | any thread | blocks until the answer or the deadline; allocates (a small slot per ask, and the query's entry when no other caller is asking for it) |
//! | [`Client::get_async`], [`Client::get_all_async`] | any task | the future only uses its `Waker`; the process's one timer thread wakes it at its deadline |
//! | answering (the [`ClientConnection`], a [`RelayConnection`]) | poller | a clone of the key and the value (the snapshot's `Arc`, or one copy, for `get_all`), one short lock, at most one `Waker::wake`; never blocks on a caller |
//! | handing answers to callers | a waiting caller | one copy per answer, shared by its callers through an `Arc`; one wake per other caller |
//!
//! ```
//! use queueserver::{QueueServer, Runner};
//! use std::collections::BTreeMap;
//! use std::time::Duration;
//!
//! type State = BTreeMap<&'static str, f64>;
//!
//! let (mut publisher, mut server) = QueueServer::new(State::from([("x", 0.0)]));
//! let client = server.add_client().unwrap();
//! let runner = Runner::every(server, Duration::from_millis(1)).unwrap();
//!
//! publisher.put_update(&State::from([("x", 4.0)]));
//! let asker = client.clone();
//! let answer = std::thread::spawn(move || asker.get("x", Duration::from_secs(10)))
//!     .join()
//!     .unwrap()
//!     .unwrap();
//! assert_eq!(answer.value, Some(4.0));
//! assert_eq!(client.get("nope", Duration::from_secs(10)).unwrap().value, None);
//!
//! let all = futures_executor::block_on(client.get_all_async(Duration::from_secs(10)));
//! assert_eq!(all.unwrap()["x"], 4.0);
//! runner.shutdown().unwrap();
//! ```

use super::asks::{Asker, Ticket};
use super::relay::{Answered, Relay, RelayConnection, Sink};
use super::timer::{Alarm, Timer};
use crate::clock::Clock;
use crate::connection::ConnectionId;
use crate::idict::IDict;
use crate::notify::Notify;
use crate::park;
use crate::request::{Query, Requester};
use crate::server::{ConnectionsFull, QueueServer};
use crate::snapshot::Snapshot;
use atomic_waker::AtomicWaker;
use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};
use core::time::Duration;
use std::sync::{Arc, OnceLock};
use std::task::Waker;
use std::time::Instant;

pub use super::asks::{AskError, AskStats};

/// The connection of a [`Client`]: the poller owns it. It is the client's
/// [relay](crate::runtime::relay)'s connection, and does not subscribe to updates (use a
/// [`Reader`](crate::Reader) for those).
///
/// Dropping it (removing it, or dropping the server) ends every waiting ask with
/// [`AskError::Closed`]. The server abandoning the request an ask waits for ends it with
/// [`AskError::Abandoned`].
pub type ClientConnection<D> = RelayConnection<D>;

/// How many asks a client made by [`QueueServer::add_client`] may have outstanding.
pub const DEFAULT_MAX_ASKS: usize = 1024;

/// A waiting caller with its query unsent retries at first after this long...
const RETRY_MIN: Duration = Duration::from_micros(50);
/// ...then twice as long each time, up to this.
const RETRY_MAX: Duration = Duration::from_millis(2);

/// The answer for one key: its value (`None` when the snapshot has no such key) and the
/// sequence number of the snapshot it was read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Answer<V> {
    /// The value, or `None` for a key the snapshot does not have.
    pub value: Option<V>,
    /// The number of the snapshot read.
    pub seq: u64,
}

/// A one-shot result with the waker of whoever waits for it. Completed once, by whoever
/// ended the ask (only one can: the table hands an asker to one party).
struct Slot<T> {
    result: OnceLock<Result<T, AskError>>,
    waker: AtomicWaker,
}

impl<T> Slot<T> {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            result: OnceLock::new(),
            waker: AtomicWaker::new(),
        })
    }

    /// Sets the result, if not set yet, and wakes the waiter. Never blocks: the slot has
    /// one writer, and `AtomicWaker::wake` is lock-free.
    fn complete(&self, result: Result<T, AskError>) {
        if self.result.set(result).is_ok() {
            self.waker.wake();
        }
    }
}

/// What the askers of one query are handed: prepared once per answer, shared by all.
enum ClientReply<D: IDict> {
    Key(Arc<Answer<D::Value>>),
    All(Arc<Snapshot<D>>),
}

/// A caller waiting for its slot.
enum ClientAsker<D: IDict> {
    Key(Arc<Slot<Arc<Answer<D::Value>>>>),
    All(Arc<Slot<Arc<Snapshot<D>>>>),
}

impl<D: IDict> Asker for ClientAsker<D> {
    type Reply = ClientReply<D>;

    fn answer(self, reply: &ClientReply<D>) {
        match (&self, reply) {
            (Self::Key(slot), ClientReply::Key(answer)) => slot.complete(Ok(Arc::clone(answer))),
            (Self::All(slot), ClientReply::All(snapshot)) => {
                slot.complete(Ok(Arc::clone(snapshot)));
            }
            // A key's askers only ever get a key's reply; were it otherwise, `drop` would
            // tell the caller `Closed` rather than hand it a wrong answer.
            _ => {}
        }
    }

    fn fail(self, error: AskError) {
        self.fail_with(error);
    }
}

impl<D: IDict> ClientAsker<D> {
    fn fail_with(&self, error: AskError) {
        match self {
            Self::Key(slot) => slot.complete(Err(error)),
            Self::All(slot) => slot.complete(Err(error)),
        }
    }
}

impl<D: IDict> Drop for ClientAsker<D> {
    /// An asker dropped before it was told (a thread unwound through the machinery, or a
    /// withdrawn ask) tells its caller `Closed`; after an answer this does nothing.
    fn drop(&mut self) {
        self.fail_with(AskError::Closed);
    }
}

/// The client's sink: prepares one shared reply per answer.
struct Callers;

impl<D: IDict> Sink<D> for Callers {
    type Asker = ClientAsker<D>;

    fn prepare(&mut self, answer: Answered<D>) -> ClientReply<D> {
        match answer {
            Answered::Value { value, seq, .. } => ClientReply::Key(Arc::new(Answer {
                value: Some(value),
                seq,
            })),
            Answered::NotFound { seq, .. } => {
                ClientReply::Key(Arc::new(Answer { value: None, seq }))
            }
            Answered::Snapshot(snapshot) => ClientReply::All(snapshot),
        }
    }
}

/// Asks for values through one connection, from any thread or task: `Send + Sync +
/// Clone`. See the [module docs](self).
///
/// Made by [`QueueServer::add_client`], or by [`Client::attach`] for a server with other
/// connections too.
pub struct Client<D: IDict> {
    relay: Relay<D, ClientAsker<D>>,
    id: ConnectionId,
    /// The process's timer, held from the first async ask until every handle is dropped.
    timer: Arc<OnceLock<Arc<Timer>>>,
}

impl<D: IDict> Clone for Client<D> {
    fn clone(&self) -> Self {
        Self {
            relay: self.relay.clone(),
            id: self.id,
            timer: Arc::clone(&self.timer),
        }
    }
}

/// A caller's registration as the relay's worker side, withdrawn (and whatever work it
/// was woken for handed on) when it stops waiting.
struct Waiting<'a, D: IDict> {
    relay: &'a Relay<D, ClientAsker<D>>,
    slot: Option<u64>,
}

impl<'a, D: IDict> Waiting<'a, D> {
    fn new(relay: &'a Relay<D, ClientAsker<D>>) -> Self {
        Self { relay, slot: None }
    }

    /// Hands every queued answer to its askers.
    fn drain(&self) {
        self.relay.drain(&mut Callers, false);
    }

    /// Whether work came in; if not, `waker` is woken when it does.
    fn ready_or_register(&mut self, waker: &Waker) -> bool {
        self.relay.ready_or_register(&mut self.slot, waker, false)
    }
}

impl<D: IDict> Drop for Waiting<'_, D> {
    fn drop(&mut self) {
        if self.slot.is_some() {
            self.relay.unregister(&mut self.slot);
        }
        // The poller may have woken this caller for answers that are not its own: it
        // hands them on before it goes.
        self.drain();
    }
}

impl<D> Client<D>
where
    D: IDict + Send + Sync + 'static,
    D::Value: Clone + Send + Sync,
{
    /// Makes a client and its connection, and attaches the connection with `attach`, which
    /// returns the id it was attached under. At most `max_asks` asks may be outstanding.
    ///
    /// `requester` must be the requester of the server `attach` adds the connection to, and
    /// `attach` must return the id that server gave it: that is the only place an id
    /// enters a client.
    ///
    /// ```
    /// use queueserver::{Client, Connection, QueueServer};
    /// use queueserver::runtime::client::DEFAULT_MAX_ASKS;
    /// # use std::collections::BTreeMap;
    /// # type State = BTreeMap<&'static str, f64>;
    ///
    /// let (_publisher, mut server) = QueueServer::new(State::new());
    /// let client = Client::attach(server.requester(), DEFAULT_MAX_ASKS, |connection| {
    ///     server.add_connection(connection.into()) // a server of `Box<dyn Connection<State> + Send>`
    /// })
    /// .unwrap();
    /// # let _: &queueserver::QueueServer<State, Box<dyn Connection<State> + Send>> = &server;
    /// assert!(server.is_attached(client.id()));
    /// ```
    ///
    /// # Errors
    ///
    /// Whatever `attach` returns (for `add_connection`, the connection handed back when
    /// every slot is taken).
    pub fn attach<N, E, const Q: usize, const MAXC: usize>(
        requester: Requester<D::Key, N, Q, MAXC>,
        max_asks: usize,
        attach: impl FnOnce(ClientConnection<D>) -> Result<ConnectionId, E>,
    ) -> Result<Self, E>
    where
        N: Notify + 'static,
    {
        let mut id = None;
        let relay = Relay::attach(requester, None, max_asks, |connection| {
            let attached = attach(connection)?;
            id = Some(attached);
            Ok(attached)
        })?;
        let Some(id) = id else {
            unreachable!("attach returned an id, or the error returned above")
        };
        Ok(Self {
            relay,
            id,
            timer: Arc::new(OnceLock::new()),
        })
    }
}

impl<D: IDict> Client<D>
where
    D::Value: Clone,
{
    /// The value of `key`, read by the poller from its newest snapshot.
    ///
    /// **Any thread; blocks** until the answer comes or `timeout` passes. Joins the
    /// request in flight for `key`, if another caller made one; else puts one, and tries
    /// again while the queue is full or the connection's share is taken.
    ///
    /// # Errors
    ///
    /// [`AskError::TimedOut`], [`AskError::Full`] or [`AskError::OverQuota`] when
    /// `timeout` passes first (the last two when the request could not be queued);
    /// [`AskError::Closed`] or [`AskError::Abandoned`] when no answer will come;
    /// [`AskError::TooManyAsks`], at once, when the client has its bound of asks
    /// outstanding.
    pub fn get(&self, key: D::Key, timeout: Duration) -> Result<Answer<D::Value>, AskError> {
        let slot = Slot::new();
        let asker = ClientAsker::Key(Arc::clone(&slot));
        let answer = self.wait(Query::Key(key), asker, &slot, timeout)?;
        Ok(Answer::clone(&answer))
    }

    /// The whole newest snapshot the poller has, shared between every caller that asked
    /// for it at the same time.
    ///
    /// **Any thread; blocks**, as [`get`](Self::get).
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    pub fn get_all(&self, timeout: Duration) -> Result<Arc<Snapshot<D>>, AskError> {
        let slot = Slot::new();
        let asker = ClientAsker::All(Arc::clone(&slot));
        self.wait(Query::All, asker, &slot, timeout)
    }

    /// [`get`](Self::get) as a future, for any executor.
    ///
    /// **Any task.** The ask is made when the future is first polled, and the timeout
    /// counts from this call. Dropping the future withdraws the ask. The process's timer
    /// thread wakes the task at the deadline.
    ///
    /// # Panics
    ///
    /// When polled, if the timer thread cannot be started (as `std::thread::spawn`).
    pub fn get_async(&self, key: D::Key, timeout: Duration) -> Get<D> {
        let slot = Slot::new();
        let asker = ClientAsker::Key(Arc::clone(&slot));
        Get {
            pending: Pending::new(self.clone(), Query::Key(key), asker, slot, timeout),
        }
    }

    /// [`get_all`](Self::get_all) as a future, for any executor; see
    /// [`get_async`](Self::get_async).
    ///
    /// # Panics
    ///
    /// As [`get_async`](Self::get_async).
    pub fn get_all_async(&self, timeout: Duration) -> GetAll<D> {
        let slot = Slot::new();
        let asker = ClientAsker::All(Arc::clone(&slot));
        GetAll {
            pending: Pending::new(self.clone(), Query::All, asker, slot, timeout),
        }
    }

    /// The id of this client's connection.
    pub fn id(&self) -> ConnectionId {
        self.id
    }

    /// Whether asks are refused now: the connection is gone, or the server has closed its
    /// request side (a request it already accepted is still answered).
    ///
    /// **Any thread.** Like every call on a client, it first hands the answers the poller
    /// queued to their callers (a few short locks).
    pub fn is_closed(&self) -> bool {
        self.relay.drain(&mut Callers, false);
        self.relay.asks().is_closed()
    }

    /// How many asks are outstanding, once the answers the poller queued are handed on.
    pub fn outstanding(&self) -> usize {
        self.relay.drain(&mut Callers, false);
        self.relay.asks().outstanding()
    }

    /// The client's counts: asks made, answered, ended otherwise; requests sent. The
    /// answers the poller queued are handed on first.
    pub fn stats(&self) -> AskStats {
        self.relay.drain(&mut Callers, false);
        self.relay.asks().stats()
    }

    fn wait<T: Clone>(
        &self,
        query: Query<D::Key>,
        asker: ClientAsker<D>,
        slot: &Slot<T>,
        timeout: Duration,
    ) -> Result<T, AskError> {
        let relay = &self.relay;
        let deadline = park::deadline_after(timeout);
        let ticket = relay.ask(query, asker, deadline).map_err(|r| r.error)?;
        let waker = park::thread_waker();
        slot.waker.register(&waker);
        let mut waiting = Waiting::new(relay);
        let mut retry = RETRY_MIN;
        loop {
            waiting.drain();
            if let Some(result) = slot.result.get() {
                return result.clone();
            }
            let now = Instant::now();
            if now >= deadline {
                if let Some((asker, error)) = relay.asks().expire(&ticket) {
                    // Nobody to wake: this thread is returning.
                    drop(slot.waker.take());
                    drop(asker);
                    return Err(error);
                }
                // Another caller took the asker to answer it: its wake follows.
                park::park_until(now + RETRY_MAX);
                continue;
            }
            let wake_at = if relay.asks().flush() {
                let at = now + retry;
                retry = (retry * 2).min(RETRY_MAX);
                at.min(deadline)
            } else {
                deadline
            };
            if waiting.ready_or_register(&waker) {
                continue;
            }
            if slot.result.get().is_none() {
                park::park_until(wake_at);
            }
        }
    }
}

impl<D: IDict> fmt::Debug for Client<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// An async ask, before and after it is made.
struct Pending<D: IDict, T> {
    client: Client<D>,
    deadline: Instant,
    /// The query and the asker, until the first poll makes the ask.
    start: Option<(Query<D::Key>, ClientAsker<D>)>,
    ticket: Option<Ticket<D::Key>>,
    slot: Arc<Slot<Arc<T>>>,
    /// The registration as the relay's worker side.
    registration: Option<u64>,
    /// Wakes the task at the deadline (or to retry an unsent request), with its waker.
    alarm: Option<(Alarm, Waker)>,
}

// No field is ever pinned: the future moves freely.
impl<D: IDict, T> Unpin for Pending<D, T> {}

impl<D: IDict, T> Pending<D, T>
where
    D::Value: Clone,
{
    fn new(
        client: Client<D>,
        query: Query<D::Key>,
        asker: ClientAsker<D>,
        slot: Arc<Slot<Arc<T>>>,
        timeout: Duration,
    ) -> Self {
        Self {
            client,
            deadline: park::deadline_after(timeout),
            start: Some((query, asker)),
            ticket: None,
            slot,
            registration: None,
            alarm: None,
        }
    }

    /// Has the timer wake `waker` at `at`, unless it already does by then.
    fn alarm(&mut self, at: Instant, waker: &Waker) {
        let armed = self
            .alarm
            .as_ref()
            .is_some_and(|(alarm, w)| alarm.at() <= at && w.will_wake(waker));
        if !armed {
            let timer = self.client.timer.get_or_init(Timer::shared);
            self.alarm = Some((timer.wake_at(at, waker), waker.clone()));
        }
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Result<Arc<T>, AskError>> {
        let relay = self.client.relay.clone();
        if let Some((query, asker)) = self.start.take() {
            match relay.ask(query, asker, self.deadline) {
                Ok(ticket) => self.ticket = Some(ticket),
                Err(refused) => return Poll::Ready(Err(refused.error)),
            }
        }
        let Some(ticket) = self.ticket.clone() else {
            // Refused before: a finished future polled again.
            return Poll::Ready(Err(AskError::Closed));
        };
        self.slot.waker.register(cx.waker());
        loop {
            relay.drain(&mut Callers, false);
            if let Some(result) = self.slot.result.get() {
                return Poll::Ready(result.clone());
            }
            let now = Instant::now();
            if now >= self.deadline {
                if let Some((_, error)) = relay.asks().expire(&ticket) {
                    return Poll::Ready(Err(error));
                }
                // Being answered by another caller, which wakes us.
                return Poll::Pending;
            }
            let wake_at = if relay.asks().flush() {
                (now + RETRY_MAX).min(self.deadline)
            } else {
                self.deadline
            };
            if relay.ready_or_register(&mut self.registration, cx.waker(), false) {
                continue;
            }
            self.alarm(wake_at, cx.waker());
            return Poll::Pending;
        }
    }
}

impl<D: IDict, T> Drop for Pending<D, T> {
    fn drop(&mut self) {
        let relay = &self.client.relay;
        relay.unregister(&mut self.registration);
        if let Some(ticket) = &self.ticket {
            if self.slot.result.get().is_none() {
                // The asker, if still there, is dropped here, outside the table's lock.
                drop(relay.asks().cancel(ticket));
            }
        }
        // Woken for answers that are not its own: hand them on before it goes.
        relay.drain(&mut Callers, false);
    }
}

/// The future of [`Client::get_async`].
#[must_use = "futures do nothing unless polled"]
pub struct Get<D: IDict> {
    pending: Pending<D, Answer<D::Value>>,
}

impl<D: IDict> Future for Get<D>
where
    D::Value: Clone,
{
    type Output = Result<Answer<D::Value>, AskError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.get_mut()
            .pending
            .poll(cx)
            .map(|answer| answer.map(|a| Answer::clone(&a)))
    }
}

/// The future of [`Client::get_all_async`].
#[must_use = "futures do nothing unless polled"]
pub struct GetAll<D: IDict> {
    pending: Pending<D, Snapshot<D>>,
}

impl<D: IDict> Future for GetAll<D>
where
    D::Value: Clone,
{
    type Output = Result<Arc<Snapshot<D>>, AskError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.get_mut().pending.poll(cx)
    }
}

impl<D: IDict> fmt::Debug for Get<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Get").finish_non_exhaustive()
    }
}

impl<D: IDict> fmt::Debug for GetAll<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GetAll").finish_non_exhaustive()
    }
}

impl<D, N, T, const Q: usize, const MAXC: usize> QueueServer<D, ClientConnection<D>, N, T, Q, MAXC>
where
    D: IDict + Send + Sync + 'static,
    D::Value: Clone + Send + Sync,
    N: Notify + 'static,
    T: Clock,
{
    /// Attaches a client connection and returns its [`Client`], which may have
    /// [`DEFAULT_MAX_ASKS`] asks outstanding.
    ///
    /// **Poller** (before a runner takes the server, or wherever the server is). For a
    /// server with other connections too, use [`Client::attach`].
    ///
    /// # Errors
    ///
    /// [`ConnectionsFull`] when every slot is taken.
    pub fn add_client(&mut self) -> Result<Client<D>, ConnectionsFull<ClientConnection<D>>> {
        Client::attach(self.requester(), DEFAULT_MAX_ASKS, |connection| {
            self.add_connection(connection)
        })
    }
}
