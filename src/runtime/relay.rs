//! The relay: the one piece every watcher outside the poller's thread sits on.
//!
//! A [`Client`](crate::Client), the web view, Zenoh, a serial link to a microcontroller:
//! each watches the computation from another thread, and each needs the same four things.
//! A relay gives them, once:
//!
//! 1. **One connection of the server, O(1) on the poller.** Its
//!    [`on_update`](crate::Connection::on_update) puts the snapshot the poller already
//!    shares with the [`Reader`] (an `Arc`: no new copy) in a latest-wins slot; its answers
//!    and abandonments go to one bounded queue. That is all the poller does for it,
//!    whatever the number of pages, remote clients or threads behind it: it never
//!    serializes, formats, touches a socket or waits for a receiver. It wakes the worker
//!    side only when the worker side waits for that kind of work.
//! 2. **One worker side**, on a thread of the relay's own ([`Relay::spawn`]) or on the
//!    threads that wait for answers ([`Relay::drain`], as the `Client` does): it hands each
//!    answer to the askers waiting for it (through the [`asks`](crate::runtime::asks)
//!    machinery: one request per query in flight, the answer prepared once for all its
//!    askers, one bound, a deadline per ask, each asker told exactly once), keeps the
//!    deadlines of every ask, and hands the newest snapshot to the sink when the sink is
//!    ready for it.
//! 3. **A small sink per transport** ([`Sink`]): how to encode and send a snapshot, how to
//!    prepare the reply of an answer, and, through its [`Asker`], how to deliver one reply to
//!    one asker and how to tell one asker its ask ended.
//!
//! ```text
//!  poller ── on_update(&Snapshot) ──▶ latest-wins slot   (the Reader's Arc: no new copy)
//!         ── on_response/abandoned ─▶ bounded queue      (one place per query in flight)
//!                                        │ worker side: deadlines of every ask, answers to
//!                                        ▼ askers, the newest snapshot when the sink is ready
//!                                      sink: encode + send a snapshot; prepare a reply
//! ```
//!
//! # Guarantees
//!
//! | operation | where | guarantee |
//! |---|---|---|
//! | [`RelayConnection`]'s `on_update` | poller | one lock-free load of the `Reader`'s `Arc` (a copy only when the relay has no reader), one short lock, at most one wake; never waits for the worker side |
//! | [`RelayConnection`]'s `on_response`, `on_abandoned` | poller | owns the answer (a clone of the key and the value; the `Reader`'s `Arc` for a snapshot), one short lock, at most one wake; never allocates: the queue has one place per query the askers can have in flight |
//! | [`Relay::ask`], [`Relay::ask_all`] | any thread | as [`Asks::ask`] |
//! | [`Relay::drain`] | the worker side | answers and abandonments handed to their askers, the sink's `prepare` once per answer; never blocks on the poller |
//! | [`Relay::spawn`]'s thread | its own | sleeps until there is work, a deadline, or the sink's next tick |
//!
//! # Ends
//!
//! - **The connection is dropped** (removed from the server, the server dropped): the worker
//!   side still gets the last snapshot and answers the poller handed over, then every
//!   outstanding ask is told [`AskError::Closed`], and the sink is
//!   told [`End::Detached`] ([`Sink::ended`]).
//! - **The relay is closed** ([`Relay::close`], or its last handle dropped, or its worker
//!   stopped): every outstanding ask is told `Closed`, and the connection fails with
//!   [`ConnectionError::Closed`] at the poller's next call, which removes it.
//! - **A sink panics** on the worker's thread: the relay ends as
//!   [`End::Failed`] with the panic's message, every outstanding ask is told `Closed`, and
//!   the connection fails with [`ConnectionError::Panicked`] at the poller's next call: it is
//!   counted in [`Stats::connections_failed`](crate::Stats::connections_failed), removed and
//!   handed back by [`take_failed`](crate::QueueServer::take_failed), as a connection that
//!   panics on the poller is.

#[path = "relay/mailbox.rs"]
pub(crate) mod mailbox;

use self::mailbox::{Mailbox, Refused as Refusal};
use super::asks::{AskError, Upstream};
use super::asks::{AskStats, Asker, Asks, Refusal as UpstreamRefusal, Refused, Responder};
use super::asks::{Retired, Ticket};
use crate::connection::{Abandoned, Connection, ConnectionError, ConnectionId, Response};
use crate::fault::{contain, PanicMessage};
use crate::idict::IDict;
use crate::log;
use crate::notify::Notify;
use crate::park;
use crate::reader::Reader;
use crate::request::{Query, Request, RequestError, Requester};
use crate::snapshot::Snapshot;
use crate::sync::{lock, AtomicBool, Mutex, Ordering};
use core::fmt;
use std::sync::{Arc, OnceLock};
use std::task::Waker;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use self::mailbox::End;

/// How soon the worker retries requests that found no room upstream.
const RETRY: Duration = Duration::from_millis(2);

