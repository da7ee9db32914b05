//! A ready-made connection: a closure ([`from_fn`]), called on the poller's thread.
//!
//! It passes on everything the poller tells a connection: updates, answers, and requests
//! the server [abandoned](Connection::on_abandoned) (it will never answer them), so that
//! whoever waits for an answer learns at once that none will come. For a connection read
//! on another thread, see the std runtime's
//! [`channel`](crate::runtime::channel::channel) (feature `std`).

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
