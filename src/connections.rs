//! Ready-made connections: a closure ([`from_fn`]) and, with `std`, a bounded channel read
//! on another thread ([`channel`]).
//!
//! | connection | what the poller does with a delivery | memory |
//! |---|---|---|
//! | [`FnConnection`] | calls the closure, on the poller's thread | none of its own |
//! | [`ChannelConnection`] (std) | copies it into a bounded queue, a short lock; a slow reader loses its *oldest update*, counted, never an answer | `capacity` messages, allocated up front |
//!
//! Both pass on everything the poller tells a connection: updates, answers, and requests
//! the server [abandoned](Connection::on_abandoned) (it will never answer them), so that
//! whoever waits for an answer learns at once that none will come.

use crate::connection::{Abandoned, Connection, ConnectionError, Response};
use crate::idict::IDict;
use crate::request::Query;
use crate::snapshot::Snapshot;
use core::fmt;

/// What a connection is handed: a snapshot it subscribed to, an answer to one of its
/// requests, or word that a request will never be answered.
pub enum Delivery<'a, D: IDict> {
    /// A new snapshot (see [`Connection::on_update`]).
    Update(&'a Snapshot<D>),
    /// An answer (see [`Connection::on_response`]).
    Response(Response<'a, D>),
    /// The server gave up on the connection's requests for `query` and will not answer
    /// them (see [`Connection::on_abandoned`]).
    Abandoned {
        /// What the abandoned requests asked for.
        query: &'a Query<D::Key>,
        /// Why.
        why: Abandoned,
    },
}

impl<D> fmt::Debug for Delivery<'_, D>
where
    D: IDict + fmt::Debug,
    D::Key: fmt::Debug,
    D::Value: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Update(snapshot) => f.debug_tuple("Update").field(snapshot).finish(),
            Self::Response(response) => f.debug_tuple("Response").field(response).finish(),
            Self::Abandoned { query, why } => f
                .debug_struct("Abandoned")
                .field("query", query)
                .field("why", why)
                .finish(),
        }
    }
}

/// A connection made of a closure, which the poller calls with every [`Delivery`] on its
/// own thread. Made by [`from_fn`].
///
/// ```
/// use queueserver::connections::{from_fn, Delivery};
/// use queueserver::{QueueServer, Request, Response};
/// use std::collections::BTreeMap;
///
/// type State = BTreeMap<&'static str, f64>;
///
/// let mut seen = Vec::new();
/// let (mut publisher, mut server) = QueueServer::new(State::from([("x", 1.0)]));
/// let id = server
///     .add_connection(from_fn(|delivery: Delivery<'_, State>| {
///         match delivery {
///             Delivery::Update(snapshot) => seen.push(snapshot.seq()),
///             Delivery::Response(Response::Value { value, .. }) => assert_eq!(*value, 2.0),
///             Delivery::Response(_) | Delivery::Abandoned { .. } => {}
///         }
///         Ok(())
///     }))
///     .unwrap();
/// publisher.put_update(&State::from([("x", 2.0)]));
/// server.put_request(Request::key(id, "x")).unwrap();
/// server.poll();
/// drop(server);
/// assert_eq!(seen, [1]);
/// ```
pub struct FnConnection<F> {
    deliver: F,
    subscribed: bool,
}

/// A connection that calls `deliver` with every snapshot, answer and abandoned request, and
/// subscribes to updates (see [`FnConnection::requests_only`]). An `Err` from `deliver`
/// removes the connection.
pub fn from_fn<D, F>(deliver: F) -> FnConnection<F>
where
    D: IDict,
    F: FnMut(Delivery<'_, D>) -> Result<(), ConnectionError>,
{
    FnConnection {
        deliver,
        subscribed: true,
    }
}

impl<F> FnConnection<F> {
    /// The same connection, not subscribed to updates: it only receives answers.
    #[must_use]
    pub fn requests_only(self) -> Self {
        Self {
            subscribed: false,
            ..self
        }
    }
}

impl<D, F> Connection<D> for FnConnection<F>
where
    D: IDict,
    F: FnMut(Delivery<'_, D>) -> Result<(), ConnectionError>,
{
    fn on_update(&mut self, snapshot: &Snapshot<D>) -> Result<(), ConnectionError> {
        (self.deliver)(Delivery::Update(snapshot))
    }

    fn on_response(&mut self, response: Response<'_, D>) -> Result<(), ConnectionError> {
        (self.deliver)(Delivery::Response(response))
    }

    fn on_abandoned(
        &mut self,
        query: &Query<D::Key>,
        why: Abandoned,
    ) -> Result<(), ConnectionError> {
        (self.deliver)(Delivery::Abandoned { query, why })
    }

    fn wants_updates(&self) -> bool {
        self.subscribed
    }
}

impl<F> fmt::Debug for FnConnection<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnConnection")
            .field("subscribed", &self.subscribed)
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "std")]
pub use self::channel::{channel, ChannelConnection, ChannelReceiver, Message};

