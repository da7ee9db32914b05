//! The device side's parts in four threads, as in a firmware's four contexts: the
//! computation publishes, the poller polls and flushes the link, the "UART" drains the TX
//! ring into the host's decoder, and the receiver takes gets (and garbage). Every frame
//! must decode, every snapshot and answer must be the state at its seq, and every get
//! must be answered or refused exactly once.

use queueserver::{Builder, IDict};
use queueserver_link::device::Parts;
use queueserver_link::host::{encode_get, Deframer, KeyInfo, Message, Schema, Value};
use queueserver_link::wire::ErrorCode;
use queueserver_link::{Link, Storage};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone, Debug, PartialEq, IDict)]
struct State {
    step: u64,
    a: f32,
    b: i32,
    c: bool,
}

impl State {
    fn at(step: u64) -> Self {
        Self {
            step,
            a: (step % 4096) as f32 * 0.25,
            b: -((step % 1000) as i32),
            c: step % 3 == 1,
        }
    }

    fn value_of(step: u64, index: usize) -> Value {
        let s = Self::at(step);
        match index {
            0 => Value::U64(s.step),
            1 => Value::F32(s.a),
            2 => Value::I64(s.b.into()),
            3 => Value::Bool(s.c),
            _ => panic!("no key {index}"),
        }
    }
}

type StateLink = Link<'static, State, 4, 64, 128>;

#[test]
fn four_contexts_lose_nothing_and_mix_nothing() {
    let storage = Box::leak(Box::new(Storage::<State, 4, 256>::new()));
    let Parts { link, mut tx, rx } = storage.split::<64, 128>(&State::at(0)).unwrap();
    let (mut publisher, mut server) = Builder::new(State::at(0))
        .capacity::<8, 1>()
        .build::<StateLink>()
        .unwrap();
    let id = server
        .add_connection(link)
        .unwrap_or_else(|_| panic!("a free slot"));
    let mut rx = rx.attach(server.requester(), id);
    let stop = Arc::new(AtomicBool::new(false));
    let stop_computing = Arc::new(AtomicBool::new(false));
    let sent_all = Arc::new(AtomicBool::new(false));
    let run_for = Duration::from_millis(1500);

    std::thread::scope(|s| {
        // The computation.
        let computation = {
            let stop = Arc::clone(&stop_computing);
            s.spawn(move || {
                let mut step = 0;
                while !stop.load(Ordering::Acquire) {
                    step += 1;
                    publisher.put_update(&State::at(step));
                    std::thread::yield_now();
                }
            })
        };
        // The poller.
        let poller = {
            let stop = Arc::clone(&stop);
            s.spawn(move || {
                while !stop.load(Ordering::Acquire) {
                    server.poll();
                    server.connection_mut(id).unwrap().flush();
                    std::thread::yield_now();
                }
                server.connection(id).unwrap().stats()
            })
        };
        // The receiver: gets of every key, an unknown name now and then, garbage.
        let receiver = {
            let sent_all = Arc::clone(&sent_all);
            s.spawn(move || {
                let started = Instant::now();
                let mut tag = 0u32;
                let names = ["step", "a", "b", "c"];
                while started.elapsed() < run_for {
                    tag += 1;
                    let name = if tag.is_multiple_of(17) {
                        "nope"
                    } else {
                        names[tag as usize % 4]
                    };
                    rx.receive_all(&encode_get(tag, name).unwrap());
                    if tag.is_multiple_of(29) {
                        rx.receive_all(&[0x13, 0x37, 0xFF, 0x01]);
                    }
                    std::thread::sleep(Duration::from_micros(50));
                }
                // Garbage is a bad frame once a delimiter ends it; after the last get
                // (if its tag was a multiple of 29) only this empty frame does.
                rx.receive_all(&[0]);
                sent_all.store(true, Ordering::Release);
                tag
            })
        };
        // The UART and the host's decoder.
        let host = {
            let stop = Arc::clone(&stop);
            let sent_all = Arc::clone(&sent_all);
            s.spawn(move || {
                let mut deframer = Deframer::new(1024);
                let mut schema: Option<Schema> = None;
                let mut keys: Vec<Option<KeyInfo>> = Vec::new();
                let mut answers = HashMap::new();
                let (mut snapshots, mut refused, mut unknown) = (0u64, 0u32, 0u32);
                let mut last_seq = 0;
                let mut quiet_since = Instant::now();
                let mut buf = [0u8; 97];
                loop {
                    let n = tx.fill(&mut buf);
                    if n == 0 {
                        // Quiet once the gets and the computation stopped and everything
                        // was answered.
                        if sent_all.load(Ordering::Acquire)
                            && quiet_since.elapsed() > Duration::from_millis(300)
                        {
                            stop.store(true, Ordering::Release);
                            break;
                        }
                        std::thread::yield_now();
                        continue;
                    }
                    quiet_since = Instant::now();
                    let mut payloads = Vec::new();
                    deframer.feed(&buf[..n], |p| payloads.push(p.to_vec()));
                    for payload in payloads {
                        match Message::decode(&payload, schema.as_ref()).expect("decodes") {
                            Message::Hello { keys: k, .. } => keys = vec![None; k],
                            Message::Key { index, info } => {
                                keys[index] = Some(info);
                                if keys.iter().all(Option::is_some) {
                                    schema = Some(Schema {
                                        version: 1,
                                        keys: keys.drain(..).flatten().collect(),
                                        max_frame: 64,
                                    });
                                }
                            }
                            Message::Snapshot { seq, values, .. } => {
                                assert!(
                                    seq > last_seq,
                                    "newer each time: #{seq} after #{last_seq}"
                                );
                                last_seq = seq;
                                for (i, v) in values.iter().enumerate() {
                                    assert_eq!(*v, State::value_of(seq, i), "key {i} at #{seq}");
                                }
                                snapshots += 1;
                            }
                            Message::Value { seq, index, value } => {
                                assert_eq!(value, State::value_of(seq, index));
                                *answers.entry(index).or_insert(0u32) += 1;
                            }
                            Message::Error {
                                code: ErrorCode::UnknownName,
                                ..
                            } => unknown += 1,
                            Message::Error {
                                code: ErrorCode::Busy,
                                ..
                            } => refused += 1,
                            other => panic!("unexpected {other:?}"),
                        }
                    }
                }
                assert_eq!(deframer.bad_frames, 0, "the ring holds whole frames only");
                (snapshots, answers.values().sum::<u32>(), refused, unknown)
            })
        };
        let tags = receiver.join().unwrap();
        stop_computing.store(true, Ordering::Release);
        let (snapshots, answers, refused, unknown) = host.join().unwrap();
        computation.join().unwrap();
        let stats = poller.join().unwrap();
        assert!(snapshots > 10, "{snapshots} snapshots");
        assert_eq!(stats.answers_sent, stats.gets_accepted, "{stats:?}");
        assert_eq!(answers, stats.answers_sent, "{stats:?}");
        assert_eq!(
            stats.gets_refused,
            refused + unknown + stats.notices_dropped,
            "{stats:?}"
        );
        assert_eq!(
            stats.gets_accepted + stats.gets_joined + stats.gets_refused,
            tags,
            "every get accounted for: {stats:?}"
        );
        assert!(unknown + stats.notices_dropped >= tags / 17);
        assert_eq!(stats.rx_bad_frames, tags / 29, "{stats:?}");
    });
}
