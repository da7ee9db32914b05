//! The relay's sink: what the worker thread does with the snapshots and answers the poller
//! handed over. Everything that encodes or puts on the publishing side is here, off the
//! poller.
//!
//! - **A snapshot** ([`Sink::update`]): every value whose JSON differs from what was last
//!   put for its name is put on `P/<name>`, the names gone from the snapshot get a delete,
//!   and the whole snapshot goes on `P/@snapshot`. The relay hands over the newest snapshot
//!   only (latest wins), so a value changed only in a snapshot that was superseded still
//!   goes out with the next one, if it still differs.
//! - **Only what someone hears.** Zenoh's matching status says whether some subscriber
//!   matches `P/**` (the values) and `P/@snapshot`: the values are encoded and put only
//!   while the first holds, the snapshot only while the second does, and while neither
//!   does the relay's connection does not subscribe to updates at all, so that the poller
//!   hands over nothing and a computation nobody else watches can skip its copies
//!   ([`Publisher::wants_update`](queueserver::Publisher::wants_update)). What was last put
//!   stays what it was: a subscriber that comes later hears each value when it differs
//!   from what was last put for it, as the wire contract says.
//! - **An answer** ([`Sink::prepare`]): its reply made once, the value's or the snapshot's
//!   JSON (or the error's text), for every get waiting for it; each
//!   [`GetAsker`](crate::connection::GetAsker) then replies with it.

use crate::connection::GetAsker;
use crate::stats::Counters;
use crate::wire::{self, ENCODING};
use queueserver::idict::MAX_NAME_LEN;
use queueserver::runtime::relay::{Answered, Relay, Sink, Update};
use queueserver::{IDict, Snapshot};
use serde::Serialize;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use zenoh::bytes::ZBytes;
use zenoh::key_expr::OwnedKeyExpr;
use zenoh::matching::{MatchingListener, MatchingStatus};
use zenoh::pubsub::Publisher;
use zenoh::qos::CongestionControl;
use zenoh::{Session, Wait};

/// The reply of an answer, made once by the relay's sink for all the gets waiting for it
/// (the JSON of the value, or the error's text): what a [`GetAsker`] is handed.
#[derive(Debug)]
pub struct GetReply(pub(crate) Prepared);

/// What a [`GetReply`] holds.
#[derive(Debug)]
pub(crate) enum Prepared {
    /// A value or the snapshot, as JSON, with the attachment naming the snapshot it was
    /// read from.
    Payload { json: ZBytes, seq: ZBytes },
    /// No reply can be made: why, as the error reply says it.
    Error(String),
}

/// What was last put for one name, and its publisher.
struct Put {
    json: Vec<u8>,
    publisher: Publisher<'static>,
    /// The number of the last publish that saw the name.
    seen: u64,
}

/// Whether some subscriber hears the values, the snapshot: set by Zenoh's matching
/// listeners, read by the worker before each publish.
#[derive(Default)]
struct Demand {
    values: AtomicBool,
    snapshot: AtomicBool,
    /// Held while one listener sets its flag and the relay's subscription from both, so
    /// that the subscription follows the last change.
    changing: Mutex<()>,
}

impl Demand {
    /// Records `heard` for one flag and subscribes the relay to updates while either holds.
    ///
    /// **Zenoh's threads** (a matching listener's callback). A short lock, two atomic stores.
    fn set<D: IDict>(&self, which: &AtomicBool, heard: bool, relay: &Relay<D, GetAsker>) {
        let _changing = self.changing.lock().unwrap_or_else(PoisonError::into_inner);
        which.store(heard, Ordering::Relaxed);
        let either = self.values.load(Ordering::Relaxed) || self.snapshot.load(Ordering::Relaxed);
        relay.subscribe(either);
    }
}

/// See the [module docs](self).
pub(crate) struct ZenohSink<D> {
    session: Session,
    prefix: OwnedKeyExpr,
    counters: Arc<Counters>,
    demand: Arc<Demand>,
    names: HashMap<String, Put>,
    snapshot: Publisher<'static>,
    /// The matching listeners of `P/**` (on a publisher that never puts) and of the
    /// snapshot's publisher: they live as long as the sink.
    _listeners: [MatchingListener<()>; 2],
    _values: Publisher<'static>,
    /// Publishes made, to tell the names a snapshot still has.
    publishes: u64,
    /// A buffer for each value's JSON.
    json: Vec<u8>,
    _idict: PhantomData<fn() -> D>,
}

