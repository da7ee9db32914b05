//! Writes the hand-made seeds: for `server_ops`, one scenario per edge of the server's
//! contract, encoded in the byte form `arbitrary` decodes them from; for `parse`, one
//! valid encoding of each serialized type in each format.
//!
//! ```sh
//! cd fuzz && cargo run --example seeds    # writes corpus/*/seed-*
//! ```
//!
//! Every scenario is decoded again and compared with the one it was made from, so a
//! change of `arbitrary`'s format, or of the operation types, fails here instead of
//! leaving seeds that mean something else; and every seed must pass its target.

use arbitrary::{Arbitrary, Unstructured};
use queueserver::{Config, ConnectionId, Query, Request, Stats};
use queueserver_fuzz::ops::{
    BehaviourPick, Fault, IdPick, KeyPick, Op, QueryPick, Scenario, Shape,
};
use queueserver_fuzz::parse::{self, Derived, DerivedKey, SnapshotParts, DERIVED, RAW};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::path::Path;
use std::time::Duration;

/// The byte form `arbitrary` 1.5 decodes a value from.
trait Encode {
    fn encode(&self, out: &mut Vec<u8>);
}

/// An enum's variant `index` of `count`: `arbitrary` picks `(u32 * count) >> 32`.
fn tag(index: u32, count: u32, out: &mut Vec<u8>) {
    let x = (u64::from(index) << 32).div_ceil(u64::from(count));
    out.extend_from_slice(&u32::try_from(x).expect("a tag").to_le_bytes());
}

impl Encode for u8 {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(*self);
    }
}

impl Encode for bool {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(u8::from(*self));
    }
}

