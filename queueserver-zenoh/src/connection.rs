//! [`ZenohConnection`]: the connection the poller owns, and the remote gets behind it.
//!
//! The connection is a [relay](queueserver::runtime::relay)'s: the poller hands it the
//! snapshots and answers, and the relay's worker thread does the rest ([`crate::sink`]).
//! Every remote get becomes one ask per request it stands for (one per name it matches,
//! one for `@snapshot`), made on the relay all at once or not at all: concurrent gets of
//! one key share one request in flight, and its answer goes to every one of them. The
//! asker is a clone of the `zenoh::Query`, which the worker replies to and drops.

use crate::sink::{GetReply, Prepared};
use crate::stats::Counters;
use crate::wire::{self, ENCODING, ERROR_ENCODING};
use queueserver::runtime::asks::{AskError, Asker};
use queueserver::runtime::relay::Relay;
use queueserver::{IDict, Query, Reader};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use zenoh::key_expr::{keyexpr, OwnedKeyExpr};
use zenoh::Wait;

/// The connection that publishes a server on Zenoh: a
/// [`RelayConnection`](queueserver::RelayConnection), made by
/// [`Zenoh::attach`](crate::Zenoh::attach); the poller owns it.
///
/// **Poller.** O(1) whatever the number of subscribers and getters, never the network:
/// `on_update` (called only while some subscriber hears the values or the snapshot) shares
/// the snapshot the server's [`Reader`] already holds (one reference count) into the
/// relay's latest-wins slot; `on_response` takes the gets waiting for the
/// answer out of the asks table and queues the answer, a clone of the key and the value
/// (the `Reader`'s `Arc` for a snapshot), with them; each wakes the worker at most once.
/// The worker serializes and sends.
///
/// `on_abandoned` (a request the server will never answer: a panic while reading its
/// value, or a runner whose poller stopped) ends the gets waiting for it with an error
/// reply at once, rather than at their deadline.
///
/// Once the [`Zenoh`](crate::Zenoh) handle is closed or dropped, the connection fails with
/// [`ConnectionError::Closed`](queueserver::ConnectionError::Closed) at the poller's next
/// call and the server removes it; dropping the connection ends the gets still waiting
/// with an error reply.
pub type ZenohConnection<D> = queueserver::RelayConnection<D>;

/// One request of a remote get, waiting for its answer: the query to reply to, and the
/// concrete key to reply on. The asker of the relays this crate publishes: a relay made
/// elsewhere for [`Zenoh::publish`](crate::Zenoh::publish) is a
/// `Relay<D, GetAsker>`. Only this crate makes them.
pub struct GetAsker {
    query: zenoh::query::Query,
    key: OwnedKeyExpr,
    counters: Arc<Counters>,
}

impl Asker for GetAsker {
    type Reply = GetReply;

    /// Replies on the asker's key and drops its clone of the query (the last clone's drop
    /// sends the final reply).
    ///
    /// **The relay's worker.** Never waits for the getter: a reply to a congested or
    /// vanished peer is queued or dropped by Zenoh.
    fn answer(self, reply: &GetReply) {
        let counters = &self.counters;
        let sent = match &reply.0 {
            Prepared::Payload { json, seq } => {
                // Counted before it goes: a getter that has its reply finds it counted.
                Counters::add(&counters.replies, 1);
                self.query
                    .reply(self.key, json.clone())
                    .encoding(ENCODING)
                    .attachment(seq.clone())
                    .wait()
            }
            Prepared::Error(message) => {
                Counters::add(&counters.error_replies, 1);
                self.query
                    .reply_err(message.clone())
                    .encoding(ERROR_ENCODING)
                    .wait()
            }
        };
        if sent.is_err() {
            Counters::add(&counters.replies_failed, 1);
        }
    }

