//! The device side with a real server: the schema, updates, gets and their answers, the
//! refusals, a stalled line, garbage on the line, pings; decoded by the host side's own
//! decoder.

use queueserver::idict::{FieldValue, ValueType};
use queueserver::{Builder, ConnectionId, IDict, Publisher, QueueServer};
use queueserver::{NoClock, NoNotify};
use queueserver_link::device::{line_len, LinkTx, Parts, Received};
use queueserver_link::host::{encode_describe, encode_get, encode_ping, Deframer, Message};
use queueserver_link::host::{KeyInfo, Schema, Shape, Value};
use queueserver_link::wire::ErrorCode;
use queueserver_link::{Link, LinkRx, SplitError, Storage};

/// A nested value with no described shape: it travels as bytes.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
struct Blob(u16, u16);
impl FieldValue for Blob {}

#[derive(Clone, Debug, PartialEq, IDict)]
struct Plant {
    step: u32,
    speed: f32,
    #[idict(rename = "motor/on")]
    motor_on: bool,
    label: heapless::String<8>,
    limit: Option<i16>,
    blob: Blob,
}

impl Plant {
    fn at(step: u32) -> Self {
        let mut label = heapless::String::new();
        let _ = core::fmt::write(&mut label, format_args!("s{}", step % 1000));
        Self {
            step,
            speed: step as f32 * 0.5,
            motor_on: step.is_multiple_of(2),
            label,
            limit: (!step.is_multiple_of(3)).then_some(-(step as i16 % 100)),
            blob: Blob(step as u16, 7),
        }
    }

    /// What the host decodes for key `name` of the state of `step`.
    fn value_of(step: u32, name: &str) -> Value {
        let p = Self::at(step);
        match name {
            "step" => Value::U64(p.step.into()),
            "speed" => Value::F32(p.speed),
            "motor/on" => Value::Bool(p.motor_on),
            "label" => Value::Str(p.label.to_string()),
            "limit" => Value::Option(p.limit.map(|l| Box::new(Value::I64(l.into())))),
            "blob" => Value::Bytes(postcard::to_stdvec(&p.blob).unwrap()),
            other => panic!("no key {other}"),
        }
    }
}

const K: usize = 8;
const TX: usize = 512;
const F: usize = 96;
const A: usize = 256;

type PlantLink = Link<'static, Plant, K, F, A>;
type Server = QueueServer<Plant, PlantLink, NoNotify, NoClock, 16, 2>;
type Rx = LinkRx<'static, Plant, queueserver::Requester<PlantKey, NoNotify, 16, 2>, K>;

/// A device (server, link, its parts) and a host decoder reading what it sends.
struct Bench {
    publisher: Publisher<Plant, NoNotify>,
    server: Server,
    id: ConnectionId,
    tx: LinkTx<'static, K>,
    rx: Rx,
    deframer: Deframer,
    schema: Option<Schema>,
    pending_keys: Vec<Option<KeyInfo>>,
    step: u32,
}

impl Bench {
    fn new() -> Self {
        let storage = Box::leak(Box::new(Storage::<Plant, K, TX>::new()));
        let Parts { link, tx, rx } = storage.split::<F, A>(&Plant::at(0)).expect("fits");
        let (publisher, mut server) = Builder::new(Plant::at(0))
            .capacity::<16, 2>()
            .build::<PlantLink>()
            .expect("a valid configuration");
        let id = server
            .add_connection(link)
            .unwrap_or_else(|_| panic!("a free slot"));
        let rx = rx.attach(server.requester(), id);
        Self {
            publisher,
            server,
            id,
            tx,
            rx,
            deframer: Deframer::new(4096),
            schema: None,
            pending_keys: Vec::new(),
            step: 0,
        }
    }

    fn link(&mut self) -> &mut PlantLink {
        self.server.connection_mut(self.id).expect("attached")
    }

    fn publish(&mut self) -> u32 {
        self.step += 1;
        self.publisher.put_update(&Plant::at(self.step));
        self.step
    }

    /// Sends host bytes to the device's receiver.
    fn send(&mut self, bytes: &[u8]) {
        self.rx.receive_all(bytes);
    }

