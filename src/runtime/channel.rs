//! [`channel`]: a connection read on another thread, as a channel. It is a
//! [relay](mod@super::relay) without askers: the reading thread is its worker side,
//! and takes what the poller handed over, message by message.
//!
//! - **Updates are latest-wins**: a reader slower than the poller gets the newest snapshot
//!   when it reads, never a backlog of stale ones; the snapshots it missed are counted
//!   ([`ChannelReceiver::updates_dropped`]).
//! - **Answers are never dropped**: each goes to a queue of `capacity` places, allocated up
//!   front, and is read before the update that waits, in the order the poller gave them.
//!   An answer that finds the queue full fails the connection with
//!   [`ConnectionError::Overloaded`](crate::ConnectionError::Overloaded) (the poller
//!   removes it and counts the request orphaned) and the reader learns it
//!   ([`ChannelReceiver::overloaded`]): nothing is lost silently.
//! - **On the poller** each delivery costs one short lock (and a copy of the answer's key
//!   and value, or of an update when the channel has no reader to share it with).
//!
//! ```
//! use queueserver::runtime::channel::{channel, Message};
//! use queueserver::{QueueServer, Request};
//! use std::collections::BTreeMap;
//!
//! type State = BTreeMap<&'static str, f64>;
//!
//! let (connection, receiver) = channel::<State>(2);
//! let (mut publisher, mut server) = QueueServer::new(State::from([("x", 0.0)]));
//! let id = server.add_connection(connection).unwrap();
//! for step in 1..=3 {
//!     publisher.put_update(&State::from([("x", f64::from(step))]));
//!     server.poll(); // the reader does not read meanwhile
//! }
//! server.put_request(Request::key(id, "x")).unwrap();
//! server.poll();
//!
//! // The answer first, then the newest update; the two older ones were dropped, counted.
//! assert!(matches!(receiver.try_recv(), Ok(Message::Value { value, .. }) if value == 3.0));
//! assert!(matches!(receiver.try_recv(), Ok(Message::Update(s)) if s.seq() == 3));
//! assert_eq!(receiver.updates_dropped(), 2);
//! ```

