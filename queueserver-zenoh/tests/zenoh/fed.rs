//! `Zenoh::publish`: a relay fed by hand (as a device's line feeds one) published on the
//! same wire as a server: values and snapshots at their seq, gets through the relay's
//! upstream (one request for concurrent gets of one key), and a computation that stops
//! answering and comes back (`set_live`): its token goes and comes, gets meanwhile get an
//! error reply at once.

use crate::common::{peer, peer_of, unix_endpoint, wait_until, Rig};
use queueserver::runtime::asks::{Refusal, Upstream};
use queueserver::runtime::relay::{Feed, Relay};
use queueserver::{IDict, Query, Response, Snapshot, Store};
use queueserver_zenoh::{wire, Error, GetAsker, Options, Zenoh};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use zenoh::sample::SampleKind;
use zenoh::{Session, Wait};

const P: &str = "test/fed";
const LIMIT: Duration = Duration::from_secs(10);

type Key = <Rig as IDict>::Key;

/// The relay's upstream: hands each request to the feeding thread.
struct Requests(Mutex<Sender<Query<Key>>>);

impl Upstream<Key> for Requests {
    fn put(&self, query: Query<Key>) -> Result<(), Refusal> {
        self.0
            .lock()
            .unwrap()
            .send(query)
            .map_err(|_| Refusal::Detached)
    }

    fn is_closed(&self) -> bool {
        false
    }
}

/// What the test tells the feeding thread.
#[derive(Default)]
struct Control {
    stop: AtomicBool,
    /// Take requests, answer none, while set.
    hold: AtomicBool,
    requests: Mutex<Vec<Query<Key>>>,
}

