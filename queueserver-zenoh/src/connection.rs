//! [`ZenohConnection`]: the connection the poller owns, and the askers behind it.
//!
//! Every remote get becomes one ask per request it stands for (one per name it matches,
//! one for `@snapshot`), made through the crate's [`asks`](queueserver::asks) machinery on
//! this connection: concurrent gets of one key share one request in flight, and its answer
//! goes to every one of them. The asker is a clone of the `zenoh::Query`; its answer is
//! queued for the sender thread, which replies and drops the query.

use crate::outbox::{Job, Outbox, Prepared};
use crate::stats::Counters;
use crate::wire;
use queueserver::asks::{AskError, Asker, Asks, Responder};
use queueserver::{
    Abandoned, Connection, ConnectionError, IDict, Query, Reader, Response, Snapshot,
};
use serde::Serialize;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use zenoh::bytes::ZBytes;
use zenoh::key_expr::OwnedKeyExpr;
use zenoh::Wait;

/// One request of a remote get, waiting for its answer: the query to reply to, and the
/// concrete key to reply on.
pub(crate) struct GetAsker<D> {
    query: zenoh::query::Query,
    key: OwnedKeyExpr,
    outbox: Arc<Outbox<D>>,
}

impl<D> Asker for GetAsker<D> {
    type Reply = Prepared;

    /// Queues the reply for the sender thread (a short lock; never the network).
    fn answer(self, reply: &Prepared) {
        let job = match reply {
            Prepared::Payload { json, seq } => Job::Reply {
                query: self.query,
                key: self.key,
                json: json.clone(),
                seq: *seq,
            },
            Prepared::Error(message) => Job::Fail {
                query: self.query,
                message: message.clone(),
            },
        };
        self.outbox.push(job);
    }

    /// Queues an error reply for the sender thread.
    fn fail(self, error: AskError) {
        self.outbox.push(Job::Fail {
            query: self.query,
            message: crate::outbox::refusal(error),
        });
    }
}

impl<D> fmt::Debug for GetAsker<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GetAsker")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// The connection that publishes a server on Zenoh: it hands every delivered snapshot to
/// the sender thread and every answer to the remote gets waiting for it. Made by
/// [`Zenoh::attach`](crate::Zenoh::attach); the poller owns it.
///
/// **Poller.** `on_update` takes the newest snapshot from the server's
/// [`Reader`] (one reference count; a copy only if the reader holds another snapshot) and
/// offers it to the sender: a short lock, never the network. `on_response` prepares the
/// answer once (the value's or the snapshot's JSON) and queues one reply per waiting get.
///
/// `on_abandoned` (a request the server will never answer: a panic while reading its
/// value, or a runner whose poller stopped) ends the gets waiting for it with an error
/// reply at once, rather than at their deadline.
///
/// Once the [`Zenoh`](crate::Zenoh) handle is dropped, the next update fails with
/// [`ConnectionError::Closed`] and the server removes the connection; dropping the
/// connection ends the gets still waiting with an error reply.
pub struct ZenohConnection<D: IDict> {
    responder: Responder<D, GetAsker<D>>,
    outbox: Arc<Outbox<D>>,
    reader: Reader<D>,
}

impl<D: IDict> ZenohConnection<D> {
    pub(crate) fn new(
        responder: Responder<D, GetAsker<D>>,
        outbox: Arc<Outbox<D>>,
        reader: Reader<D>,
    ) -> Self {
        Self {
            responder,
            outbox,
            reader,
        }
    }
}

impl<D> Connection<D> for ZenohConnection<D>
where
    D: IDict,
    D::Value: Serialize,
{
    fn on_update(&mut self, snapshot: &Snapshot<D>) -> Result<(), ConnectionError> {
        let newest = self.reader.load_full();
        let newest = if newest.seq() == snapshot.seq() {
            newest
        } else {
            Arc::new(snapshot.clone())
        };
        if self.outbox.offer(newest) {
            Ok(())
        } else {
            Err(ConnectionError::Closed)
        }
    }

    fn on_response(&mut self, response: Response<'_, D>) -> Result<(), ConnectionError> {
        self.responder.respond(&response, prepare);
        Ok(())
    }

    /// Ends the gets waiting for `query` at once: each gets the error reply `abandoned: `
    /// and why, queued for the sender like any reply.
    fn on_abandoned(
        &mut self,
        query: &Query<D::Key>,
        why: Abandoned,
    ) -> Result<(), ConnectionError> {
        self.responder.abandon(query, why);
        Ok(())
    }
}