impl<D> ZenohSink<D>
where
    D: IDict + Send + Sync + 'static,
    D::Key: Send + Sync,
    D::Value: Send + Sync,
{
    /// The sink of `relay`, publishing under `prefix`: declares the snapshot's publisher
    /// and the matching listeners, which subscribe `relay` to updates while someone
    /// hears them.
    ///
    /// # Errors
    ///
    /// Zenoh refused a declaration.
    pub(crate) fn new(
        session: &Session,
        prefix: &OwnedKeyExpr,
        counters: Arc<Counters>,
        relay: &Relay<D, GetAsker>,
    ) -> zenoh::Result<Self> {
        let demand = Arc::new(Demand::default());
        let values = declare(session, crate::select::prefix_children(prefix))?;
        let snapshot = declare(session, crate::select::snapshot_key(prefix))?;
        let listen = |publisher: &Publisher<'static>, which: fn(&Demand) -> &AtomicBool| {
            let (demand, relay) = (Arc::clone(&demand), relay.clone());
            publisher
                .matching_listener()
                .callback(move |status: MatchingStatus| {
                    demand.set(which(&demand), status.matching(), &relay);
                })
                .wait()
        };
        let listeners = [
            listen(&values, |d| &d.values)?,
            listen(&snapshot, |d| &d.snapshot)?,
        ];
        Ok(Self {
            session: session.clone(),
            prefix: prefix.clone(),
            counters,
            demand,
            names: HashMap::new(),
            snapshot,
            _listeners: listeners,
            _values: values,
            publishes: 0,
            json: Vec::new(),
            _idict: PhantomData,
        })
    }
}

impl<D> ZenohSink<D>
where
    D: IDict,
    D::Value: Serialize,
{
    /// Puts every value that changed since the last snapshot published and deletes the
    /// names that are gone, if someone hears the values; puts the snapshot, if someone
    /// hears it.
    fn publish(&mut self, snapshot: &Snapshot<D>) {
        let seq = wire::seq_attachment(snapshot.seq());
        if self.demand.values.load(Ordering::Relaxed) {
            self.put_values(snapshot, &seq);
        }
        if self.demand.snapshot.load(Ordering::Relaxed) {
            let sent = wire::snapshot_json(snapshot)
                .ok()
                .map(|json| self.snapshot.put(json).attachment(seq).wait());
            if !matches!(sent, Some(Ok(()))) {
                Counters::add(&self.counters.puts_failed, 1);
            }
        }
        Counters::add(&self.counters.snapshots_published, 1);
    }

    /// Puts every value that changed since it was last put, and deletes the names that are
    /// gone.
    fn put_values(&mut self, snapshot: &Snapshot<D>, seq: &ZBytes) {
        self.publishes += 1;
        let publish = self.publishes;
        let (mut put, mut failed, mut seen) = (0, 0, 0);
        let Self {
            session,
            prefix,
            names,
            json,
            ..
        } = self;
        snapshot.visit(|key, value| {
            let mut name = heapless::String::<MAX_NAME_LEN>::new();
            if D::write_name(key, &mut name).is_err() {
                failed += 1;
                return;
            }
            json.clear();
            if serde_json::to_writer(&mut *json, value).is_err() {
                failed += 1;
                return;
            }
            let entry = match names.get_mut(name.as_str()) {
                Some(entry) => entry,
                None => {
                    let Some(publisher) = prefix
                        .join(name.as_str())
                        .ok()
                        .and_then(|key| declare(session, key).ok())
                    else {
                        failed += 1;
                        return;
                    };
                    let entry = Put {
                        json: Vec::new(),
                        publisher,
                        seen: 0,
                    };
                    names.entry(name.as_str().to_owned()).or_insert(entry)
                }
            };
            entry.seen = publish;
            seen += 1;
            if entry.json == *json {
                return;
            }
            let sent = entry
                .publisher
                .put(json.clone())
                .attachment(seq.clone())
                .wait();
            match sent {
                Ok(()) => {
                    put += 1;
                    entry.json.clone_from(json);
                }
                Err(_) => failed += 1,
            }
        });
        if names.len() > seen {
            // Names the snapshot no longer has: a delete each.
            let gone: Vec<String> = names
                .iter()
                .filter(|(_, entry)| entry.seen != publish)
                .map(|(name, _)| name.clone())
                .collect();
            for name in gone {
                if let Some(entry) = names.remove(&name) {
                    if entry.publisher.delete().wait().is_err() {
                        failed += 1;
                    }
                }
            }
        }
        Counters::add(&self.counters.values_put, put);
        Counters::add(&self.counters.puts_failed, failed);
    }
}