    /// Drains the line (at most `max` bytes) and decodes what came.
    fn drain(&mut self, max: usize) -> Vec<Message> {
        let mut bytes = vec![0; max];
        let n = self.tx.fill(&mut bytes);
        bytes.truncate(n);
        let mut payloads = Vec::new();
        self.deframer.feed(&bytes, |p| payloads.push(p.to_vec()));
        let mut out = Vec::new();
        for payload in payloads {
            let message = Message::decode(&payload, self.schema.as_ref()).expect("decodes");
            match &message {
                Message::Hello {
                    version,
                    keys,
                    max_frame,
                    ..
                } => {
                    self.pending_keys = vec![None; *keys];
                    self.schema = None;
                    assert_eq!(*version, 1);
                    assert_eq!(*max_frame, F);
                }
                Message::Key { index, info } => {
                    self.pending_keys[*index] = Some(info.clone());
                    if self.pending_keys.iter().all(Option::is_some) {
                        self.schema = Some(Schema {
                            version: 1,
                            keys: self.pending_keys.drain(..).flatten().collect(),
                            max_frame: F,
                        });
                    }
                }
                _ => {}
            }
            out.push(message);
        }
        out
    }

    /// Flushes the link and drains everything.
    fn drain_all(&mut self) -> Vec<Message> {
        let mut all = Vec::new();
        loop {
            self.link().flush();
            let got = self.drain(usize::MAX >> 40);
            if got.is_empty() && self.tx.is_empty() {
                return all;
            }
            all.extend(got);
        }
    }

    fn name(&self, index: usize) -> String {
        self.schema.as_ref().unwrap().keys[index].name.clone()
    }
}

fn get(tag: u32, name: &str) -> Vec<u8> {
    encode_get(tag, name).unwrap()
}

#[test]
fn the_schema_comes_first_with_every_name_and_type() {
    let mut bench = Bench::new();
    let messages = bench.drain_all();
    assert!(
        matches!(
            messages[0],
            Message::Hello {
                keys: 6,
                seq: 0,
                ..
            }
        ),
        "{messages:?}"
    );
    let schema = bench.schema.clone().expect("complete");
    let expected = [
        ("step", Shape::U32),
        ("speed", Shape::F32),
        ("motor/on", Shape::Bool),
        ("label", Shape::Str { capacity: 8 }),
        ("limit", Shape::Option(Box::new(Shape::I16))),
        ("blob", Shape::Other),
    ];
    let got: Vec<(&str, &Shape)> = schema
        .keys
        .iter()
        .map(|k| (k.name.as_str(), &k.shape))
        .collect();
    let want: Vec<(&str, &Shape)> = expected.iter().map(|(n, s)| (*n, s)).collect();
    assert_eq!(got, want);
    assert_eq!(bench.link().stats().schemas_sent, 1);
    // Asked again, it comes again.
    bench.send(&encode_describe());
    let again = bench.drain_all();
    assert!(matches!(again[0], Message::Hello { keys: 6, .. }));
    assert_eq!(again.len(), 7);
    assert_eq!(bench.link().stats().schemas_sent, 2);
}

#[test]
fn each_update_carries_the_snapshot_of_its_seq() {
    let mut bench = Bench::new();
    bench.drain_all();
    for _ in 0..20 {
        let step = bench.publish();
        bench.server.poll();
        let messages = bench.drain_all();
        assert_eq!(messages.len(), 1, "{messages:?}");
        let Message::Snapshot {
            seq,
            values,
            answer: false,
        } = &messages[0]
        else {
            panic!("a snapshot: {messages:?}");
        };
        assert_eq!(*seq, u64::from(step));
        for (i, value) in values.iter().enumerate() {
            assert_eq!(*value, Plant::value_of(step, &bench.name(i)), "key {i}");
        }
    }
    let stats = bench.link().stats();
    assert_eq!((stats.updates_sent, stats.updates_dropped), (20, 0));
}

#[test]
fn a_get_is_answered_with_the_value_at_the_seq_it_names() {
    let mut bench = Bench::new();
    bench.drain_all();
    for (tag, name) in ["speed", "label", "limit", "blob", "motor/on"]
        .iter()
        .enumerate()
    {
        let step = bench.publish();
        bench.send(&get(tag as u32, name));
        bench.server.poll();
        let messages = bench.drain_all();
        let answer = messages
            .iter()
            .find_map(|m| match m {
                Message::Value { seq, index, value } => Some((*seq, *index, value.clone())),
                _ => None,
            })
            .expect("an answer");
        assert_eq!(bench.name(answer.1), *name);
        assert_eq!(answer.0, u64::from(step));
        assert_eq!(answer.2, Plant::value_of(step, name));
    }
    // The whole snapshot, through the request path.
    let step = bench.publish();
    bench.send(&get(99, "@snapshot"));
    bench.server.poll();
    let messages = bench.drain_all();
    let snapshot = messages
        .iter()
        .find_map(|m| match m {
            Message::Snapshot {
                seq,
                values,
                answer: true,
            } => Some((*seq, values.clone())),
            _ => None,
        })
        .expect("a snapshot answer");
    assert_eq!(snapshot.0, u64::from(step));
    assert_eq!(snapshot.1[1], Plant::value_of(step, "speed"));
    let stats = bench.link().stats();
    assert_eq!((stats.gets_accepted, stats.answers_sent), (6, 6));
}