/// A snapshot handed to a relay's worker side: shared, with the time the poller handed it
/// over (the monotonic clock's: see [`taken_since_epoch`](Self::taken_since_epoch) for the
/// wall clock's).
#[derive(Clone, Debug)]
pub struct Update<D> {
    snapshot: Arc<Snapshot<D>>,
    taken: Instant,
}

impl<D> Update<D> {
    /// An update of `snapshot` taken at `taken`: for a relay fed by something other than a
    /// server's poller (see [`Feed`]).
    pub fn new(snapshot: Arc<Snapshot<D>>, taken: Instant) -> Self {
        Self { snapshot, taken }
    }

    /// The snapshot.
    pub fn snapshot(&self) -> &Arc<Snapshot<D>> {
        &self.snapshot
    }

    /// When the poller handed it to the relay, on the monotonic clock.
    pub fn taken(&self) -> Instant {
        self.taken
    }

    /// When the poller handed it over, on the wall clock: the time since the Unix epoch
    /// (0 before 1970). The wall clock is read once per process, at the first call, and
    /// the monotonic time between that call and [`taken`](Self::taken) is added to it, so
    /// that later updates never have earlier times, whatever preempts the caller; a step
    /// of the wall clock after the first call does not move it. The poller reads only the
    /// monotonic clock.
    ///
    /// **Any thread.** Allocates nothing; the first call reads both clocks.
    pub fn taken_since_epoch(&self) -> Duration {
        static ANCHOR: OnceLock<(Instant, Duration)> = OnceLock::new();
        let (at, wall) = *ANCHOR.get_or_init(|| {
            let wall = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            (Instant::now(), wall)
        });
        match self.taken.checked_duration_since(at) {
            Some(after) => wall.saturating_add(after),
            None => wall.saturating_sub(at.duration_since(self.taken)),
        }
    }
}

impl<D> core::ops::Deref for Update<D> {
    type Target = Snapshot<D>;

    fn deref(&self) -> &Snapshot<D> {
        &self.snapshot
    }
}

/// An answer the poller handed to a relay, owned until the worker side hands it to its
/// askers.
#[derive(Clone, Debug, PartialEq)]
pub enum Answered<D: IDict> {
    /// The value of `key`, read from the snapshot numbered `seq`.
    Value {
        /// The key asked for.
        key: D::Key,
        /// Its value.
        value: D::Value,
        /// The number of the snapshot read.
        seq: u64,
    },
    /// The snapshot numbered `seq` has no `key`.
    NotFound {
        /// The key asked for.
        key: D::Key,
        /// The number of the snapshot searched.
        seq: u64,
    },
    /// The whole snapshot, for a [`Query::All`] request.
    Snapshot(Arc<Snapshot<D>>),
}

impl<D: IDict> Answered<D> {
    /// The query it answers.
    pub fn query(&self) -> Query<&D::Key> {
        match self {
            Self::Value { key, .. } | Self::NotFound { key, .. } => Query::Key(key),
            Self::Snapshot(_) => Query::All,
        }
    }

    /// The number of the snapshot it was read from.
    pub fn seq(&self) -> u64 {
        match self {
            Self::Value { seq, .. } | Self::NotFound { seq, .. } => *seq,
            Self::Snapshot(snapshot) => snapshot.seq(),
        }
    }

    /// The answer as the poller lent it: for code written against
    /// [`Connection::on_response`].
    pub fn response(&self) -> Response<'_, D> {
        match self {
            Self::Value { key, value, seq } => Response::Value {
                key,
                value,
                seq: *seq,
            },
            Self::NotFound { key, seq } => Response::NotFound { key, seq: *seq },
            Self::Snapshot(snapshot) => Response::Snapshot(snapshot),
        }
    }
}

/// What the poller hands the worker side, besides updates: an answer or an abandonment,
/// with the askers the connection took out of the table for it.
pub(crate) enum Delivery<D: IDict, A> {
    Answer(Answered<D>, Retired<D::Key, A>),
    Abandoned(Query<D::Key>, Abandoned, Retired<D::Key, A>),
}

fn refused(end: End) -> ConnectionError {
    match end {
        End::Failed(message) => ConnectionError::Panicked(message),
        End::Closed | End::Detached => ConnectionError::Closed,
    }
}