use super::asks::{AskError, Asker};
use super::relay::{self, Answered, Delivery, Relay, Update};
use crate::connection::Abandoned;
use crate::idict::IDict;
use crate::park;
use crate::request::Query;
use crate::snapshot::Snapshot;
use core::fmt;
use std::sync::mpsc::{RecvError, RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The connection half of a [`channel`]: a [`RelayConnection`](relay::RelayConnection).
pub type ChannelConnection<D> = relay::RelayConnection<D>;

/// What a [`ChannelReceiver`] receives.
#[derive(Clone, Debug, PartialEq)]
pub enum Message<D: IDict> {
    /// The newest snapshot, shared with the poller's [`Reader`](crate::Reader) when the
    /// channel has one.
    Update(Arc<Snapshot<D>>),
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
    All(Arc<Snapshot<D>>),
    /// The server gave up on the connection's requests for `query`: no answer to them will
    /// come ([`Connection::on_abandoned`](crate::Connection::on_abandoned)). Queued as an
    /// answer is.
    Abandoned {
        /// What the abandoned requests asked for.
        query: Query<D::Key>,
        /// Why.
        why: Abandoned,
    },
}

impl<D: IDict> Message<D> {
    fn of(delivery: Delivery<D, Never>) -> Self {
        match delivery {
            Delivery::Answer(Answered::Value { key, value, seq }, _) => {
                Self::Value { key, value, seq }
            }
            Delivery::Answer(Answered::NotFound { key, seq }, _) => Self::NotFound { key, seq },
            Delivery::Answer(Answered::Snapshot(snapshot), _) => Self::All(snapshot),
            Delivery::Abandoned(query, why, _) => Self::Abandoned { query, why },
        }
    }
}

/// A channel has no askers.
enum Never {}

impl Asker for Never {
    type Reply = ();

    fn answer(self, (): &()) {
        match self {}
    }

    fn fail(self, _: AskError) {
        match self {}
    }
}

/// The reading half of a [`channel`]: `Send`, for the thread that reads. Dropping it closes
/// the channel: the connection fails with
/// [`ConnectionError::Closed`](crate::ConnectionError::Closed) at the poller's next call,
/// which removes it.
pub struct ChannelReceiver<D: IDict> {
    relay: Relay<D, Never>,
}

/// A connection that passes every snapshot and answer to a [`ChannelReceiver`]: updates
/// latest-wins, and a queue of `capacity` answers (at least 1), allocated here. The
/// connection subscribes to updates; [`requests_only`] makes one that does not.
pub fn channel<D>(capacity: usize) -> (ChannelConnection<D>, ChannelReceiver<D>)
where
    D: IDict + Send + Sync + 'static,
    D::Value: Clone + Send,
{
    let (connection, relay) = Relay::raw(capacity, true);
    (connection, ChannelReceiver { relay })
}

/// A [`channel`] whose connection does not subscribe to updates: it only passes answers
/// on.
pub fn requests_only<D>(capacity: usize) -> (ChannelConnection<D>, ChannelReceiver<D>)
where
    D: IDict + Send + Sync + 'static,
    D::Value: Clone + Send,
{
    let (connection, relay) = Relay::raw(capacity, false);
    (connection, ChannelReceiver { relay })
}

impl<D: IDict> ChannelReceiver<D> {
    /// The next message, if one is there: an answer first, else the newest update.
    fn take(&self) -> Option<Message<D>> {
        if let Some(delivery) = self.relay.pop_raw() {
            return Some(Message::of(delivery));
        }
        self.relay
            .take_update()
            .map(|update: Update<D>| Message::Update(Arc::clone(update.snapshot())))
    }

    /// The next message, waiting for one.
    ///
    /// **Blocks** until a message comes, or the connection is gone and nothing is left.
    ///
    /// # Errors
    ///
    /// [`RecvError`] once the connection is dropped or has failed and every message was
    /// received.
    pub fn recv(&self) -> Result<Message<D>, RecvError> {
        self.recv_until(None).map_err(|_| RecvError)
    }

    /// The next message, waiting at most `timeout` for one.
    ///
    /// **Blocks** for at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`RecvTimeoutError::Timeout`] when `timeout` passes first;
    /// [`RecvTimeoutError::Disconnected`] as [`recv`](Self::recv).
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Message<D>, RecvTimeoutError> {
        self.recv_until(Instant::now().checked_add(timeout))
    }

    fn recv_until(&self, deadline: Option<Instant>) -> Result<Message<D>, RecvTimeoutError> {
        let waker = park::thread_waker();
        let mut slot = None;
        loop {
            if let Some(message) = self.take() {
                self.relay.unregister(&mut slot);
                return Ok(message);
            }
            if self.relay.end().is_some() {
                self.relay.unregister(&mut slot);
                return Err(RecvTimeoutError::Disconnected);
            }
            if deadline.is_some_and(|at| Instant::now() >= at) {
                self.relay.unregister(&mut slot);
                return Err(RecvTimeoutError::Timeout);
            }
            if self.relay.ready_or_register(&mut slot, &waker, true) {
                continue;
            }
            match deadline {
                Some(at) => park::park_until(at),
                None => std::thread::park(),
            }
        }
    }

    /// The next message, if one is there. Never blocks (beyond a short lock).
    ///
    /// # Errors
    ///
    /// [`TryRecvError::Empty`] when nothing is there; [`TryRecvError::Disconnected`] as
    /// [`recv`](Self::recv).
    pub fn try_recv(&self) -> Result<Message<D>, TryRecvError> {
        match self.take() {
            Some(message) => Ok(message),
            None if self.relay.end().is_some() => Err(TryRecvError::Disconnected),
            None => Err(TryRecvError::Empty),
        }
    }

    /// How many messages wait: the answers, and the update if one waits.
    pub fn len(&self) -> usize {
        self.relay.waiting()
    }

    /// Whether no message waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many updates were dropped: replaced by a newer one before they were read.
    pub fn updates_dropped(&self) -> u64 {
        self.relay.counts().superseded
    }

    /// Whether the connection failed because an answer found the queue full (the answer
    /// was not delivered; the server counted it orphaned).
    pub fn overloaded(&self) -> bool {
        self.relay.counts().refused > 0
    }
}

impl<D: IDict> fmt::Debug for ChannelReceiver<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChannelReceiver")
            .field("queued", &self.len())
            .finish_non_exhaustive()
    }
}