impl Encode for u16 {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

impl Encode for u32 {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

impl Encode for i32 {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

impl<T: Encode> Encode for Option<T> {
    fn encode(&self, out: &mut Vec<u8>) {
        self.is_some().encode(out);
        if let Some(value) = self {
            value.encode(out);
        }
    }
}

impl<A: Encode, B: Encode> Encode for (A, B) {
    fn encode(&self, out: &mut Vec<u8>) {
        self.0.encode(out);
        self.1.encode(out);
    }
}

/// A collection that is not the last field: each element after a `true`, then `false`.
impl<T: Encode> Encode for Vec<T> {
    fn encode(&self, out: &mut Vec<u8>) {
        for item in self {
            true.encode(out);
            item.encode(out);
        }
        false.encode(out);
    }
}

impl Encode for KeyPick {
    fn encode(&self, out: &mut Vec<u8>) {
        self.0.encode(out);
    }
}

impl Encode for Shape {
    fn encode(&self, out: &mut Vec<u8>) {
        let index = match self {
            Shape::Q8C4 => 0,
            Shape::Q4C1 => 1,
            Shape::Q2C4 => 2,
        };
        tag(index, 3, out);
    }
}

impl Encode for IdPick {
    fn encode(&self, out: &mut Vec<u8>) {
        match *self {
            IdPick::Issued(n) => {
                tag(0, 4, out);
                n.encode(out);
            }
            IdPick::Near(index, generation) => {
                tag(1, 4, out);
                (index, generation).encode(out);
            }
            IdPick::Raw(index, generation) => {
                tag(2, 4, out);
                (index, generation).encode(out);
            }
            IdPick::Foreign(n) => {
                tag(3, 4, out);
                n.encode(out);
            }
        }
    }
}

impl Encode for QueryPick {
    fn encode(&self, out: &mut Vec<u8>) {
        match *self {
            QueryPick::Key(key) => {
                tag(0, 2, out);
                key.encode(out);
            }
            QueryPick::All => tag(1, 2, out),
        }
    }
}

impl Encode for BehaviourPick {
    fn encode(&self, out: &mut Vec<u8>) {
        self.wants_updates.encode(out);
        self.fail_update_after.encode(out);
        self.fail_response_after.encode(out);
        let fault = match self.fault {
            Fault::Closed => 0,
            Fault::Overloaded => 1,
            Fault::Failed => 2,
            Fault::Panics => 3,
        };
        tag(fault, 4, out);
    }
}

impl Encode for Op {
    fn encode(&self, out: &mut Vec<u8>) {
        const COUNT: u32 = 16;
        match *self {
            Op::Set(key, value) => {
                tag(0, COUNT, out);
                (key, value).encode(out);
            }
            Op::Unset(key) => {
                tag(1, COUNT, out);
                key.encode(out);
            }
            Op::Publish(n) => {
                tag(2, COUNT, out);
                n.encode(out);
            }
            Op::Add(behaviour) => {
                tag(3, COUNT, out);
                behaviour.encode(out);
            }
            Op::Remove(id) => {
                tag(4, COUNT, out);
                id.encode(out);
            }
            Op::Subscribe(id, wants) => {
                tag(5, COUNT, out);
                (id, wants).encode(out);
            }
            Op::Put {
                from,
                query,
                times,
                via_requester,
            } => {
                tag(6, COUNT, out);
                from.encode(out);
                query.encode(out);
                (times, via_requester).encode(out);
            }
            Op::ProcessUpdates => tag(7, COUNT, out),
            Op::ProcessRequests => tag(8, COUNT, out),
            Op::Poll => tag(9, COUNT, out),
            Op::Advance(ms) => {
                tag(10, COUNT, out);
                ms.encode(out);
            }
            Op::Rewind(ms) => {
                tag(11, COUNT, out);
                ms.encode(out);
            }
            Op::Abandon => tag(12, COUNT, out),
            Op::Close => tag(13, COUNT, out),
            Op::TakeFailed => tag(14, COUNT, out),
            Op::Read => tag(15, COUNT, out),
        }
    }
}

impl Encode for Scenario {
    fn encode(&self, out: &mut Vec<u8>) {
        self.shape.encode(out);
        self.share.encode(out);
        self.update_interval.encode(out);
        self.request_interval.encode(out);
        self.initial.encode(out);
        // The last field takes the rest: each step after a `true`, up to the end.
        for op in &self.ops {
            true.encode(out);
            op.encode(out);
        }
    }
}

// ----- the scenarios -----

const X: KeyPick = KeyPick(0);
const V: KeyPick = KeyPick(1);
const MISSING: KeyPick = KeyPick(5);
/// The key whose read panics (`model::PANIC_KEY`).
const BOOM: KeyPick = KeyPick(0xEE);

fn subscriber() -> Op {
    Op::Add(BehaviourPick {
        wants_updates: true,
        fail_update_after: None,
        fail_response_after: None,
        fault: Fault::Closed,
    })
}

fn asker() -> Op {
    Op::Add(BehaviourPick {
        wants_updates: false,
        ..behaviour(None, None, Fault::Closed)
    })
}

fn behaviour(update: Option<u8>, response: Option<u8>, fault: Fault) -> BehaviourPick {
    BehaviourPick {
        wants_updates: true,
        fail_update_after: update,
        fail_response_after: response,
        fault,
    }
}

fn put(from: IdPick, query: QueryPick, times: u8) -> Op {
    Op::Put {
        from,
        query,
        times,
        via_requester: times % 2 == 1,
    }
}

fn scenario(shape: Shape, ops: Vec<Op>) -> Scenario {
    Scenario {
        shape,
        share: None,
        update_interval: None,
        request_interval: None,
        initial: vec![(X, 10), (V, 20)],
        ops,
    }
}

fn scenarios() -> Vec<(&'static str, Scenario)> {
    use IdPick::{Foreign, Issued, Near, Raw};
    use Op::*;
    use QueryPick::{All, Key};
    vec![
        (
            // Latest wins: three publishes, one fan-out of the newest to the subscribers;
            // a subscription change seen by the next fan-out; the reader follows.
            "fan-out",
            scenario(
                Shape::Q8C4,
                vec![
                    subscriber(),
                    subscriber(),
                    asker(),
                    Set(X, 11),
                    Publish(2),
                    ProcessUpdates,
                    Read,
                    Subscribe(Issued(2), true),
                    Subscribe(Issued(0), false),
                    Unset(V),
                    Publish(0),
                    Poll,
                    ProcessUpdates,
                    Read,
                ],
            ),
        ),
        (
            // Duplicates consolidated, one read per query, unknown keys and the whole
            // snapshot, answered from the newest publish.
            "consolidation",
            scenario(
                Shape::Q8C4,
                vec![
                    asker(),
                    asker(),
                    put(Issued(0), Key(X), 1),
                    put(Issued(1), Key(X), 0),
                    put(Issued(0), Key(MISSING), 0),
                    put(Issued(1), All, 0),
                    Set(X, 12),
                    Publish(0),
                    ProcessRequests,
                    ProcessRequests,
                ],
            ),
        ),
        (
            // A share of 4 in a queue of 8: over quota, then full, then room again.
            "full-queue",
            Scenario {
                share: Some(4),
                ..scenario(
                    Shape::Q8C4,
                    vec![
                        asker(),
                        asker(),
                        asker(),
                        put(Issued(0), Key(X), 3),
                        put(Issued(0), Key(V), 0),
                        put(Issued(1), Key(V), 3),
                        put(Issued(2), Key(X), 0),
                        ProcessRequests,
                        put(Issued(2), Key(X), 0),
                        Poll,
                    ],
                )
            },
        ),
        (
            // Every slot taken, a fifth refused; a removed connection's stale id, a
            // reused slot, ids near the real ones and far from them.
            "slots-and-stale-ids",
            scenario(
                Shape::Q8C4,
                vec![
                    asker(),
                    asker(),
                    asker(),
                    asker(),
                    asker(),
                    put(Issued(1), Key(X), 0),
                    Remove(Issued(1)),
                    Remove(Issued(1)),
                    put(Issued(1), Key(X), 0),
                    asker(),
                    put(Issued(1), Key(X), 0),
                    put(Issued(4), Key(X), 0),
                    put(Near(1, 1), Key(V), 0),
                    put(Near(4, 0), Key(V), 0),
                    put(Raw(0xFFFF, 0xFFFF), Key(V), 0),
                    ProcessRequests,
                ],
            ),
        ),
        (
            // Connections that fail on an update or an answer: removed, their other
            // answers orphaned, handed back oldest first, the oldest dropped past MAXC.
            "failures",
            scenario(
                Shape::Q8C4,
                vec![
                    Op::Add(behaviour(Some(1), None, Fault::Overloaded)),
                    Op::Add(behaviour(None, Some(0), Fault::Failed)),
                    Op::Add(behaviour(Some(0), None, Fault::Closed)),
                    put(Issued(1), Key(X), 1),
                    put(Issued(1), Key(V), 0),
                    put(Issued(0), Key(X), 0),
                    Publish(0),
                    Poll,
                    Publish(0),
                    Poll,
                    Op::Add(behaviour(Some(0), None, Fault::Closed)),
                    Op::Add(behaviour(Some(0), None, Fault::Closed)),
                    Publish(0),
                    ProcessUpdates,
                    TakeFailed,
                    TakeFailed,
                    TakeFailed,
                    TakeFailed,
                    TakeFailed,
                ],
            ),
        ),
        (
            // Rate limits on a manual clock: held snapshots superseded, held requests
            // consolidated into the next read, retry times, and the exact boundary.
            "rate-limits",
            Scenario {
                update_interval: Some(10),
                request_interval: Some(5),
                ..scenario(
                    Shape::Q8C4,
                    vec![
                        subscriber(),
                        Publish(0),
                        ProcessUpdates,
                        Advance(3),
                        Publish(0),
                        ProcessUpdates,
                        Publish(0),
                        Advance(6),
                        ProcessUpdates,
                        Advance(1),
                        ProcessUpdates,
                        put(Issued(0), Key(X), 0),
                        ProcessRequests,
                        put(Issued(0), Key(X), 0),
                        ProcessRequests,
                        put(Issued(0), Key(X), 0),
                        Advance(5),
                        Poll,
                    ],
                )
            },
        ),
        (
            // Closing: later requests refused, accepted ones still answered at once, the
            // rate limits lifted, the last snapshot delivered.
            "close",
            Scenario {
                update_interval: Some(31),
                request_interval: Some(31),
                ..scenario(
                    Shape::Q8C4,
                    vec![
                        subscriber(),
                        put(Issued(0), Key(X), 0),
                        Publish(0),
                        Poll,
                        put(Issued(0), Key(V), 0),
                        Publish(0),
                        Poll,
                        Close,
                        put(Issued(0), Key(X), 0),
                        put(Near(3, 0), Key(X), 0),
                        Poll,
                        Read,
                    ],
                )
            },
        ),
        (
            // More slots than queue entries: a share of 1 each, the queue full at two.
            "tiny-queue",
            scenario(
                Shape::Q2C4,
                vec![
                    asker(),
                    asker(),
                    asker(),
                    put(Issued(0), Key(X), 1),
                    put(Issued(1), All, 0),
                    put(Issued(2), Key(V), 0),
                    Remove(Issued(0)),
                    asker(),
                    put(Issued(3), Key(X), 0),
                    ProcessRequests,
                    put(Issued(3), Key(X), 0),
                    ProcessRequests,
                ],
            ),
        ),
        (
            // One slot that may fill the whole queue; refused configurations.
            "one-slot",
            Scenario {
                share: Some(4),
                ..scenario(
                    Shape::Q4C1,
                    vec![
                        subscriber(),
                        subscriber(),
                        put(Issued(0), Key(X), 3),
                        put(Issued(0), Key(X), 0),
                        Publish(3),
                        Poll,
                    ],
                )
            },
        ),
        (
            "refused-share",
            Scenario {
                share: Some(9),
                ..scenario(Shape::Q8C4, vec![subscriber()])
            },
        ),
        (
            // Connections that panic on an update or an answer: removed like failing ones,
            // the others served; their message handed back.
            "panicking-connections",
            scenario(
                Shape::Q8C4,
                vec![
                    Op::Add(behaviour(Some(0), None, Fault::Panics)),
                    Op::Add(BehaviourPick {
                        wants_updates: false,
                        ..behaviour(None, Some(1), Fault::Panics)
                    }),
                    subscriber(),
                    put(Issued(1), Key(X), 0),
                    put(Issued(1), Key(V), 0),
                    put(Issued(2), Key(X), 0),
                    Publish(0),
                    Poll,
                    TakeFailed,
                    TakeFailed,
                    put(Issued(1), Key(X), 0),
                    Poll,
                ],
            ),
        ),
        (
            // A read that panics unwinds through the poller: what was answered stays
            // answered, the group read is abandoned by the next call, the rest answered
            // then; again in the middle of a batch, then given up on.
            "read-panics",
            scenario(
                Shape::Q8C4,
                vec![
                    asker(),
                    asker(),
                    put(Issued(0), Key(X), 0),
                    put(Issued(0), Key(BOOM), 1),
                    put(Issued(1), Key(BOOM), 0),
                    put(Issued(1), Key(MISSING), 0),
                    ProcessRequests,
                    put(Issued(0), Key(V), 0),
                    Poll,
                    put(Issued(1), Key(BOOM), 0),
                    put(Issued(1), All, 0),
                    Poll,
                    Abandon,
                    put(Issued(0), Key(X), 0),
                    Abandon,
                ],
            ),
        ),
        (
            // A clock that goes back: held work goes through at once, and the limits
            // restart from the new reading.
            "clock-back",
            Scenario {
                update_interval: Some(20),
                request_interval: Some(20),
                ..scenario(
                    Shape::Q8C4,
                    vec![
                        subscriber(),
                        Advance(15),
                        Publish(0),
                        put(Issued(0), Key(X), 0),
                        Poll,
                        Rewind(200),
                        Publish(0),
                        put(Issued(0), Key(X), 0),
                        Poll,
                        Publish(0),
                        put(Issued(0), Key(X), 0),
                        Poll,
                        Advance(15),
                        Advance(15),
                        Poll,
                    ],
                )
            },
        ),
        (
            // Ids of another server are refused; a connection in a reused slot starts
            // with an empty share, a generation skipped if need be.
            "foreign-ids-and-reuse",
            Scenario {
                share: Some(2),
                ..scenario(
                    Shape::Q4C1,
                    vec![
                        asker(),
                        put(Foreign(0), Key(X), 0),
                        put(Issued(0), Key(X), 1),
                        Remove(Issued(0)),
                        asker(),
                        put(Issued(1), Key(V), 1),
                        put(Issued(1), Key(V), 0),
                        Remove(Issued(1)),
                        asker(),
                        put(Issued(2), Key(X), 0),
                        ProcessRequests,
                        asker(),
                        Remove(Issued(2)),
                        asker(),
                        put(Raw(0, 7), Key(X), 0),
                        put(Issued(4), Key(X), 1),
                        Poll,
                    ],
                )
            },
        ),
    ]
}

/// A `parse` seed: `value` in both formats, after the byte that selects its type.
fn encodings<T>(name: &str, target: u8, value: &T) -> Vec<(String, Vec<u8>)>
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let postcard = postcard::to_allocvec(value).expect("postcard serializes");
    let json = serde_json::to_vec(value).expect("JSON serializes");
    assert_eq!(postcard::from_bytes::<T>(&postcard).as_ref(), Ok(value));
    assert_eq!(&serde_json::from_slice::<T>(&json).expect("JSON"), value);
    vec![
        (
            format!("{name}-postcard"),
            [&[RAW | target][..], &postcard].concat(),
        ),
        (
            format!("{name}-json"),
            [&[RAW | 0x08 | target][..], &json].concat(),
        ),
    ]
}

fn parse_seeds() -> Vec<(String, Vec<u8>)> {
    let id = ConnectionId::from_parts(9, 1, 2);
    let config = Config::new()
        .with_min_update_interval(Duration::from_millis(33))
        .with_max_pending_per_connection(2);
    let stats = Stats {
        requests_accepted: 6,
        requests_answered: 4,
        requests_orphaned: 1,
        requests_abandoned: 1,
        ..Stats::default()
    };
    let snapshot = SnapshotParts {
        seq: 7,
        data: BTreeMap::from([(1u8, -3i32), (4, 9)]),
    };
    let named = SnapshotParts {
        seq: 1 << 40,
        data: BTreeMap::from([("speed".to_string(), -1i64), ("ü".to_string(), 2)]),
    };
    let derived = SnapshotParts {
        seq: 3,
        data: Derived {
            count: u64::MAX,
            offset: -5,
            on: true,
            mode: "run".try_into().expect("fits"),
            fault: Some(7),
            pair: [-1, 2],
            scratch: 0,
        },
    };
    [
        encodings("snapshot", 0, &snapshot),
        encodings("named-snapshot", 1, &named),
        encodings("request", 2, &Request::key(id, "speed".to_string())),
        encodings("byte-request", 3, &Request::<u8>::snapshot(id)),
        encodings("query", 4, &Query::Key("x".to_string())),
        encodings("id", 5, &ConnectionId::from_parts(u32::MAX, 3, u32::MAX)),
        encodings("stats", 6, &stats),
        encodings("config", 7, &config),
        encodings("derived-snapshot", DERIVED, &derived),
        encodings("derived-key", DERIVED | 1, &DerivedKey::Mode),
    ]
    .concat()
}

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/server_ops");
    std::fs::create_dir_all(&dir).expect("the corpus directory");
    for (name, scenario) in scenarios() {
        let mut bytes = Vec::new();
        scenario.encode(&mut bytes);
        let decoded =
            Scenario::arbitrary_take_rest(Unstructured::new(&bytes)).expect("a seed decodes");
        assert_eq!(
            format!("{decoded:?}"),
            format!("{scenario:?}"),
            "seed {name} decodes to another scenario"
        );
        // The seed must pass: the server and the model agree on it.
        scenario.run();
        let path = dir.join(format!("seed-{name}"));
        std::fs::write(&path, &bytes).expect("a written seed");
        println!("{} ({} bytes)", path.display(), bytes.len());
    }

    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/parse");
    std::fs::create_dir_all(&dir).expect("the corpus directory");
    for (name, bytes) in parse_seeds() {
        parse::run(&bytes);
        let path = dir.join(format!("seed-{name}"));
        std::fs::write(&path, &bytes).expect("a written seed");
        println!("{} ({} bytes)", path.display(), bytes.len());
    }
}