/// What a relay's connection calls: the poller's view of a relay, whatever its askers.
trait Port<D: IDict>: Send + Sync {
    fn update(&self, snapshot: &Snapshot<D>) -> Result<(), ConnectionError>;
    fn answer(&self, response: Response<'_, D>) -> Result<(), ConnectionError>;
    fn abandon(&self, query: &Query<D::Key>, why: Abandoned) -> Result<(), ConnectionError>;
    fn wants_updates(&self) -> bool;
    fn detach(&self);
}

/// Everything of one relay: the mailbox, the asks, and what the worker side keeps.
struct Inner<D: IDict, A: Asker> {
    mailbox: Mailbox<Update<D>, Delivery<D, A>>,
    /// Whether the connection subscribes to updates (the sink wants them).
    subscribed: AtomicBool,
    /// The worker side has ended: the connection asks for updates, to be told at once.
    ended: AtomicBool,
    reader: Option<Reader<D>>,
    /// No askers (a channel): every answer is queued as it is, for the reader to take.
    raw: bool,
    asks: Asks<D, A>,
    responder: Responder<D, A>,
    id: Arc<OnceLock<ConnectionId>>,
    /// When the worker thread sweeps the asks next; `None` when no thread sweeps them.
    sweep: Mutex<Option<Option<Instant>>>,
    /// Held by whoever hands deliveries to askers: one at a time, in the order the poller
    /// queued them, so that a caller who was handed an answer never gets an older one.
    draining: Mutex<()>,
}

impl<D: IDict, A: Asker> Inner<D, A> {
    fn new(
        upstream: impl Upstream<D::Key> + 'static,
        id: Arc<OnceLock<ConnectionId>>,
        capacity: usize,
        reader: Option<Reader<D>>,
        raw: bool,
    ) -> Self {
        let (asks, responder) = Asks::new(upstream, capacity);
        Self {
            mailbox: Mailbox::new(capacity),
            subscribed: AtomicBool::new(false),
            ended: AtomicBool::new(false),
            reader,
            raw,
            asks,
            responder,
            id,
            sweep: Mutex::new(None),
            draining: Mutex::new(()),
        }
    }

    /// `snapshot` as an `Arc`: the one the reader holds when it is that snapshot (the
    /// poller stores each snapshot it takes there before it fans it out), else a copy.
    fn share(&self, snapshot: &Snapshot<D>) -> Arc<Snapshot<D>> {
        if let Some(reader) = &self.reader {
            let stored = reader.load_full();
            if stored.seq() == snapshot.seq() {
                return stored;
            }
        }
        Arc::new(snapshot.clone())
    }

    /// Ends the worker side: later deliveries are refused, and those queued are told
    /// [`AskError::Closed`] (nobody will hand them out).
    fn end(&self, end: End) {
        self.mailbox.close(end);
        self.ended.store(true, Ordering::Relaxed);
        while let Some(delivery) = self.mailbox.pop() {
            let retired = match delivery {
                Delivery::Answer(_, retired) | Delivery::Abandoned(_, _, retired) => retired,
            };
            self.responder.close_retired(retired);
        }
    }

    /// Queues `delivery`; a refusal tells its askers `Closed` and fails the connection.
    fn push(&self, delivery: Delivery<D, A>) -> Result<(), ConnectionError> {
        let (error, delivery) = match self.mailbox.push(delivery) {
            Ok(()) => return Ok(()),
            // More deliveries than places: someone else puts requests under this
            // connection's id, or a reader without askers reads too slowly. Failing is the
            // one way not to lose an answer silently; the server removes the connection,
            // and the worker side learns that nothing more will come.
            Err(Refusal::Full(delivery)) => {
                self.mailbox.detach();
                (ConnectionError::Overloaded, delivery)
            }
            Err(Refusal::Ended(end, delivery)) => (refused(end), delivery),
        };
        let retired = match delivery {
            Delivery::Answer(_, retired) | Delivery::Abandoned(_, _, retired) => retired,
        };
        self.responder.close_retired(retired);
        Err(error)
    }
}

impl<D, A> Port<D> for Inner<D, A>
where
    D: IDict + Send + Sync,
    D::Value: Clone + Send,
    A: Asker + Send,
{
    fn update(&self, snapshot: &Snapshot<D>) -> Result<(), ConnectionError> {
        let update = Update {
            snapshot: self.share(snapshot),
            taken: Instant::now(),
        };
        self.mailbox.offer(update).map_err(refused)
    }

    fn answer(&self, response: Response<'_, D>) -> Result<(), ConnectionError> {
        let query = match &response {
            Response::Value { key, .. } | Response::NotFound { key, .. } => Query::Key(*key),
            Response::Snapshot(_) => Query::All,
        };
        let retired = if self.raw {
            Retired::none()
        } else {
            let retired = self.responder.retire(query);
            if retired.is_empty() {
                // Nobody waits for it any more: nothing to deliver.
                return Ok(());
            }
            retired
        };
        let answer = match response {
            Response::Value { key, value, seq } => Answered::Value {
                key: key.clone(),
                value: value.clone(),
                seq,
            },
            Response::NotFound { key, seq } => Answered::NotFound {
                key: key.clone(),
                seq,
            },
            Response::Snapshot(snapshot) => Answered::Snapshot(self.share(snapshot)),
        };
        self.push(Delivery::Answer(answer, retired))
    }

    fn abandon(&self, query: &Query<D::Key>, why: Abandoned) -> Result<(), ConnectionError> {
        let retired = if self.raw {
            Retired::none()
        } else {
            let retired = self.responder.retire_abandoned(query);
            if retired.is_empty() {
                return Ok(());
            }
            retired
        };
        self.push(Delivery::Abandoned(query.clone(), why, retired))
    }

    fn wants_updates(&self) -> bool {
        // A relay whose worker side ended is called at the next update, and fails then.
        self.subscribed.load(Ordering::Relaxed) || self.ended.load(Ordering::Relaxed)
    }

    fn detach(&self) {
        self.mailbox.detach();
    }
}

/// A relay's connection: the poller owns it. Every watcher built on a relay (a
/// [`Client`](crate::Client), the web view, Zenoh) attaches one of these, so a server of
/// `RelayConnection<D>` holds any mix of them.
///
/// **Poller**: see the [module docs](self) for what each method costs. Dropping it tells the
/// worker side the server is gone ([`End::Detached`]).
pub struct RelayConnection<D: IDict> {
    port: Arc<dyn Port<D>>,
}

impl<D: IDict> Connection<D> for RelayConnection<D> {
    fn on_update(&mut self, snapshot: &Snapshot<D>) -> Result<(), ConnectionError> {
        self.port.update(snapshot)
    }