#[cfg(feature = "std")]
mod channel {
    use super::{Abandoned, Connection, ConnectionError, IDict, Query, Response, Snapshot};
    use core::fmt;
    use std::collections::VecDeque;
    use std::sync::mpsc::{RecvError, RecvTimeoutError, TryRecvError};
    use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
    use std::time::{Duration, Instant};

    /// What a [`ChannelConnection`] passes on: an owned copy of a delivery.
    #[derive(Clone, Debug, PartialEq)]
    pub enum Message<D: IDict> {
        /// A new snapshot the connection subscribed to.
        Update(Snapshot<D>),
        /// The answer for a key: its value, read from the snapshot numbered `seq`.
        Value {
            /// The key asked for.
            key: D::Key,
            /// Its value.
            value: D::Value,
            /// The number of the snapshot read.
            seq: u64,
        },
        /// The answer for a key the snapshot numbered `seq` does not have.
        NotFound {
            /// The key asked for.
            key: D::Key,
            /// The number of the snapshot searched.
            seq: u64,
        },
        /// The answer to a request for the whole snapshot.
        All(Snapshot<D>),
        /// The server gave up on the connection's requests for `query`: no answer to them
        /// will come ([`Connection::on_abandoned`]). Queued as an answer is.
        Abandoned {
            /// What the abandoned requests asked for.
            query: Query<D::Key>,
            /// Why.
            why: Abandoned,
        },
    }

    impl<D: IDict> Message<D>
    where
        D::Value: Clone,
    {
        fn answer(response: &Response<'_, D>) -> Self {
            match response {
                Response::Value { key, value, seq } => Self::Value {
                    key: (*key).clone(),
                    value: (*value).clone(),
                    seq: *seq,
                },
                Response::NotFound { key, seq } => Self::NotFound {
                    key: (*key).clone(),
                    seq: *seq,
                },
                Response::Snapshot(snapshot) => Self::All((*snapshot).clone()),
            }
        }
    }

    struct Queue<D: IDict> {
        messages: VecDeque<Message<D>>,
        capacity: usize,
        updates_dropped: u64,
        /// The connection is attached and working: neither dropped nor failed.
        connected: bool,
        /// The connection failed because an answer found the queue full of answers.
        overloaded: bool,
        receiving: bool,
    }

    struct Chan<D: IDict> {
        queue: Mutex<Queue<D>>,
        ready: Condvar,
    }