#[test]
fn an_unknown_or_invalid_name_is_refused_with_an_error_frame() {
    let mut bench = Bench::new();
    bench.drain_all();
    for (tag, name) in [(5, "torque"), (6, "a b"), (7, "")] {
        assert!(bench.rx.receive_all(&get(tag, name)));
        let messages = bench.drain_all();
        assert_eq!(
            messages,
            [Message::Error {
                tag,
                code: ErrorCode::UnknownName
            }]
        );
    }
    let stats = bench.link().stats();
    assert_eq!((stats.gets_refused, stats.gets_accepted), (3, 0));
}

#[test]
fn gets_of_a_key_in_flight_join_its_one_answer() {
    let mut bench = Bench::new();
    bench.drain_all();
    bench.publish();
    bench.send(&get(1, "speed"));
    bench.send(&get(2, "speed"));
    bench.send(&get(3, "speed"));
    bench.server.poll();
    let answers = bench
        .drain_all()
        .into_iter()
        .filter(|m| matches!(m, Message::Value { .. }))
        .count();
    assert_eq!(answers, 1);
    let stats = bench.link().stats();
    assert_eq!((stats.gets_accepted, stats.gets_joined), (1, 2));
    // Settled: the next get is a new one.
    bench.send(&get(4, "speed"));
    bench.server.poll();
    assert_eq!(bench.link().stats().gets_accepted, 2);
}

#[test]
fn a_stalled_line_drops_old_updates_never_an_answer() {
    let mut bench = Bench::new();
    // The line does not drain at all for a while: the schema fills part of the ring.
    let mut published = 0;
    let mut accepted = Vec::new();
    let mut refused = 0;
    let names = ["step", "speed", "motor/on", "label", "limit", "blob"];
    for round in 0..60u32 {
        published = bench.publish();
        let name = names[round as usize % names.len()];
        match bench.rx.receive_all(&get(round, name)) {
            true => accepted.push((round, name)),
            false => unreachable!("a whole frame"),
        }
        bench.server.poll();
    }
    let stats = bench.link().stats();
    assert!(stats.updates_dropped > 0, "{stats:?}");
    // Every update the link received was sent, dropped, or is the one waiting.
    let received = bench.server.stats().updates_delivered as u32;
    assert_eq!(
        stats.updates_sent + stats.updates_dropped + 1,
        received,
        "{stats:?}"
    );
    // Now the line drains: every accepted get has exactly one answer or one refusal.
    let messages = bench.drain_all();
    let mut answered = std::collections::HashMap::new();
    for m in &messages {
        match m {
            Message::Value { index, seq, value } => {
                let name = bench.name(*index);
                assert_eq!(
                    *value,
                    Plant::value_of(*seq as u32, &name),
                    "{name} at #{seq}"
                );
                *answered.entry(name).or_insert(0) += 1;
            }
            Message::Error {
                code: ErrorCode::Busy,
                ..
            } => refused += 1,
            Message::Error { .. } => panic!("{m:?}"),
            _ => {}
        }
    }
    let stats = bench.link().stats();
    assert_eq!(
        stats.answers_sent as usize,
        answered.values().sum::<usize>()
    );
    // A refusal is an error frame, or, when 7 notices already waited for the stalled
    // line, a counted drop (the host's get then times out).
    assert_eq!(
        stats.gets_refused,
        refused + stats.notices_dropped,
        "{stats:?}"
    );
    assert!(refused > 0);
    assert_eq!(
        (stats.gets_accepted + stats.gets_joined + stats.gets_refused) as usize,
        accepted.len(),
        "every get accounted for: {stats:?}"
    );
    assert_eq!(
        stats.gets_accepted, stats.answers_sent,
        "one answer per accepted get"
    );
    // The newest update went last.
    let last = messages.iter().rev().find_map(|m| match m {
        Message::Snapshot {
            seq, answer: false, ..
        } => Some(*seq),
        _ => None,
    });
    assert_eq!(last, Some(u64::from(published)));
}