    fn on_response(&mut self, response: Response<'_, D>) -> Result<(), ConnectionError> {
        self.port.answer(response)
    }

    fn wants_updates(&self) -> bool {
        self.port.wants_updates()
    }

    fn on_abandoned(
        &mut self,
        query: &Query<D::Key>,
        why: Abandoned,
    ) -> Result<(), ConnectionError> {
        self.port.abandon(query, why)
    }
}

impl<D: IDict> Drop for RelayConnection<D> {
    fn drop(&mut self) {
        self.port.detach();
    }
}

impl<D> From<RelayConnection<D>> for Box<dyn Connection<D> + Send>
where
    D: IDict + 'static,
{
    fn from(connection: RelayConnection<D>) -> Self {
        Box::new(connection)
    }
}

impl<D: IDict> fmt::Debug for RelayConnection<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RelayConnection").finish_non_exhaustive()
    }
}

/// A server's request path under one connection's id: the [`Upstream`] of a relay
/// attached to a server.
struct Served<K, N, const Q: usize, const MAXC: usize> {
    requester: Requester<K, N, Q, MAXC>,
    id: Arc<OnceLock<ConnectionId>>,
}

impl<K: Send, N: Notify, const Q: usize, const MAXC: usize> Upstream<K> for Served<K, N, Q, MAXC> {
    fn put(&self, query: Query<K>) -> Result<(), UpstreamRefusal> {
        // Set before any handle that asks exists.
        let Some(&from) = self.id.get() else {
            return Err(UpstreamRefusal::Detached);
        };
        self.requester
            .put_request(Request { query, from })
            .map_err(|error| match error {
                RequestError::Full(_) => UpstreamRefusal::Full,
                RequestError::OverQuota(_) => UpstreamRefusal::OverQuota,
                RequestError::Closed(_) => UpstreamRefusal::Closed,
                RequestError::UnknownConnection(_) => UpstreamRefusal::Detached,
            })
    }

    fn is_closed(&self) -> bool {
        self.requester.is_closed()
    }
}

/// The upstream of a relay without askers: it never asks.
struct Nowhere;

impl<K> Upstream<K> for Nowhere {
    fn put(&self, _: Query<K>) -> Result<(), UpstreamRefusal> {
        Err(UpstreamRefusal::Detached)
    }

    fn is_closed(&self) -> bool {
        true
    }
}

/// What a transport supplies to a relay's worker side: how to prepare the reply of an
/// answer, and how to encode and send a snapshot. Its [`Asker`] delivers one reply to one
/// asker, and tells one asker its ask ended.
///
/// Every method runs on the worker side (the relay's thread, or a thread that drains), one
/// at a time. A panic in one ends the relay as [`End::Failed`] (see the [module
/// docs](self)).
pub trait Sink<D: IDict> {
    /// Who waits for answers.
    type Asker: Asker;

    /// The reply every asker of `answer` receives: made once per answer, and only when
    /// some asker still waits for it. The answer is the sink's to keep.
    fn prepare(&mut self, answer: Answered<D>) -> <Self::Asker as Asker>::Reply;

    /// Encodes and sends the newest snapshot. Called when [`pace`](Self::pace) says the
    /// sink is ready and a snapshot newer than the last one it was handed has come; and
    /// once more, whatever the pace, with the last snapshot of a server that went away.
    fn update(&mut self, update: &Update<D>) {
        let _ = update;
    }

    /// Whether the sink takes an update now, and when the worker should call
    /// [`tick`](Self::tick) next. A sink that paces its updates (a rate limit) says `false`
    /// until it is due: the poller then does not wake the worker for updates. By default:
    /// always ready, no tick.
    fn pace(&mut self, now: Instant) -> Pace {
        let _ = now;
        Pace::ready()
    }

    /// The sink's own housekeeping (counters, pings, stalled receivers), at the time
    /// [`pace`](Self::pace) asked for, or later.
    fn tick(&mut self, now: Instant) {
        let _ = now;
    }