/// Publishes `Rig::at(seq)` every 2 ms into a store and the relay's feed, and answers the
/// relay's requests from the newest snapshot: what a device's line does.
fn feed(mut feed: Feed<Rig>, store: Store<Rig>, requests: Receiver<Query<Key>>, control: &Control) {
    let mut waiting = Vec::new();
    let mut seq = 0;
    while !control.stop.load(Ordering::Acquire) {
        seq += 1;
        let snapshot = Arc::new(Snapshot::new(seq, Rig::at(seq)));
        store.store(Arc::clone(&snapshot));
        if feed.wants_updates() {
            feed.update(&snapshot).unwrap();
        }
        for query in requests.try_iter() {
            control.requests.lock().unwrap().push(query.clone());
            waiting.push(query);
        }
        if !control.hold.load(Ordering::Acquire) {
            for query in waiting.drain(..) {
                match &query {
                    Query::Key(key) => {
                        let value = snapshot.get(key).unwrap();
                        feed.answer(Response::Value {
                            key,
                            value: &value,
                            seq,
                        })
                        .unwrap();
                    }
                    Query::All => feed.answer(Response::Snapshot(&snapshot)).unwrap(),
                }
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

struct Fed {
    zenoh: Zenoh<Rig>,
    other: Session,
    control: Arc<Control>,
    feeder: Option<JoinHandle<()>>,
    _computation: Session,
    _socket: crate::common::SocketFile,
}

impl Drop for Fed {
    fn drop(&mut self) {
        self.control.stop.store(true, Ordering::Release);
        if let Some(feeder) = self.feeder.take() {
            feeder.join().unwrap();
        }
    }
}

fn fed() -> Fed {
    let (endpoint, socket) = unix_endpoint("fed");
    let computation = peer(&[&endpoint], &[]);
    let store = Store::new(Snapshot::new(0, Rig::at(0)));
    let (tx, rx) = channel();
    let (relay, feed_half) =
        Relay::<Rig, GetAsker>::fed(Requests(Mutex::new(tx)), Some(store.reader()), 64);
    let zenoh = Zenoh::publish(relay, &computation, P, Options::new()).unwrap();
    let control = Arc::new(Control::default());
    let feeder = {
        let control = Arc::clone(&control);
        std::thread::spawn(move || feed(feed_half, store, rx, &control))
    };
    let other = peer_of(&endpoint);
    Fed {
        zenoh,
        other,
        control,
        feeder: Some(feeder),
        _computation: computation,
        _socket: socket,
    }
}

/// The replies to a get of `key`: `Ok((key, json, seq))` or `Err(text)`.
fn get(session: &Session, key: &str) -> Vec<Result<(String, String, u64), String>> {
    let replies = session.get(key).timeout(LIMIT).wait().unwrap();
    let mut out = Vec::new();
    while let Ok(reply) = replies.recv() {
        out.push(match reply.result() {
            Ok(sample) => Ok((
                sample.key_expr().to_string(),
                sample.payload().try_to_string().unwrap().into_owned(),
                wire::seq_of(sample.attachment()).expect("a seq"),
            )),
            Err(error) => Err(error.payload().try_to_string().unwrap().into_owned()),
        });
    }
    out
}

/// Waits until a get of `key` has a reply: the peers have met.
fn until_answered(session: &Session, key: &str) {
    wait_until(LIMIT, "an answer", || {
        get(session, key).iter().any(Result::is_ok)
    });
}

#[test]
fn a_fed_relay_is_on_the_same_wire_as_a_server() {
    let f = fed();
    until_answered(&f.other, &format!("{P}/half"));

    // Values on P/<name>, each the value at the seq it came with.
    let heard = Arc::new(Mutex::new(Vec::new()));
    let _subscriber = {
        let heard = Arc::clone(&heard);
        f.other
            .declare_subscriber(format!("{P}/**"))
            .callback(move |sample| {
                let name = sample.key_expr().as_str()[P.len() + 1..].to_owned();
                let json = sample.payload().try_to_string().unwrap().into_owned();
                let seq = wire::seq_of(sample.attachment()).unwrap();
                heard.lock().unwrap().push((name, json, seq));
            })
            .wait()
            .unwrap()
    };
    wait_until(LIMIT, "values heard", || heard.lock().unwrap().len() >= 40);
    for (name, json, seq) in heard.lock().unwrap().iter() {
        assert_eq!(*json, Rig::json_at(name, *seq), "{name} at #{seq}");
    }

    // Gets of a name, of every name, of the snapshot; an unknown name.
    for reply in get(&f.other, &format!("{P}/**")) {
        let (key, json, seq) = reply.unwrap();
        assert_eq!(json, Rig::json_at(&key[P.len() + 1..], seq));
    }
    let snapshot = get(&f.other, &format!("{P}/@snapshot"));
    let (_, json, seq) = snapshot[0].clone().unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(parsed["seq"], seq);
    assert_eq!(parsed["values"]["count"], seq);
    assert_eq!(
        get(&f.other, &format!("{P}/torque")),
        [Err(format!(
            "unknown name: {P}/torque names no value under {P}"
        ))]
    );
}

#[test]
fn concurrent_gets_of_one_key_are_one_request_upstream() {
    const GETS: usize = 16;
    let f = fed();
    until_answered(&f.other, &format!("{P}/half"));
    f.control.requests.lock().unwrap().clear();
    f.control.hold.store(true, Ordering::Release);
    let other = f.other.clone();
    let gets: Vec<_> = (0..GETS)
        .map(|_| {
            let other = other.clone();
            std::thread::spawn(move || get(&other, &format!("{P}/motor/speed")))
        })
        .collect();
    wait_until(LIMIT, "every get waiting", || {
        f.zenoh.ask_stats().outstanding == GETS as u64
    });
    f.control.hold.store(false, Ordering::Release);
    let replies: Vec<_> = gets
        .into_iter()
        .map(|get| get.join().unwrap().remove(0).unwrap())
        .collect();
    for (key, json, seq) in &replies {
        assert_eq!(key, &format!("{P}/motor/speed"));
        assert_eq!(*json, Rig::json_at("motor/speed", *seq));
        assert_eq!(*seq, replies[0].2, "one answer for every get");
    }
    assert_eq!(f.control.requests.lock().unwrap().len(), 1);
}

#[test]
fn a_computation_that_stops_answering_loses_its_token_and_gets_an_error_at_once() {
    let f = fed();
    until_answered(&f.other, &format!("{P}/half"));
    let tokens = Arc::new(Mutex::new(Vec::new()));
    let _alive = {
        let tokens = Arc::clone(&tokens);
        f.other
            .liveliness()
            .declare_subscriber(P)
            .history(true)
            .callback(move |sample| tokens.lock().unwrap().push(sample.kind()))
            .wait()
            .unwrap()
    };
    wait_until(LIMIT, "the token", || {
        *tokens.lock().unwrap() == [SampleKind::Put]
    });

    f.zenoh.set_live(false).unwrap();
    assert!(!f.zenoh.is_live());
    wait_until(LIMIT, "the token gone", || {
        tokens.lock().unwrap().last() == Some(&SampleKind::Delete)
    });
    let started = std::time::Instant::now();
    assert_eq!(
        get(&f.other, &format!("{P}/half")),
        [Err(
            "not live: the computation does not answer now".to_owned()
        )]
    );
    assert!(started.elapsed() < Duration::from_secs(5), "at once");
    assert!(f.zenoh.stats().gets_refused >= 1);

    f.zenoh.set_live(true).unwrap();
    wait_until(LIMIT, "the token back", || {
        tokens.lock().unwrap().last() == Some(&SampleKind::Put)
    });
    let (_, json, seq) = get(&f.other, &format!("{P}/half")).remove(0).unwrap();
    assert_eq!(json, Rig::json_at("half", seq));
}

#[test]
fn a_relay_without_a_reader_cannot_be_published() {
    let (endpoint, _socket) = unix_endpoint("fed-no-reader");
    let session = peer(&[&endpoint], &[]);
    let (tx, _rx) = channel();
    let (relay, _feed) = Relay::<Rig, GetAsker>::fed(Requests(Mutex::new(tx)), None, 8);
    assert!(matches!(
        Zenoh::publish(relay, &session, P, Options::new()),
        Err(Error::NoReader)
    ));
}