impl<D> Sink<D> for ZenohSink<D>
where
    D: IDict,
    D::Value: Serialize,
{
    type Asker = GetAsker;

    fn prepare(&mut self, answer: Answered<D>) -> GetReply {
        GetReply(prepare(&answer))
    }

    fn update(&mut self, update: &Update<D>) {
        self.publish(update);
    }
}

/// The reply to the gets waiting for `answer`.
fn prepare<D>(answer: &Answered<D>) -> Prepared
where
    D: IDict,
    D::Value: Serialize,
{
    let json = match answer {
        Answered::Value { value, .. } => serde_json::to_vec(value),
        Answered::Snapshot(snapshot) => wire::snapshot_json(snapshot),
        Answered::NotFound { key, seq } => {
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
            seq: wire::seq_attachment(answer.seq()),
        },
        Err(error) => Prepared::Error(format!("the value does not serialize as JSON: {error}")),
    }
}

/// A publisher of JSON that drops rather than blocks when the link is congested: one slow
/// subscriber must not hold up the others, and the next change carries the newest value.
fn declare(session: &Session, key: OwnedKeyExpr) -> zenoh::Result<Publisher<'static>> {
    session
        .declare_publisher(key)
        .encoding(ENCODING)
        .congestion_control(CongestionControl::Drop)
        .wait()
}

#[cfg(test)]
mod tests {
    use crate::peers::until;
    use crate::{Options, Zenoh};
    use queueserver::{Connection, QueueServer};
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};
    use zenoh::{Session, Wait};

    type Map = BTreeMap<String, f64>;
    const P: &str = "test/demand";

    /// Every key a subscriber of `key` hears.
    fn hear(session: &Session, key: &str) -> (Arc<Mutex<Vec<String>>>, impl Sized) {
        let heard = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&heard);
        let subscriber = session
            .declare_subscriber(key)
            .callback(move |s| sink.lock().unwrap().push(s.key_expr().to_string()))
            .wait()
            .unwrap();
        (heard, subscriber)
    }

    #[test]
    fn updates_are_taken_and_put_only_while_a_subscriber_hears_them() {
        let (computation, other, _socket) = crate::peers::pair("demand");
        let (mut publisher, mut server) =
            QueueServer::<Map, Box<dyn Connection<Map> + Send>>::new(Map::new());
        let zenoh = Zenoh::attach(&mut server, &computation, P, Options::new()).unwrap();
        let mut step = 0.0;
        let mut publish = |server: &mut QueueServer<Map, _>| {
            step += 1.0;
            publisher.put_update(&Map::from([("x".to_owned(), step)]));
            server.poll();
            publisher.wants_update()
        };

        // Nobody hears: the connection takes no update, and the computation may skip its
        // copies.
        for _ in 0..3 {
            assert!(!publish(&mut server));
        }
        assert_eq!(zenoh.stats().snapshots_offered, 0);

        // Someone hears the snapshot only: snapshots go out, values do not.
        let (snapshots, subscriber) = hear(&other, &format!("{P}/@snapshot"));
        until("the snapshot heard", || {
            publish(&mut server);
            !snapshots.lock().unwrap().is_empty()
        });
        assert_eq!(zenoh.stats().values_put, 0);
        drop(subscriber);
        until("nobody to hear", || !publish(&mut server));

        // Someone hears the values: they go out.
        let (values, _subscriber) = hear(&other, &format!("{P}/**"));
        until("a value heard", || {
            publish(&mut server);
            !values.lock().unwrap().is_empty()
        });
        assert_eq!(values.lock().unwrap()[0], format!("{P}/x"));
        assert!(zenoh.stats().values_put > 0);
        zenoh.close();
    }
}
