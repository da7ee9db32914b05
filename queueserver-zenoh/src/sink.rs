//! The relay's sink: what the worker thread does with the snapshots and answers the poller
//! handed over. Everything that encodes or puts on the publishing side is here, off the
//! poller.
//!
//! - **A snapshot** ([`Sink::update`]): every value whose JSON differs from what was last
//!   put for its name is put on `P/<name>`, the names gone from the snapshot get a delete,
//!   and the whole snapshot goes on `P/@snapshot`. The relay hands over the newest snapshot
//!   only (latest wins), so a value changed only in a snapshot that was superseded still
//!   goes out with the next one, if it still differs.
//! - **An answer** ([`Sink::prepare`]): its reply made once, the value's or the snapshot's
//!   JSON (or the error's text), for every get waiting for it; each
//!   [`GetAsker`](crate::connection::GetAsker) then replies with it.

use crate::stats::Counters;
use crate::wire::{self, ENCODING};
use queueserver::idict::MAX_NAME_LEN;
use queueserver::runtime::relay::{Answered, Sink, Update};
use queueserver::{IDict, Snapshot};
use serde::Serialize;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::Arc;
use zenoh::bytes::ZBytes;
use zenoh::key_expr::OwnedKeyExpr;
use zenoh::pubsub::Publisher;
use zenoh::qos::CongestionControl;
use zenoh::{Session, Wait};

/// The reply of an answer, made once for all the gets waiting for it.
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

/// See the [module docs](self).
pub(crate) struct ZenohSink<D> {
    session: Session,
    prefix: OwnedKeyExpr,
    counters: Arc<Counters>,
    names: HashMap<String, Put>,
    snapshot: Option<Publisher<'static>>,
    /// Publishes made, to tell the names a snapshot still has.
    publishes: u64,
    /// A buffer for each value's JSON.
    json: Vec<u8>,
    _idict: PhantomData<fn() -> D>,
}

impl<D> ZenohSink<D> {
    pub(crate) fn new(session: Session, prefix: OwnedKeyExpr, counters: Arc<Counters>) -> Self {
        Self {
            session,
            prefix,
            counters,
            names: HashMap::new(),
            snapshot: None,
            publishes: 0,
            json: Vec::new(),
            _idict: PhantomData,
        }
    }
}

impl<D> ZenohSink<D>
where
    D: IDict,
    D::Value: Serialize,
{
    /// Puts every value that changed since the last snapshot published, deletes the names
    /// that are gone, and puts the snapshot.
    fn publish(&mut self, snapshot: &Snapshot<D>) {
        self.publishes += 1;
        let publish = self.publishes;
        let seq = wire::seq_attachment(snapshot.seq());
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
                        .and_then(|key| declare(session, key))
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
        match (wire::snapshot_json(snapshot), self.snapshot_publisher()) {
            (Ok(json), Some(publisher)) => {
                if publisher.put(json).attachment(seq).wait().is_err() {
                    failed += 1;
                }
            }
            _ => failed += 1,
        }
        let counters = &self.counters;
        Counters::add(&counters.snapshots_published, 1);
        Counters::add(&counters.values_put, put);
        Counters::add(&counters.puts_failed, failed);
    }

    fn snapshot_publisher(&mut self) -> Option<&Publisher<'static>> {
        if self.snapshot.is_none() {
            self.snapshot = declare(&self.session, crate::select::snapshot_key(&self.prefix));
        }
        self.snapshot.as_ref()
    }
}

impl<D> Sink<D> for ZenohSink<D>
where
    D: IDict,
    D::Value: Serialize,
{
    type Asker = crate::connection::GetAsker;

    fn prepare(&mut self, answer: Answered<D>) -> Prepared {
        prepare(&answer)
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
fn declare(session: &Session, key: OwnedKeyExpr) -> Option<Publisher<'static>> {
    session
        .declare_publisher(key)
        .encoding(ENCODING)
        .congestion_control(CongestionControl::Drop)
        .wait()
        .ok()
}