#[test]
fn answers_beyond_the_answer_buffer_are_refused_busy() {
    let mut bench = Bench::new();
    bench.drain_all();
    bench.publish();
    // Nothing polls: the reservations pile up. A whole snapshot reserves line_len(F).
    bench.send(&get(1, "@snapshot"));
    let room_left = A - line_len(F);
    let names = ["step", "speed", "motor/on", "label", "limit", "blob"];
    for (tag, name) in names.iter().enumerate() {
        bench.send(&get(10 + tag as u32, name));
    }
    let stats = bench.rx.stats();
    assert!(
        stats.gets_refused > 0,
        "room for {room_left} bytes only: {stats:?}"
    );
    bench.server.poll();
    let messages = bench.drain_all();
    let busy = messages
        .iter()
        .filter(|m| {
            matches!(
                m,
                Message::Error {
                    code: ErrorCode::Busy,
                    ..
                }
            )
        })
        .count();
    assert_eq!(busy as u32, stats.gets_refused);
    let stats = bench.link().stats();
    assert_eq!(stats.answers_sent, stats.gets_accepted);
    // Room is given back: the same gets now pass.
    for (tag, name) in names.iter().enumerate() {
        bench.send(&get(20 + tag as u32, name));
        bench.server.poll();
        bench.drain_all();
    }
    assert_eq!(bench.link().stats().gets_refused, stats.gets_refused);
}

#[test]
fn garbage_is_counted_and_the_receiver_resynchronises() {
    let mut bench = Bench::new();
    bench.drain_all();
    bench.publish();
    // Garbage, ended by a delimiter (the host's frames start with one).
    let garbage = [0x55u8, 0x12, 0xFF, 0x80, 0x01, 0x02, 0x03];
    bench.send(&garbage);
    bench.send(&get(1, "speed"));
    bench.server.poll();
    let stats = bench.link().stats();
    assert_eq!(stats.rx_garbage_bytes, garbage.len() as u32);
    assert_eq!(stats.rx_bad_frames, 1);
    assert_eq!(stats.gets_accepted, 1);
    // A frame with one bit flipped: counted, skipped; the next one passes.
    let mut bad = get(2, "step");
    bad[3] ^= 0x04;
    assert!(bad.contains(&0));
    bench.send(&bad);
    assert_eq!(bench.link().stats().rx_bad_frames, 2);
    // A run longer than any frame: counted as it comes.
    let long = [0x33u8; 300];
    bench.send(&long);
    assert_eq!(bench.rx.receive(0), Received::Bad);
    bench.send(&get(3, "label"));
    bench.server.poll();
    let stats = bench.link().stats();
    assert_eq!(stats.rx_bad_frames, 3);
    assert_eq!(stats.gets_accepted, 2);
    assert!(stats.rx_garbage_bytes >= (garbage.len() + long.len()) as u32);
}

#[test]
fn a_ping_is_answered_with_the_counters() {
    let mut bench = Bench::new();
    bench.drain_all();
    bench.publish();
    bench.server.poll();
    bench.drain_all();
    bench.send(&encode_ping(77));
    let expected = bench.link().stats();
    let messages = bench.drain_all();
    let [Message::Status { nonce: 77, stats }] = &messages[..] else {
        panic!("{messages:?}");
    };
    assert_eq!(stats.updates_sent, 1);
    assert_eq!(stats.schemas_sent, 1);
    assert_eq!(stats.rx_frames, expected.rx_frames);
    assert_eq!(stats.tx_bytes, expected.tx_bytes);
}

#[test]
fn split_refuses_what_does_not_fit() {
    let plant = Plant::at(1);
    let mut few = Storage::<Plant, 3, TX>::new();
    assert!(matches!(
        few.split::<F, A>(&plant),
        Err(SplitError::TooManyKeys)
    ));
    let mut storage = Storage::<Plant, K, TX>::new();
    assert!(matches!(
        storage.split::<F, 64>(&plant),
        Err(SplitError::AnswerBufferTooSmall)
    ));
    assert!(matches!(
        storage.split::<16, A>(&plant),
        Err(SplitError::FrameTooSmall)
    ));
    let mut small_ring = Storage::<Plant, K, 64>::new();
    assert!(matches!(
        small_ring.split::<F, A>(&plant),
        Err(SplitError::RingTooSmall)
    ));
    assert!(storage.split::<F, A>(&plant).is_ok());
    // A value type the schema cannot describe is allowed (it travels as bytes).
    assert_eq!(Plant::value_type(&PlantKey::Blob), Some(ValueType::Other));
}