    /// The relay ended: after the last snapshot and answers, for [`End::Detached`]; at
    /// once for [`End::Closed`]. Not called after the sink panicked.
    fn ended(&mut self, end: End) {
        let _ = end;
    }
}

/// What a sink says of its pace: see [`Sink::pace`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pace {
    /// Whether the sink takes an update now.
    pub update: bool,
    /// When to call [`Sink::tick`] next, if ever.
    pub tick: Option<Instant>,
}

impl Pace {
    /// Ready for the next update; no tick.
    pub const fn ready() -> Self {
        Self {
            update: true,
            tick: None,
        }
    }

    /// Not ready for updates before `at`, when the worker ticks it.
    pub const fn at(at: Instant) -> Self {
        Self {
            update: false,
            tick: Some(at),
        }
    }
}

/// A relay's counters: see [`Relay::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RelayStats {
    /// Snapshots the poller handed over.
    pub updates_offered: u64,
    /// Snapshots replaced by a newer one before the worker side took them: the sink was
    /// not ready (its pace), or slower than the poller.
    pub updates_superseded: u64,
    /// Snapshots the worker side took.
    pub updates_taken: u64,
    /// Answers and abandonments the poller handed over.
    pub answers: u64,
    /// The most answers waiting at once.
    pub answers_high_water: usize,
    /// Times the poller woke the worker side.
    pub wakes: u64,
    /// The asks' own counts.
    pub asks: AskStats,
}

/// What the handles of one relay hold: dropping the last one closes the relay.
struct Handle<D: IDict, A: Asker> {
    inner: Arc<Inner<D, A>>,
}

impl<D: IDict, A: Asker> Drop for Handle<D, A> {
    fn drop(&mut self) {
        // Every handle is gone: nobody will take what comes.
        self.inner.end(End::Closed);
        self.inner.responder.close();
    }
}

/// A relay: the worker side's handle, and the askers'. Cheap to clone; `Send + Sync` when
/// the IDict, its keys and values, and the asker are. See the [module docs](self).
///
/// Made by [`Relay::attach`] (to a server) or [`Relay::fed`] (fed by something else, a
/// device's line say); dropping the last handle closes it.
pub struct Relay<D: IDict, A: Asker> {
    handle: Arc<Handle<D, A>>,
}

impl<D: IDict, A: Asker> Clone for Relay<D, A> {
    fn clone(&self) -> Self {
        Self {
            handle: Arc::clone(&self.handle),
        }
    }
}

/// What [`Relay::drain`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Drained {
    /// Answers and abandonments handed to their askers.
    pub answers: usize,
    /// Whether a snapshot was handed to the sink.
    pub update: bool,
    /// The relay's end, once it has ended (its askers are then told).
    pub end: Option<End>,
}

impl<D, A> Relay<D, A>
where
    D: IDict + Send + Sync + 'static,
    D::Value: Clone + Send,
    A: Asker + Send + 'static,
{
    /// A relay attached to a server: builds its [`RelayConnection`] and attaches it with
    /// `attach`, which returns the id the server gave it (`|c| server.add_connection(c)`,
    /// or `|c| runner.add_connection(c.into())`).
    ///
    /// `requester` must be that server's. `reader`, the server's [`Reader`]
    /// (`server.reader()`), lets the relay share the snapshots the poller stores there
    /// instead of copying each, and gives the worker side the newest snapshot
    /// ([`latest`](Self::latest)); without one, each update is copied once into an `Arc`.
    /// At most `max_asks` asks may be outstanding (see [`Asks`]); the relay's queue has as
    /// many places.
    ///
    /// # Errors
    ///
    /// Whatever `attach` returns (for `add_connection`, the connection handed back when
    /// every slot is taken).
    pub fn attach<N, E, const Q: usize, const MAXC: usize>(
        requester: Requester<D::Key, N, Q, MAXC>,
        reader: Option<Reader<D>>,
        max_asks: usize,
        attach: impl FnOnce(RelayConnection<D>) -> Result<ConnectionId, E>,
    ) -> Result<Self, E>
    where
        D::Key: 'static,
        N: Notify + 'static,
    {
        let id = Arc::new(OnceLock::new());
        let upstream = Served {
            requester,
            id: Arc::clone(&id),
        };
        let inner = Arc::new(Inner::new(
            upstream,
            Arc::clone(&id),
            max_asks,
            reader,
            false,
        ));
        let connection = RelayConnection {
            port: Arc::clone(&inner) as Arc<dyn Port<D>>,
        };
        let attached = attach(connection)?;
        // The only set: `id` was made above.
        let _ = id.set(attached);
        Ok(Self::of(inner))
    }

    /// A relay fed by something other than a server's poller (a device's line, a replay):
    /// its requests go to `upstream`, and [`Feed`] (the poller's side) hands it updates
    /// and answers. `reader` as in [`attach`](Self::attach).
    pub fn fed(
        upstream: impl Upstream<D::Key> + 'static,
        reader: Option<Reader<D>>,
        max_asks: usize,
    ) -> (Self, Feed<D>) {
        let inner = Arc::new(Inner::new(
            upstream,
            Arc::new(OnceLock::new()),
            max_asks,
            reader,
            false,
        ));
        let feed = Feed(RelayConnection {
            port: Arc::clone(&inner) as Arc<dyn Port<D>>,
        });
        (Self::of(inner), feed)
    }

    /// A relay without askers whose connection takes `capacity` answers, subscribed or
    /// not: for a worker side that takes what the poller hands over itself.
    pub(crate) fn raw(capacity: usize, subscribed: bool) -> (RelayConnection<D>, Self) {
        let inner = Arc::new(Inner::new(
            Nowhere,
            Arc::new(OnceLock::new()),
            capacity,
            None,
            true,
        ));
        inner.subscribed.store(subscribed, Ordering::Relaxed);
        let connection = RelayConnection {
            port: Arc::clone(&inner) as Arc<dyn Port<D>>,
        };
        (connection, Self::of(inner))
    }
}

