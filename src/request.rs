//! The request path: [`Requester`], [`Request`], and the fixed-capacity queue behind them.
//!
//! A connection asks for one key, or for the whole snapshot, with
//! [`Requester::put_request`]. It never blocks and never allocates: the request goes into a
//! `heapless::mpmc::Queue` of capacity `Q`, or comes back in a [`RequestError`] saying why.
//! Each connection may have at most `share` requests queued (see
//! [`Config::max_pending_per_connection`](crate::Config::max_pending_per_connection)), so one
//! connection flooding the queue cannot take the room of the others. A connection attached to
//! a reused slot starts with an empty share: the requests its predecessor left queued count
//! in another counter (see [`QueueServer::add_connection`](crate::QueueServer::add_connection)
//! for the one exception).
//!
//! # Progress
//!
//! `put_request` takes a fixed number of steps of its own: comparisons, one atomic load
//! (the slot's tag) and at most six atomic read-modify-writes (the share, the slot's tag
//! again, the pending count, the accepted or refused count; the share or the pending count
//! taken back when it refuses; the pending flag when it accepts), plus one enqueue and,
//! when the flag was clear, the [`Notify`] hook. A request refused past the first check
//! counts against its connection's share for those few steps, so a request of the same
//! connection put at that very moment may be told `OverQuota` by one. (A request whose
//! connection is detached between the two checks of the tag counts, for those steps,
//! against the slot's counter of its generation's parity: two connections later, that can
//! be the share of the slot's newest connection.)
//! `heapless::mpmc::Queue` is not strictly lock-free (heapless issue 583): a requester
//! pre-empted in the middle of its enqueue can make others see the queue as full, and the
//! poller see it as empty, until it resumes. A requester told `Full` may retry; the
//! computation never touches this queue.

use crate::connection::ConnectionId;
use crate::notify::Notify;
use crate::signal::Signals;
use crate::sync::{Arc, AtomicU32, AtomicUsize, Ordering};
use alloc::boxed::Box;
use core::fmt;

/// What a request asks for.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Query<K> {
    /// One value.
    Key(K),
    /// The whole snapshot.
    All,
}

/// A direct request from a connection. Ordered by query, then connection: the order in
/// which the poller consolidates them.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Request<K> {
    /// What is asked for.
    pub query: Query<K>,
    /// Who asks, and receives the answer.
    pub from: ConnectionId,
}

impl<K> Request<K> {
    /// A request from `from` for the value of `key`.
    pub const fn key(from: ConnectionId, key: K) -> Self {
        Self {
            query: Query::Key(key),
            from,
        }
    }

    /// A request from `from` for the whole snapshot.
    pub const fn snapshot(from: ConnectionId) -> Self {
        Self {
            query: Query::All,
            from,
        }
    }
}

/// Why [`put_request`](Requester::put_request) refused a request; each variant hands it back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestError<K> {
    /// The queue is full. Retry after the poller has run.
    Full(Request<K>),
    /// The connection already has its share of requests queued. Retry after the poller
    /// has run.
    OverQuota(Request<K>),
    /// No connection with this id is attached to the server.
    UnknownConnection(Request<K>),
    /// The server has shut its request side down.
    Closed(Request<K>),
}

impl<K> RequestError<K> {
    /// The refused request.
    pub fn into_request(self) -> Request<K> {
        match self {
            Self::Full(r) | Self::OverQuota(r) | Self::UnknownConnection(r) | Self::Closed(r) => r,
        }
    }
}

impl<K> fmt::Display for RequestError<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Full(_) => "request queue is full",
            Self::OverQuota(_) => "connection has its share of requests queued",
            Self::UnknownConnection(_) => "no such connection",
            Self::Closed(_) => "request side is closed",
        })
    }
}

#[cfg(feature = "std")]
impl<K: fmt::Debug> std::error::Error for RequestError<K> {}

/// Tag of a slot that holds no connection: above every generation.
pub(crate) const FREE: u32 = u32::MAX;