/// The Cortex-M example's state: a step and 15 `f32` channels, each a key.
#[derive(Clone, Copy, Debug, PartialEq, IDict)]
struct Channels {
    step: u32,
    ch1: f32,
    ch2: f32,
    ch3: f32,
    ch4: f32,
    ch5: f32,
    ch6: f32,
    ch7: f32,
    ch8: f32,
    ch9: f32,
    ch10: f32,
    ch11: f32,
    ch12: f32,
    ch13: f32,
    ch14: f32,
    ch15: f32,
}

impl Channels {
    fn at(step: u32) -> Self {
        let ch = |k: u32| (step.wrapping_mul(7 * k - 6) % 1000) as f32 * 0.5;
        Self {
            step,
            ch1: ch(1),
            ch2: ch(2),
            ch3: ch(3),
            ch4: ch(4),
            ch5: ch(5),
            ch6: ch(6),
            ch7: ch(7),
            ch8: ch(8),
            ch9: ch(9),
            ch10: ch(10),
            ch11: ch(11),
            ch12: ch(12),
            ch13: ch(13),
            ch14: ch(14),
            ch15: ch(15),
        }
    }
}

#[test]
fn frame_sizes_on_the_line_are_the_readmes() {
    type ChannelsLink = Link<'static, Channels, 16, 96, 256>;
    let storage = Box::leak(Box::new(Storage::<Channels, 16, 512>::new()));
    let Parts { link, mut tx, rx } = storage.split::<96, 256>(&Channels::at(0)).unwrap();
    let (mut publisher, mut server) = Builder::new(Channels::at(0))
        .capacity::<16, 1>()
        .build::<ChannelsLink>()
        .unwrap();
    let id = server
        .add_connection(link)
        .unwrap_or_else(|_| panic!("a free slot"));
    let mut rx = rx.attach(server.requester(), id);
    let drain = |tx: &mut LinkTx<'static, 16>| {
        let mut bytes = [0u8; 2048];
        let n = tx.fill(&mut bytes);
        bytes[..n].to_vec()
    };
    server.connection_mut(id).unwrap().flush();
    drain(&mut tx);
    // Sequence numbers (and steps) 128 to 16 383 take two bytes.
    for step in 1..=200 {
        publisher.put_update(&Channels::at(step));
    }
    server.poll();
    let update = drain(&mut tx);
    // kind 1 + seq 2 + step 2 + 15 x 4 + CRC 2 = 67; COBS 1; delimiter 1.
    assert_eq!(update.len(), 69);
    assert_eq!(update.iter().filter(|&&b| b == 0).count(), 1);
    let get = encode_get(1, "ch12").unwrap();
    // 0x00, then kind 1 + tag 1 + name 1 + 4 + CRC 2 = 9, COBS 1, delimiter 1.
    assert_eq!(get.len(), 12);
    rx.receive_all(&get);
    server.poll();
    let answer = drain(&mut tx);
    // kind 1 + seq 2 + index 1 + 4 + CRC 2 = 10; COBS 1; delimiter 1.
    assert_eq!(answer.len(), 12);
}

#[test]
fn a_request_the_receiver_did_not_put_breaks_nothing() {
    let mut bench = Bench::new();
    bench.drain_all();
    let step = bench.publish();
    // The firmware asks with the link's id itself: no room was reserved for the answer.
    for key in PlantKey::ALL {
        bench
            .server
            .put_request(queueserver::Request::key(bench.id, key))
            .unwrap();
    }
    bench.server.poll();
    let answers = bench
        .drain_all()
        .into_iter()
        .filter(|m| matches!(m, Message::Value { seq, .. } if *seq == u64::from(step)))
        .count();
    assert_eq!(answers, PlantKey::ALL.len(), "answered, whole frames");
    // The receiver's own gets still pass: the reservations did not go below zero.
    for (tag, name) in ["speed", "label", "@snapshot"].iter().enumerate() {
        bench.send(&get(tag as u32, name));
        bench.server.poll();
        let messages = bench.drain_all();
        assert!(
            messages.iter().any(|m| matches!(
                m,
                Message::Value { .. } | Message::Snapshot { answer: true, .. }
            )),
            "{name}: {messages:?}"
        );
    }
    let stats = bench.link().stats();
    assert_eq!(
        (stats.gets_refused, stats.frames_failed),
        (0, 0),
        "{stats:?}"
    );
}