    impl<D: IDict> Chan<D> {
        fn queue(&self) -> MutexGuard<'_, Queue<D>> {
            // Pushes and pops leave the queue whole whatever panicked while it was held.
            self.queue.lock().unwrap_or_else(PoisonError::into_inner)
        }
    }

    /// A bounded channel of snapshots and answers, read with [`ChannelReceiver`] on another
    /// thread: the connection half. Made by [`channel`].
    ///
    /// **On the poller** each delivery is copied (`Snapshot::clone`, or the answer's key
    /// and value) before a short lock, then pushed. When the queue is full:
    ///
    /// - an update evicts the oldest update still queued (or, when the queue holds only
    ///   answers, is itself dropped); either way
    ///   [`updates_dropped`](ChannelReceiver::updates_dropped) counts it;
    /// - an answer evicts the oldest update; when the queue holds only answers, the
    ///   connection fails with [`ConnectionError::Overloaded`] (the poller removes it and
    ///   reports it, and counts that request orphaned) and the receiver is told it is
    ///   [`overloaded`](ChannelReceiver::overloaded): answers are never dropped silently.
    ///   A [`Message::Abandoned`] counts as an answer here.
    ///
    /// When the receiver is dropped, the next delivery fails with
    /// [`ConnectionError::Closed`] and the poller removes the connection. When the
    /// connection is dropped, the receiver gets what is queued, then `Disconnected`.
    pub struct ChannelConnection<D: IDict> {
        chan: Arc<Chan<D>>,
        subscribed: bool,
    }

    /// The reading half of a [`ChannelConnection`]: `Send`, for the thread that reads.
    pub struct ChannelReceiver<D: IDict> {
        chan: Arc<Chan<D>>,
    }

    /// A connection that passes every snapshot and answer to a [`ChannelReceiver`] through
    /// a queue of `capacity` messages (at least 1), allocated here.
    ///
    /// ```
    /// use queueserver::connections::{channel, Message};
    /// use queueserver::{QueueServer, Request};
    /// use std::collections::BTreeMap;
    ///
    /// type State = BTreeMap<&'static str, f64>;
    ///
    /// let (connection, receiver) = channel::<State>(2);
    /// let (mut publisher, mut server) = QueueServer::new(State::from([("x", 0.0)]));
    /// let id = server.add_connection(connection).unwrap();
    /// for step in 1..=3 {
    ///     publisher.put_update(&State::from([("x", f64::from(step))]));
    ///     server.poll(); // the reader does not read meanwhile
    /// }
    /// server.put_request(Request::key(id, "x")).unwrap();
    /// server.poll();
    ///
    /// // The oldest updates made room; the answer is there.
    /// assert!(matches!(receiver.try_recv(), Ok(Message::Update(s)) if s.seq() == 3));
    /// assert!(matches!(receiver.try_recv(), Ok(Message::Value { value, .. }) if value == 3.0));
    /// assert_eq!(receiver.updates_dropped(), 2);
    /// ```
    pub fn channel<D: IDict>(capacity: usize) -> (ChannelConnection<D>, ChannelReceiver<D>) {
        let capacity = capacity.max(1);
        let chan = Arc::new(Chan {
            queue: Mutex::new(Queue {
                messages: VecDeque::with_capacity(capacity),
                capacity,
                updates_dropped: 0,
                connected: true,
                overloaded: false,
                receiving: true,
            }),
            ready: Condvar::new(),
        });
        (
            ChannelConnection {
                chan: Arc::clone(&chan),
                subscribed: true,
            },
            ChannelReceiver { chan },
        )
    }

    impl<D: IDict> ChannelConnection<D> {
        /// The same connection, not subscribed to updates: it only passes answers on.
        #[must_use]
        pub fn requests_only(mut self) -> Self {
            self.subscribed = false;
            self
        }

        /// Queues `message`, evicting the oldest update if the queue is full.
        fn push(&self, message: Message<D>) -> Result<(), ConnectionError> {
            let is_update = matches!(message, Message::Update(_));
            let mut queue = self.chan.queue();
            if !queue.receiving {
                return Err(ConnectionError::Closed);
            }
            let mut evicted = None;
            if queue.messages.len() >= queue.capacity {
                let oldest = queue
                    .messages
                    .iter()
                    .position(|m| matches!(m, Message::Update(_)));
                match oldest {
                    Some(at) => evicted = queue.messages.remove(at),
                    None if is_update => {}
                    None => {
                        queue.overloaded = true;
                        queue.connected = false;
                        drop(queue);
                        self.chan.ready.notify_all();
                        return Err(ConnectionError::Overloaded);
                    }
                }
                queue.updates_dropped += 1;
                if evicted.is_none() {
                    // Full of answers: this update is the one dropped.
                    return Ok(());
                }
            }
            queue.messages.push_back(message);
            drop(queue);
            self.chan.ready.notify_one();
            // Freed outside the lock.
            drop(evicted);
            Ok(())
        }
    }

    impl<D: IDict> Connection<D> for ChannelConnection<D>
    where
        D::Value: Clone,
    {
        fn on_update(&mut self, snapshot: &Snapshot<D>) -> Result<(), ConnectionError> {
            self.push(Message::Update(snapshot.clone()))
        }

        fn on_response(&mut self, response: Response<'_, D>) -> Result<(), ConnectionError> {
            self.push(Message::answer(&response))
        }

        fn on_abandoned(
            &mut self,
            query: &Query<D::Key>,
            why: Abandoned,
        ) -> Result<(), ConnectionError> {
            self.push(Message::Abandoned {
                query: query.clone(),
                why,
            })
        }

        fn wants_updates(&self) -> bool {
            self.subscribed
        }
    }

    impl<D: IDict> Drop for ChannelConnection<D> {
        fn drop(&mut self) {
            self.chan.queue().connected = false;
            self.chan.ready.notify_all();
        }
    }

    impl<D: IDict> ChannelReceiver<D> {
        /// The oldest message, waiting for one.
        ///
        /// **Blocks** until a message comes, or the connection is gone and nothing is
        /// queued.
        ///
        /// # Errors
        ///
        /// [`RecvError`] once the connection is dropped or has failed and every message
        /// was received.
        pub fn recv(&self) -> Result<Message<D>, RecvError> {
            let mut queue = self.chan.queue();
            loop {
                if let Some(message) = queue.messages.pop_front() {
                    return Ok(message);
                }
                if !queue.connected {
                    return Err(RecvError);
                }
                queue = self
                    .chan
                    .ready
                    .wait(queue)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        }

        /// The oldest message, waiting at most `timeout` for one.
        ///
        /// # Errors
        ///
        /// [`RecvTimeoutError::Timeout`] when `timeout` passes first;
        /// [`RecvTimeoutError::Disconnected`] as [`recv`](Self::recv).
        pub fn recv_timeout(&self, timeout: Duration) -> Result<Message<D>, RecvTimeoutError> {
            let Some(deadline) = Instant::now().checked_add(timeout) else {
                // Too far away to tell from never.
                return self.recv().map_err(|_| RecvTimeoutError::Disconnected);
            };
            let mut queue = self.chan.queue();
            loop {
                if let Some(message) = queue.messages.pop_front() {
                    return Ok(message);
                }
                if !queue.connected {
                    return Err(RecvTimeoutError::Disconnected);
                }
                let now = Instant::now();
                if now >= deadline {
                    return Err(RecvTimeoutError::Timeout);
                }
                queue = self
                    .chan
                    .ready
                    .wait_timeout(queue, deadline - now)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
        }

        /// The oldest message, if one is queued. Never blocks (beyond a short lock).
        ///
        /// # Errors
        ///
        /// [`TryRecvError::Empty`] when nothing is queued; [`TryRecvError::Disconnected`]
        /// as [`recv`](Self::recv).
        pub fn try_recv(&self) -> Result<Message<D>, TryRecvError> {
            let mut queue = self.chan.queue();
            match queue.messages.pop_front() {
                Some(message) => Ok(message),
                None if queue.connected => Err(TryRecvError::Empty),
                None => Err(TryRecvError::Disconnected),
            }
        }

        /// How many messages are queued.
        pub fn len(&self) -> usize {
            self.chan.queue().messages.len()
        }

        /// Whether no message is queued.
        pub fn is_empty(&self) -> bool {
            self.len() == 0
        }

        /// How many updates were dropped because the queue was full.
        pub fn updates_dropped(&self) -> u64 {
            self.chan.queue().updates_dropped
        }

        /// Whether the connection failed because an answer found the queue full of
        /// answers (the answer was not delivered; the server counted it orphaned).
        pub fn overloaded(&self) -> bool {
            self.chan.queue().overloaded
        }
    }

    impl<D: IDict> Drop for ChannelReceiver<D> {
        fn drop(&mut self) {
            self.chan.queue().receiving = false;
        }
    }

    impl<D: IDict> fmt::Debug for ChannelConnection<D> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("ChannelConnection")
                .field("subscribed", &self.subscribed)
                .finish_non_exhaustive()
        }
    }

    impl<D: IDict> fmt::Debug for ChannelReceiver<D> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("ChannelReceiver")
                .field("queued", &self.len())
                .finish_non_exhaustive()
        }
    }
}