impl<D: IDict, A: Asker> Relay<D, A> {
    fn of(inner: Arc<Inner<D, A>>) -> Self {
        Self {
            handle: Arc::new(Handle { inner }),
        }
    }

    fn inner(&self) -> &Inner<D, A> {
        &self.handle.inner
    }

    /// The id of the relay's connection, for a relay attached to a server.
    pub fn id(&self) -> Option<ConnectionId> {
        self.inner().id.get().copied()
    }

    /// The askers' half.
    pub fn asks(&self) -> &Asks<D, A> {
        &self.inner().asks
    }

    /// Asks for `query` on behalf of `asker`, until `deadline`: [`Asks::ask`], and the
    /// relay's thread is told of the deadline, if it keeps them.
    ///
    /// **Any thread.**
    ///
    /// # Errors
    ///
    /// As [`Asks::ask`].
    pub fn ask(
        &self,
        query: Query<D::Key>,
        asker: A,
        deadline: Instant,
    ) -> Result<Ticket<D::Key>, Refused<D::Key, A>> {
        let ticket = self.inner().asks.ask(query, asker, deadline)?;
        self.sweep_after_ask(deadline);
        Ok(ticket)
    }

    /// [`Asks::ask_all`], and the relay's thread is told of the deadline.
    ///
    /// **Any thread.**
    ///
    /// # Errors
    ///
    /// As [`Asks::ask_all`].
    #[allow(clippy::type_complexity)]
    pub fn ask_all(
        &self,
        asks: Vec<(Query<D::Key>, A)>,
        deadline: Instant,
    ) -> Result<Vec<Ticket<D::Key>>, (AskError, Vec<(Query<D::Key>, A)>)> {
        let tickets = self.inner().asks.ask_all(asks, deadline)?;
        self.sweep_after_ask(deadline);
        Ok(tickets)
    }

    /// Makes the relay's thread sweep by an ask's `deadline`, or sooner when a request is
    /// waiting for room upstream.
    fn sweep_after_ask(&self, deadline: Instant) {
        let at = if self.inner().asks.has_unsent() {
            deadline.min(Instant::now() + RETRY)
        } else {
            deadline
        };
        let inner = self.inner();
        let mut sweep = lock(&inner.sweep);
        if let Some(next) = sweep.as_mut() {
            if next.map_or(true, |next| at < next) {
                *next = Some(at);
                drop(sweep);
                inner.mailbox.wake_all();
            }
        }
    }

    /// The newest snapshot the server's poller has taken, for a relay with a reader.
    ///
    /// **Any thread.** Lock-free (see [`Reader::load_full`]).
    pub fn latest(&self) -> Option<Arc<Snapshot<D>>> {
        self.inner().reader.as_ref().map(Reader::load_full)
    }

    /// The relay's reader, if it has one.
    pub fn reader(&self) -> Option<&Reader<D>> {
        self.inner().reader.as_ref()
    }

    /// Whether the relay's connection subscribes to updates: set it while some receiver
    /// wants them (a page is connected, say), so that a computation nobody watches can skip
    /// its copies ([`Publisher::wants_update`](crate::Publisher::wants_update)).
    ///
    /// **Any thread.** One atomic store; the poller reads it at its next `process_updates`.
    pub fn subscribe(&self, subscribed: bool) {
        self.inner().subscribed.store(subscribed, Ordering::Relaxed);
    }