/// The reply of an answer, made once for all its askers.
fn prepare<D>(response: &Response<'_, D>) -> Prepared
where
    D: IDict,
    D::Value: Serialize,
{
    let (json, seq) = match response {
        Response::Value { value, seq, .. } => (serde_json::to_vec(value), *seq),
        Response::Snapshot(snapshot) => (wire::snapshot_json(snapshot), snapshot.seq()),
        Response::NotFound { key, seq } => {
            let mut name = String::new();
            let _ = D::write_name(key, &mut name);
            return Prepared::Error(format!(
                "unknown name: {name} is not in snapshot {seq} any more"
            ));
        }
    };
    match json {
        Ok(json) => Prepared::Payload {
            json: ZBytes::from(json),
            seq,
        },
        Err(error) => Prepared::Error(format!("the value does not serialize as JSON: {error}")),
    }
}

impl<D> From<ZenohConnection<D>> for Box<dyn Connection<D> + Send>
where
    D: IDict + Sync + 'static,
    D::Key: Sync,
    D::Value: Serialize,
{
    fn from(connection: ZenohConnection<D>) -> Self {
        Box::new(connection)
    }
}

impl<D: IDict> fmt::Debug for ZenohConnection<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ZenohConnection").finish_non_exhaustive()
    }
}

/// What the queryables' callbacks share.
pub(crate) struct Gets<D: IDict> {
    pub(crate) asks: Asks<D, GetAsker<D>>,
    pub(crate) reader: Reader<D>,
    pub(crate) outbox: Arc<Outbox<D>>,
    pub(crate) prefix: OwnedKeyExpr,
    pub(crate) timeout: Duration,
}

impl<D> Gets<D>
where
    D: IDict,
    D::Key: 'static,
{
    /// Turns a get into asks, or answers it at once: an error reply for a concrete key
    /// that names no value, or past the bound; no reply for wildcards matching nothing.
    ///
    /// **Zenoh's receive thread** (a queryable's callback). Never waits: a lock-free read of
    /// the newest snapshot's names, short locks of the asks table, and `put_request`, which
    /// never blocks. Error replies for refused gets are sent from here, as Zenoh's own
    /// queryables reply, and drop the query here; the sender thread sends everything else.
    pub(crate) fn on_query(&self, query: zenoh::query::Query) {
        let counters = &self.outbox.counters;
        Counters::add(&counters.gets, 1);
        let selection = {
            let snapshot = self.reader.load();
            crate::select::select(&self.prefix, query.key_expr(), snapshot.data())
        };
        if selection.is_empty() {
            if query.key_expr().is_wild() {
                Counters::add(&counters.gets_empty, 1);
            } else {
                Counters::add(&counters.gets_unknown, 1);
                let _ = query
                    .reply_err(crate::outbox::unknown(query.key_expr(), &self.prefix))
                    .encoding(wire::ERROR_ENCODING)
                    .wait();
            }
            return;
        }
        if !self.outbox.reserve(selection.len()) {
            Counters::add(&counters.gets_refused, 1);
            let _ = query
                .reply_err(crate::outbox::refusal(AskError::TooManyAsks))
                .encoding(wire::ERROR_ENCODING)
                .wait();
            return;
        }
        let deadline = Instant::now() + self.timeout;
        let snapshot = selection
            .snapshot
            .then(|| (Query::All, crate::select::snapshot_key(&self.prefix)));
        let keys = selection
            .keys
            .into_iter()
            .map(|(key, full)| (Query::Key(key), full));
        let mut refused = None;
        for (request, key) in keys.chain(snapshot) {
            let asker = GetAsker {
                query: query.clone(),
                key,
                outbox: Arc::clone(&self.outbox),
            };
            if let Err(refusal) = self.asks.ask(request, asker, deadline) {
                self.outbox.release(1);
                refused = Some(refusal.error);
            }
        }
        self.outbox.sweep_by(deadline);
        if let Some(error) = refused {
            Counters::add(&counters.gets_refused, 1);
            let _ = query
                .reply_err(crate::outbox::refusal(error))
                .encoding(wire::ERROR_ENCODING)
                .wait();
        }
    }
}