/// Per-slot state that requesters read: which connection holds the slot, and how many
/// requests its connections have queued.
pub(crate) struct Slot {
    /// The generation of the connection attached, or [`FREE`].
    pub(crate) tag: AtomicU32,
    /// Requests queued (or being put) under the slot's generations, by parity: a connection
    /// counts in one, its predecessor in the other, so requests the predecessor left queued
    /// (or is still putting) never count against the newcomer's share.
    pub(crate) queued: [AtomicU32; 2],
}

impl Slot {
    /// The share counter of the connection of generation `generation`.
    pub(crate) fn queued(&self, generation: u32) -> &AtomicU32 {
        &self.queued[(generation & 1) as usize]
    }
}

/// The shared half of the request path.
pub(crate) struct Requests<K, const Q: usize, const MAXC: usize> {
    /// In a box of its own, copied there from [`Self::EMPTY`].
    pub(crate) queue: Box<heapless::mpmc::Queue<Request<K>, Q>>,
    /// `MAXC` slots, on the heap: built one by one, never as one large temporary.
    pub(crate) slots: Box<[Slot]>,
    /// The identity every id this server issues carries.
    pub(crate) server: u32,
    pub(crate) share: u32,
    pub(crate) accepted: AtomicUsize,
    pub(crate) rejected: AtomicUsize,
}

/// The largest request queue a server may have, in bytes: 256 KiB.
///
/// The queue (a `heapless::mpmc::Queue` of `Q` requests) is built as a constant and copied
/// into its allocation when the server is built: that copy passes through the stack once,
/// in debug and release builds alike, and the constant takes the queue's size in the
/// program's read-only data. The bound keeps that copy far below the stack of an ordinary
/// thread (2 MiB for a spawned thread, 1 MiB for a Windows main thread); a server whose
/// queue would be larger does not compile. [`queue_bytes`] gives the size; on a 64-bit
/// target the largest `Q` is 8192 for one-byte keys and 4096 for 8-byte keys or
/// `&'static str`.
///
/// ```compile_fail,E0080
/// # use queueserver::{Builder, Connection, ConnectionError, IDict, Response, Snapshot};
/// #[derive(Clone)]
/// struct Wide;
/// impl IDict for Wide {
///     type Key = u64;
///     type Value = u64;
///     fn get(&self, key: &u64) -> Option<u64> { Some(*key) }
/// }
/// # struct Sink;
/// # impl Connection<Wide> for Sink {
/// #     fn on_update(&mut self, _: &Snapshot<Wide>) -> Result<(), ConnectionError> { Ok(()) }
/// #     fn on_response(&mut self, _: Response<'_, Wide>) -> Result<(), ConnectionError> { Ok(()) }
/// # }
/// // 16384 requests of 8-byte keys: 640 KiB of queue. Refused at compile time.
/// let built = Builder::new(Wide).capacity::<16384, 8>().build::<Sink>();
/// ```
///
/// The largest queue for those keys builds, even on a thread with a small stack:
///
/// ```
/// # use queueserver::{Builder, Connection, ConnectionError, IDict, Response, Snapshot};
/// # use queueserver::request::{queue_bytes, MAX_QUEUE_BYTES};
/// # #[derive(Clone)]
/// # struct Wide;
/// # impl IDict for Wide {
/// #     type Key = u64;
/// #     type Value = u64;
/// #     fn get(&self, key: &u64) -> Option<u64> { Some(*key) }
/// # }
/// # struct Sink;
/// # impl Connection<Wide> for Sink {
/// #     fn on_update(&mut self, _: &Snapshot<Wide>) -> Result<(), ConnectionError> { Ok(()) }
/// #     fn on_response(&mut self, _: Response<'_, Wide>) -> Result<(), ConnectionError> { Ok(()) }
/// # }
/// assert!(queue_bytes::<u64, 4096>() <= MAX_QUEUE_BYTES);
/// assert!(queue_bytes::<u64, 8192>() > MAX_QUEUE_BYTES);
/// std::thread::Builder::new()
///     .stack_size(256 * 1024)
///     .spawn(|| Builder::new(Wide).capacity::<4096, 8>().build::<Sink>().is_ok())
///     .unwrap()
///     .join()
///     .unwrap();
/// ```
pub const MAX_QUEUE_BYTES: usize = 256 * 1024;