    /// Hands every answer and abandonment the poller queued to their askers (the sink's
    /// `prepare` once per answer), in the order the poller queued them; then, if `update`
    /// and the poller handed over a newer snapshot, that snapshot to the sink. Once the
    /// relay has ended, tells every outstanding asker [`AskError::Closed`].
    ///
    /// **The worker side** (any thread that works for the relay): one drainer at a time,
    /// the others wait for it. Never blocks on the poller. A panic of the sink or an asker
    /// passes through: a worker thread catches it (see [`spawn`](Self::spawn)).
    pub fn drain<S>(&self, sink: &mut S, update: bool) -> Drained
    where
        S: Sink<D, Asker = A>,
    {
        let inner = self.inner();
        let _turn = lock(&inner.draining);
        let mut drained = Drained::default();
        while let Some(delivery) = inner.mailbox.pop() {
            drained.answers += 1;
            match delivery {
                Delivery::Answer(answer, retired) => {
                    inner.responder.answer(retired, || sink.prepare(answer));
                }
                Delivery::Abandoned(_, why, retired) => {
                    inner.responder.abandon(retired, why);
                }
            }
        }
        // The last snapshot of a server that went away is delivered whatever the pace.
        let (newest, end) = inner.mailbox.finish(update);
        if let Some(newest) = newest {
            sink.update(&newest);
            drained.update = true;
        }
        drained.end = end;
        if end.is_some() {
            inner.responder.close();
        }
        drained
    }

    /// Whether there is work for the worker side now (an answer; an update, if `updates`;
    /// an end); if not, registers `waker` under `slot` to be woken when there is. The
    /// poller wakes one registered waiter per delivery: a waiter that stops waiting
    /// [`unregister`](Self::unregister)s, then drains once more, so that work it was woken
    /// for is never left to nobody.
    ///
    /// **The worker side.** One short lock.
    pub fn ready_or_register(&self, slot: &mut Option<u64>, waker: &Waker, updates: bool) -> bool {
        self.inner().mailbox.ready_or_register(slot, waker, updates)
    }

    /// Withdraws a registration made by [`ready_or_register`](Self::ready_or_register).
    pub fn unregister(&self, slot: &mut Option<u64>) {
        self.inner().mailbox.unregister(slot);
    }

    /// Wakes the worker side, so that it looks at its sink's pace and ticks again now (a
    /// receiver joined, say).
    ///
    /// **Any thread.** A short lock, and a wake of whoever waits.
    pub fn nudge(&self) {
        self.inner().mailbox.wake_all();
    }

    /// Closes the relay: every outstanding ask is told [`AskError::Closed`], later asks are
    /// refused, and the connection fails with [`ConnectionError::Closed`] at the poller's
    /// next call (which removes it). The relay's thread, if any, stops.
    ///
    /// **Any thread.**
    pub fn close(&self) {
        self.inner().end(End::Closed);
        self.inner().responder.close();
    }

    /// How the relay ended, if it has: as the worker side sees it (the poller's side gone
    /// counts once what it left was taken).
    pub fn end(&self) -> Option<End> {
        self.inner().mailbox.end()
    }

    /// The counters.
    ///
    /// **Any thread.** Two short locks.
    pub fn stats(&self) -> RelayStats {
        let counts = self.inner().mailbox.counts();
        RelayStats {
            updates_offered: counts.offered,
            updates_superseded: counts.superseded,
            updates_taken: counts.taken,
            answers: counts.queued,
            answers_high_water: counts.high_water,
            wakes: counts.wakes,
            asks: self.inner().asks.stats(),
        }
    }

    /// Ends the relay after its sink panicked.
    fn fail(&self, message: PanicMessage) {
        log::warning!("relay sink panicked: {}", message);
        self.inner().end(End::Failed(message));
        self.inner().responder.close();
    }

    // ----- for a worker side without askers -----

    pub(crate) fn pop_raw(&self) -> Option<Delivery<D, A>> {
        self.inner().mailbox.pop()
    }

    pub(crate) fn take_update(&self) -> Option<Update<D>> {
        self.inner().mailbox.take_update()
    }

    /// Answers waiting, and the update if one waits.
    pub(crate) fn waiting(&self) -> usize {
        self.inner().mailbox.len()
    }

    pub(crate) fn counts(&self) -> mailbox::Counts {
        self.inner().mailbox.counts()
    }
}

