//! Connections: the parties that receive snapshots and answers.
//!
//! A connection (a GUI, a logger, a network client) implements [`Connection`]. The poller
//! owns the connections and calls them on its own thread only: never the computation. A
//! connection that returns an error, or panics (with `std`: see [`fault`](crate::fault)), is
//! removed at once, counted in
//! [`Stats::connections_failed`](crate::Stats::connections_failed), logged, and handed back
//! through [`QueueServer::take_failed`](crate::QueueServer::take_failed). The other
//! connections and every accepted request carry on.
//!
//! Each connection has a [`ConnectionId`]: the identity of the server that issued it, a
//! slot index (the number of slots is the server's `MAXC`) and the slot's generation. An id
//! names one connection of one server, once: a removed connection's id is never valid again,
//! and an id issued by one server is refused by every other.

use crate::fault::PanicMessage;
use crate::idict::IDict;
use crate::request::Query;
use crate::snapshot::Snapshot;
use core::fmt;

/// Names one connection of one server: the server's identity, a slot index and that slot's
/// generation.
///
/// # Never reused
///
/// A server refuses an id whose server identity is not its own
/// ([`RequestError::UnknownConnection`](crate::RequestError::UnknownConnection)), and
/// gives each connection in a slot a generation above that of every connection the slot held
/// before. The bounds that remain:
///
/// - a slot has generations `0..u32::MAX` (the poller may skip one to give a newcomer an
///   empty share; see [`QueueServer::add_connection`](crate::QueueServer::add_connection)),
///   so it serves at least 2^31 connections, and then it is retired: its ids stay invalid and
///   the server has one slot fewer;
/// - server identities come from a process-wide 32-bit counter: an id can only be mistaken
///   by a server built 2^32 server constructions after its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ConnectionId {
    server: u32,
    index: u16,
    generation: u32,
}

impl ConnectionId {
    /// An id from its parts. Ids come from
    /// [`QueueServer::add_connection`](crate::QueueServer::add_connection); building one by
    /// hand is for tests and for decoding an id received over a wire.
    pub const fn from_parts(server: u32, index: u16, generation: u32) -> Self {
        Self {
            server,
            index,
            generation,
        }
    }

    /// The identity of the server that issued it ([`QueueServer::id`](crate::QueueServer::id)).
    pub const fn server(self) -> u32 {
        self.server
    }

    /// The slot index, below the server's `MAXC`.
    pub const fn index(self) -> u16 {
        self.index
    }

    /// The slot's generation: above that of every connection the slot held before.
    pub const fn generation(self) -> u32 {
        self.generation
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}.{}@{}", self.index, self.generation, self.server)
    }
}

/// Why a connection failed. The poller removes a connection that returns one, or panics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ConnectionError {
    /// The other side has gone away.
    Closed,
    /// The connection cannot keep up (its outgoing buffer is full).
    Overloaded,
    /// Any other failure, described.
    Failed(&'static str),
    /// One of its methods panicked; the message, as far as it is known. Set by the poller
    /// (a connection may return it too).
    Panicked(PanicMessage),
}

impl fmt::Display for ConnectionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Closed => f.write_str("connection closed"),
            Self::Overloaded => f.write_str("connection overloaded"),
            Self::Failed(why) => write!(f, "connection failed: {why}"),
            Self::Panicked(message) => write!(f, "connection panicked: {message}"),
        }
    }
}

/// Why a request the server accepted will never be answered
/// ([`Connection::on_abandoned`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Abandoned {
    /// A panic unwound through the poller while the request's value was being read (a
    /// panicking [`IDict::get`], or key comparison): reading it again would panic again.
    Panicked,
    /// The server stopped serving requests: its owner gave up on them
    /// ([`QueueServer::abandon_requests`](crate::QueueServer::abandon_requests)), as a
    /// [`Runner`](crate::Runner) does when its poller panics.
    Stopped,
}

impl fmt::Display for Abandoned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Panicked => "reading the value panicked",
            Self::Stopped => "the server stopped serving requests",
        })
    }
}

#[cfg(feature = "std")]
impl std::error::Error for ConnectionError {}

/// An answer to a request, lent to the connection for the duration of the call.
#[derive(Debug)]
pub enum Response<'a, D: IDict> {
    /// The value of a key, read from the snapshot numbered `seq`.
    Value {
        /// The key that was asked for.
        key: &'a D::Key,
        /// Its value.
        value: &'a D::Value,
        /// The sequence number of the snapshot it was read from.
        seq: u64,
    },
    /// The key does not exist in the snapshot numbered `seq`.
    NotFound {
        /// The key that was asked for.
        key: &'a D::Key,
        /// The sequence number of the snapshot that was searched.
        seq: u64,
    },
    /// The whole snapshot, for a [`Query::All`] request.
    Snapshot(&'a Snapshot<D>),
}

/// The receiving side of a connection. Every method runs on the poller's thread.
///
/// For connections of different types in one server, use `Box<dyn Connection<D> + Send>`.
///
/// A method that returns `Err` or panics (with `std`; see [`fault`](crate::fault)) removes
/// the connection; with a panic, the connection handed back by
/// [`take_failed`](crate::QueueServer::take_failed) is in whatever state the panic left
/// it.
pub trait Connection<D: IDict> {
    /// Receives a new snapshot; called only while [`wants_updates`](Self::wants_updates)
    /// is true. An `Err` removes the connection.
    fn on_update(&mut self, snapshot: &Snapshot<D>) -> Result<(), ConnectionError>;

    /// Receives the answer to one of this connection's requests. An `Err` removes the
    /// connection.
    fn on_response(&mut self, response: Response<'_, D>) -> Result<(), ConnectionError>;

    /// Whether this connection subscribes to updates. Read by the poller on every
    /// `process_updates`; by default, `true`.
    fn wants_updates(&self) -> bool {
        true
    }

    /// Learns that a request of this connection for `query`, accepted by the server, will
    /// never be answered, and why: once per query for all its requests abandoned together.
    /// Called on the poller, where the server is usable, never while a panic unwinds. By
    /// default, nothing. A connection that makes someone wait for answers (a client) should
    /// wake them here. An `Err` removes the connection.
    ///
    /// Requests are abandoned only after a panic, or when the server's owner gives up on
    /// them; a connection removed before its requests are answered is not called (its
    /// requests are counted orphaned), and a dropped server drops its connections without
    /// calling them.
    fn on_abandoned(
        &mut self,
        query: &Query<D::Key>,
        why: Abandoned,
    ) -> Result<(), ConnectionError> {
        let _ = (query, why);
        Ok(())
    }
}

impl<D: IDict, T: Connection<D> + ?Sized> Connection<D> for alloc::boxed::Box<T> {
    fn on_update(&mut self, snapshot: &Snapshot<D>) -> Result<(), ConnectionError> {
        (**self).on_update(snapshot)
    }

    fn on_response(&mut self, response: Response<'_, D>) -> Result<(), ConnectionError> {
        (**self).on_response(response)
    }

    fn wants_updates(&self) -> bool {
        (**self).wants_updates()
    }

    fn on_abandoned(
        &mut self,
        query: &Query<D::Key>,
        why: Abandoned,
    ) -> Result<(), ConnectionError> {
        (**self).on_abandoned(query, why)
    }
}