/// The size in bytes of the request queue of a server with keys `K` and capacity `Q`: at
/// most [`MAX_QUEUE_BYTES`].
pub const fn queue_bytes<K, const Q: usize>() -> usize {
    core::mem::size_of::<heapless::mpmc::Queue<Request<K>, Q>>()
}

impl<K, const Q: usize, const MAXC: usize> Requests<K, Q, MAXC> {
    /// The empty queue, evaluated at compile time: copied into its box, it passes through
    /// the stack once (`heapless::mpmc::Queue::new` would build it there and move it
    /// several times).
    // The queue is deprecated upstream for not being strictly lock-free; the module docs
    // state what that means here. The constant has atomics inside, which is the point: it
    // is only ever used by value, as the initial state of each server's queue.
    #[allow(deprecated, clippy::declare_interior_mutable_const)]
    const EMPTY: heapless::mpmc::Queue<Request<K>, Q> = heapless::mpmc::Queue::new();

    pub(crate) fn new(share: u32, server: u32) -> Self {
        const {
            assert!(
                Q >= 2 && Q.is_power_of_two(),
                "Q must be a power of two, at least 2"
            );
            assert!(
                MAXC >= 1 && MAXC < u16::MAX as usize,
                "MAXC must be in 1..65535"
            );
            assert!(
                queue_bytes::<K, Q>() <= MAX_QUEUE_BYTES,
                "the request queue would be larger than MAX_QUEUE_BYTES: make Q smaller"
            );
        }
        Self {
            queue: Box::new(Self::EMPTY),
            slots: (0..MAXC)
                .map(|_| Slot {
                    tag: AtomicU32::new(FREE),
                    queued: [AtomicU32::new(0), AtomicU32::new(0)],
                })
                .collect(),
            server,
            share,
            accepted: AtomicUsize::new(0),
            rejected: AtomicUsize::new(0),
        }
    }

    /// The slot `id` names, if `id` could have been issued by this server: plain
    /// comparisons, no atomic. (No connection has the generation [`FREE`], which a free
    /// slot's tag holds.)
    fn slot(&self, id: ConnectionId) -> Option<&Slot> {
        if id.server() != self.server || id.generation() == FREE {
            return None;
        }
        self.slots.get(usize::from(id.index()))
    }