impl<D, A> Relay<D, A>
where
    D: IDict + Send + Sync + 'static,
    D::Value: Send,
    A: Asker + Send + 'static,
{
    /// Runs the worker side on a thread of its own, named `name`, with `sink`: it sleeps
    /// until there is work, an ask's deadline, or the sink's next tick; hands answers to
    /// their askers first, then the newest snapshot when the sink is ready; ends the asks
    /// whose deadline passed; and retries requests that found no room upstream. It stops
    /// when the relay ends (its sink told, see [`Sink::ended`]) or when the returned
    /// [`Worker`] is stopped or dropped (which closes the relay).
    ///
    /// A panic of the sink (or of an asker) ends the relay as [`End::Failed`]: see the
    /// [module docs](self).
    ///
    /// # Errors
    ///
    /// The thread could not be started.
    pub fn spawn<S>(&self, name: &str, sink: S) -> std::io::Result<Worker>
    where
        S: Sink<D, Asker = A> + Send + 'static,
    {
        *lock(&self.inner().sweep) = Some(None);
        let relay = self.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new().name(name.into()).spawn({
            let stop = Arc::clone(&stop);
            move || relay.work(sink, &stop)
        })?;
        Ok(Worker {
            thread: Some(thread),
            stop,
            close: Box::new({
                let relay = self.clone();
                move || relay.close()
            }),
        })
    }

    /// The worker thread's loop.
    fn work<S: Sink<D, Asker = A>>(self, mut sink: S, stop: &AtomicBool) {
        let waker = park::thread_waker();
        let mut slot = None;
        loop {
            let now = Instant::now();
            let step = contain(|| {
                let pace = sink.pace(now);
                let drained = self.drain(&mut sink, pace.update);
                let sweep = self.sweep(now);
                if pace.tick.is_some_and(|at| at <= now) {
                    sink.tick(now);
                }
                if let Some(end) = drained.end {
                    sink.ended(end);
                }
                (pace, sweep, drained.end)
            });
            let (pace, sweep, end) = match step {
                Ok(step) => step,
                Err(message) => return self.fail(message),
            };
            if end.is_some() || stop.load(Ordering::Acquire) {
                return;
            }
            if self.ready_or_register(&mut slot, &waker, pace.update) {
                continue;
            }
            // Read again once registered: an ask that set an earlier deadline before this
            // look is seen here; one after it finds us registered and wakes us.
            let sweep = match *lock(&self.inner().sweep) {
                Some(Some(at)) => Some(sweep.map_or(at, |s| s.min(at))),
                _ => sweep,
            };
            let wake_at = [pace.tick, sweep].into_iter().flatten().min();
            match wake_at {
                Some(at) => park::park_until(at),
                None => std::thread::park(),
            }
            // Registered again, or withdrawn, at the top of the next turn.
            self.unregister(&mut slot);
        }
    }

    /// Sweeps the asks if due; when to sweep next.
    fn sweep(&self, now: Instant) -> Option<Instant> {
        let mut next = lock(&self.inner().sweep);
        match *next {
            // No thread keeps the deadlines, or no ask is outstanding.
            None | Some(None) => return None,
            Some(Some(at)) if at > now => return Some(at),
            Some(Some(_)) => {}
        }
        let sweep = self.inner().asks.sweep(now);
        let retry = sweep.unsent.then(|| now + RETRY);
        let at = sweep.next_deadline.into_iter().chain(retry).min();
        *next = Some(at);
        at
    }
}

impl<D: IDict, A: Asker> fmt::Debug for Relay<D, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Relay")
            .field("id", &self.id())
            .field("end", &self.end())
            .finish_non_exhaustive()
    }
}

/// The poller's side of a relay [`fed`](Relay::fed) by something other than a server:
/// hands it updates and answers as a server's poller would.
///
/// **The feeding thread.** Each call is what the relay's connection does on a poller: a
/// short lock or two, at most one wake, never a wait. Dropping it tells the worker side the
/// feed is gone ([`End::Detached`]).
pub struct Feed<D: IDict>(RelayConnection<D>);

impl<D: IDict> Feed<D> {
    /// Hands over the newest snapshot (latest wins).
    ///
    /// # Errors
    ///
    /// The relay's end as a `ConnectionError`, once its worker side has ended.
    pub fn update(&mut self, snapshot: &Snapshot<D>) -> Result<(), ConnectionError> {
        self.0.on_update(snapshot)
    }

    /// Hands over an answer.
    ///
    /// # Errors
    ///
    /// [`ConnectionError::Overloaded`] when more answers wait than places (the askers
    /// are told `Closed`); the relay's end as a `ConnectionError` once it has ended.
    pub fn answer(&mut self, response: Response<'_, D>) -> Result<(), ConnectionError> {
        self.0.on_response(response)
    }

    /// Tells the askers of `query` that no answer will come, and why.
    ///
    /// # Errors
    ///
    /// As [`answer`](Self::answer).
    pub fn abandon(
        &mut self,
        query: &Query<D::Key>,
        why: Abandoned,
    ) -> Result<(), ConnectionError> {
        self.0.on_abandoned(query, why)
    }

    /// Whether the worker side wants updates ([`Relay::subscribe`]).
    pub fn wants_updates(&self) -> bool {
        self.0.wants_updates()
    }
}

impl<D: IDict> fmt::Debug for Feed<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Feed").finish_non_exhaustive()
    }
}

/// A relay's thread, from [`Relay::spawn`]. Stopping or dropping it closes the relay and
/// waits for the thread.
pub struct Worker {
    thread: Option<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    close: Box<dyn Fn() + Send + Sync>,
}

impl Worker {
    /// Waits for the thread to stop by itself: when the relay ends (its connection
    /// dropped and what it left delivered, or it was closed).
    ///
    /// **Blocks.**
    pub fn join(mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }

    /// Closes the relay and waits for the thread.
    ///
    /// **Blocks** until the sink's call in progress returns.
    pub fn stop(self) {
        drop(self);
    }

    /// Whether the thread has stopped.
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().map_or(true, JoinHandle::is_finished)
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.stop.store(true, Ordering::Release);
            (self.close)();
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

impl fmt::Debug for Worker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Worker")
            .field("finished", &self.is_finished())
            .finish_non_exhaustive()
    }
}