    /// An error reply that says why.
    ///
    /// **Whichever thread ends the ask**: the relay's worker (a deadline, an abandoned
    /// request), the thread that closes the [`Zenoh`](crate::Zenoh) handle, or a
    /// queryable's callback (the server closing its request side while the get is asked).
    fn fail(self, error: AskError) {
        Counters::add(&self.counters.error_replies, 1);
        let sent = self
            .query
            .reply_err(refusal(error))
            .encoding(ERROR_ENCODING)
            .wait();
        if sent.is_err() {
            Counters::add(&self.counters.replies_failed, 1);
        }
    }
}

impl fmt::Debug for GetAsker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GetAsker")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// What the queryables' callbacks share.
pub(crate) struct Gets<D: IDict> {
    pub(crate) relay: Relay<D, GetAsker>,
    pub(crate) reader: Reader<D>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) prefix: OwnedKeyExpr,
    pub(crate) timeout: Duration,
    /// Whether the source answers now ([`Zenoh::set_live`](crate::Zenoh::set_live)).
    pub(crate) live: Arc<AtomicBool>,
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
    /// the newest snapshot's names, one short lock of the asks table, and `put_request`,
    /// which never blocks. Error replies for refused gets are sent from here, as Zenoh's
    /// own queryables reply; the relay's worker sends everything else.
    pub(crate) fn on_query(&self, query: zenoh::query::Query) {
        let counters = &self.counters;
        Counters::add(&counters.gets, 1);
        if !self.live.load(Ordering::Relaxed) {
            Counters::add(&counters.gets_refused, 1);
            let _ = query
                .reply_err(NOT_LIVE)
                .encoding(wire::ERROR_ENCODING)
                .wait();
            return;
        }
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
                    .reply_err(unknown(query.key_expr(), &self.prefix))
                    .encoding(wire::ERROR_ENCODING)
                    .wait();
            }
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
        let asks: Vec<_> = keys
            .chain(snapshot)
            .map(|(request, key)| {
                let asker = GetAsker {
                    query: query.clone(),
                    key,
                    counters: Arc::clone(counters),
                };
                (request, asker)
            })
            .collect();
        // Admitted whole, or refused whole.
        if let Err((error, asks)) = self.relay.ask_all(asks, deadline) {
            drop(asks);
            Counters::add(&counters.gets_refused, 1);
            let _ = query
                .reply_err(refusal(error))
                .encoding(wire::ERROR_ENCODING)
                .wait();
        }
    }
}

/// The error reply to a get while the computation does not answer
/// ([`Zenoh::set_live`](crate::Zenoh::set_live)).
pub(crate) const NOT_LIVE: &str = "not live: the computation does not answer now";

/// Why a get is refused, or ended without its value, as the error reply says it.
pub(crate) fn refusal(error: AskError) -> String {
    match error {
        AskError::TooManyAsks => "too many outstanding gets: try again later".to_owned(),
        other => other.to_string(),
    }
}

/// Names `prefix`'s keys for error messages.
pub(crate) fn unknown(query: &keyexpr, prefix: &keyexpr) -> String {
    format!("unknown name: {query} names no value under {prefix}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use queueserver::Abandoned;

    /// The error replies the README's table promises, word for word.
    #[test]
    fn refusals_read_as_the_readme_says() {
        let cases = [
            (
                AskError::TooManyAsks,
                "too many outstanding gets: try again later",
            ),
            (AskError::TimedOut, "timed out waiting for the answer"),
            (AskError::Full, "timed out: the request queue stayed full"),
            (
                AskError::OverQuota,
                "timed out: the connection's share of the queue stayed taken",
            ),
            (
                AskError::Abandoned(Abandoned::Panicked),
                "abandoned: reading the value panicked",
            ),
            (
                AskError::Abandoned(Abandoned::Stopped),
                "abandoned: the server stopped serving requests",
            ),
            (AskError::Closed, "closed: no answer will come"),
        ];
        let readme = include_str!("../README.md");
        for (error, text) in cases {
            assert_eq!(refusal(error), text);
            assert!(readme.contains(&format!("`{text}`")), "{text:?}");
        }
        assert!(readme.contains(&format!("`{NOT_LIVE}`")));
    }
}