    pub(crate) fn put<N: Notify>(
        &self,
        signals: &Signals<N>,
        request: Request<K>,
    ) -> Result<(), RequestError<K>> {
        let result = self.try_put(signals, request);
        let counter = if result.is_ok() {
            &self.accepted
        } else {
            &self.rejected
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if result.is_ok() {
            signals.raise_request();
        }
        result
    }

    fn try_put<N: Notify>(
        &self,
        signals: &Signals<N>,
        request: Request<K>,
    ) -> Result<(), RequestError<K>> {
        let id = request.from;
        // A stale or foreign id is refused before it touches any count. Relaxed: a filter
        // only; the read-modify-write below decides.
        let Some(slot) = self
            .slot(id)
            .filter(|slot| slot.tag.load(Ordering::Relaxed) == id.generation())
        else {
            return Err(RequestError::UnknownConnection(request));
        };
        // Count the request against its connection's share before the deciding check that
        // the connection is attached, so that the poller, once it has detached a
        // connection, sees every request that got past that check (below).
        // Relaxed: the tag's read-modify-write below orders it.
        let queued = slot.queued(id.generation());
        let before = queued.fetch_add(1, Ordering::Relaxed);
        // A read-modify-write, not a load: it reads the newest tag in the tag's modification
        // order. If it reads our generation, it comes before the poller's detaching swap,
        // whose Acquire half then synchronises with this Release half, so the poller sees
        // our count when it picks the share counter of the slot's next connection. If it
        // comes after the swap, it reads another tag and we take our count back. (A load
        // could read our generation after the swap, and the count could be missed.)
        // Acquire: pairs with the poller's Release store of the tag when it attaches the
        // connection.
        if slot.tag.fetch_add(0, Ordering::AcqRel) != id.generation() {
            queued.fetch_sub(1, Ordering::Relaxed);
            return Err(RequestError::UnknownConnection(request));
        }
        // Counted in before it is queued: `wants_update` turns true before the poller can
        // see the request, and a concurrent close either happens before (we see it) or
        // after (the poller sees our count and waits for the request).
        let Ok(()) = signals.enter_request() else {
            queued.fetch_sub(1, Ordering::Relaxed);
            return Err(RequestError::Closed(request));
        };
        // Relaxed: the quota is a counter only; the queue orders the request itself.
        if before >= self.share {
            queued.fetch_sub(1, Ordering::Relaxed);
            signals.leave_requests(1);
            return Err(RequestError::OverQuota(request));
        }
        match self.queue.enqueue(request) {
            Ok(()) => Ok(()),
            Err(request) => {
                queued.fetch_sub(1, Ordering::Relaxed);
                signals.leave_requests(1);
                Err(RequestError::Full(request))
            }
        }
    }

    /// Takes one request off the queue and gives its connection's share back.
    pub(crate) fn take(&self) -> Option<Request<K>> {
        let request = self.queue.dequeue()?;
        let id = request.from;
        // Every queued request passed `slot`, so its slot exists.
        if let Some(slot) = self.slot(id) {
            slot.queued(id.generation()).fetch_sub(1, Ordering::Relaxed);
        }
        Some(request)
    }
}

/// The handle a connection uses to put requests: cheap to clone, `Send + Sync`.
///
/// Obtained from [`QueueServer::requester`](crate::QueueServer::requester).
pub struct Requester<K, N, const Q: usize, const MAXC: usize> {
    pub(crate) requests: Arc<Requests<K, Q, MAXC>>,
    pub(crate) signals: Arc<Signals<N>>,
}

impl<K, N, const Q: usize, const MAXC: usize> Clone for Requester<K, N, Q, MAXC> {
    fn clone(&self) -> Self {
        Self {
            requests: Arc::clone(&self.requests),
            signals: Arc::clone(&self.signals),
        }
    }
}

impl<K, N: Notify, const Q: usize, const MAXC: usize> Requester<K, N, Q, MAXC> {
    /// Queues a request for the poller (`mmf.async`'s `put_request`).
    ///
    /// **Any thread or interrupt.** Never blocks, never allocates; a bounded number of
    /// atomic steps plus one `heapless::mpmc` enqueue (see the [module docs](self) on its
    /// progress guarantee). On success the [`Notify`] hook is told
    /// ([`Event::Request`](crate::Event::Request)) if no request was pending.
    ///
    /// # Errors
    ///
    /// Hands the request back when the queue is full, the connection is over its share,
    /// the connection is unknown, or the request side is closed.
    pub fn put_request(&self, request: Request<K>) -> Result<(), RequestError<K>> {
        self.requests.put(&self.signals, request)
    }

    /// Whether the server has closed its request side: [`close`](crate::QueueServer::close)
    /// was called, or the server was dropped (a [`Runner`](crate::Runner) whose poller
    /// stopped drops or closes it). Once true, always true.
    pub fn is_closed(&self) -> bool {
        self.signals.is_closed()
    }
}

impl<K, N, const Q: usize, const MAXC: usize> fmt::Debug for Requester<K, N, Q, MAXC> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Requester")
            .field("capacity", &Q)
            .field("share", &self.requests.share)
            .finish_non_exhaustive()
    }
}
