//! Every point of the wire contract, on loopback: a computation published in this process
//! and another Zenoh session (a peer over a unix socket) that watches and asks.

use crate::common::{
    peer, peer_of, unix_endpoint, wait_until, AnyConnection, Rig, SocketFile, NAMES,
};
use queueserver::{Builder, Config, NoNotify, Publisher, QueueServer, Runner, StdClock};
use queueserver_zenoh::{wire, Options, Zenoh};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use zenoh::query::Reply;
use zenoh::sample::{Sample, SampleKind};
use zenoh::{Session, Wait};

const P: &str = "test/rig";
const LIMIT: Duration = Duration::from_secs(10);

type Server = QueueServer<Rig, AnyConnection>;

/// A computation published under `P` by a peer listening on a unix socket, and another
/// peer connected to it.
struct Fixture {
    publisher: Publisher<Rig>,
    server: Server,
    zenoh: Zenoh<Rig>,
    other: Session,
    computation: Session,
    _socket: SocketFile,
}

fn fixture(options: Options) -> Fixture {
    let (endpoint, socket) = unix_endpoint("contract");
    let computation = peer(&[&endpoint], &[]);
    let (publisher, mut server) = Server::new(Rig::default());
    let zenoh = Zenoh::attach(&mut server, &computation, P, options).unwrap();
    let other = peer_of(&endpoint);
    Fixture {
        publisher,
        server,
        zenoh,
        other,
        computation,
        _socket: socket,
    }
}

impl Fixture {
    /// Publishes `Rig::at(seq)` for the next seq, polls, and waits until the sender has
    /// published it. Returns the seq.
    fn step(&mut self) -> u64 {
        let seq = self.publisher.published() + 1;
        self.publish(&Rig::at(seq))
    }

    fn publish(&mut self, rig: &Rig) -> u64 {
        self.publisher.put_update(rig);
        self.server.poll();
        let zenoh = &self.zenoh;
        wait_until(LIMIT, "the sender to publish", || {
            let s = zenoh.stats();
            s.snapshots_published + s.snapshots_overwritten == s.snapshots_offered
        });
        self.publisher.published()
    }
}

/// What a subscriber received.
#[derive(Clone, Debug, PartialEq)]
struct Got {
    key: String,
    json: String,
    encoding: String,
    seq: Option<u64>,
    kind: SampleKind,
}

impl From<&Sample> for Got {
    fn from(sample: &Sample) -> Self {
        Self {
            key: sample.key_expr().to_string(),
            json: sample.payload().try_to_string().unwrap().into_owned(),
            encoding: sample.encoding().to_string(),
            seq: wire::seq_of(sample.attachment()),
            kind: sample.kind(),
        }
    }
}

fn subscribe(session: &Session, key: &str) -> (Arc<Mutex<Vec<Got>>>, impl Sized) {
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&got);
    let subscriber = session
        .declare_subscriber(key)
        .callback(move |sample| sink.lock().unwrap().push(Got::from(&sample)))
        .wait()
        .unwrap();
    (got, subscriber)
}

/// Publishes until the subscriber hears something: the declarations have met.
fn until_heard(fixture: &mut Fixture, got: &Mutex<Vec<Got>>) {
    let deadline = std::time::Instant::now() + LIMIT;
    while got.lock().unwrap().is_empty() {
        assert!(std::time::Instant::now() < deadline, "nothing heard");
        fixture.step();
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn changed_values_are_put_as_json_with_their_seq_and_nothing_else() {
    let mut f = fixture(Options::new());
    let (values, _sub) = subscribe(&f.other, &format!("{P}/**"));
    until_heard(&mut f, &values);
    let base = f.publisher.published();
    // Settle: everything of the warm-up is in.
    std::thread::sleep(Duration::from_millis(200));
    values.lock().unwrap().clear();

    // Only `count` changes, then only `motor/speed`, then nothing.
    let mut rig = Rig::at(base);
    rig.count = 1000;
    let first = f.publish(&rig);
    rig.speed = -2.5;
    let second = f.publish(&rig);
    let third = f.publish(&rig);
    assert_eq!(third, second + 1);
    wait_until(LIMIT, "two values", || values.lock().unwrap().len() >= 2);
    std::thread::sleep(Duration::from_millis(300));

    let json = "application/json".to_owned();
    let expected = [
        Got {
            key: format!("{P}/count"),
            json: "1000".into(),
            encoding: json.clone(),
            seq: Some(first),
            kind: SampleKind::Put,
        },
        Got {
            key: format!("{P}/motor/speed"),
            json: "-2.5".into(),
            encoding: json,
            seq: Some(second),
            kind: SampleKind::Put,
        },
    ];
    assert_eq!(*values.lock().unwrap(), expected);
    let stats = f.zenoh.stats();
    assert_eq!(stats.puts_failed, 0);
}

#[test]
fn the_first_snapshot_puts_every_value_and_the_snapshot_goes_on_its_own_chunk() {
    let mut f = fixture(Options::new());
    let (values, _values) = subscribe(&f.other, &format!("{P}/**"));
    let (snapshots, _snapshots) = subscribe(&f.other, &format!("{P}/@snapshot"));
    until_heard(&mut f, &snapshots);
    let seq = f.step();
    wait_until(LIMIT, "the snapshot", || {
        snapshots.lock().unwrap().iter().any(|g| g.seq == Some(seq))
    });
    let snapshot = snapshots
        .lock()
        .unwrap()
        .iter()
        .find(|g| g.seq == Some(seq))
        .cloned()
        .unwrap();
    assert_eq!(snapshot.key, format!("{P}/@snapshot"));
    assert_eq!(snapshot.encoding, "application/json");
    let parsed: serde_json::Value = serde_json::from_str(&snapshot.json).unwrap();
    let expected = serde_json::json!({
        "seq": seq,
        "values": {"count": seq, "half": seq as f64 / 2.0, "motor/speed": seq as f64 * 0.25, "motor/on": seq.is_multiple_of(2)},
    });
    assert_eq!(parsed, expected);

    // The subscriber of P/** heard every value (the first delivery puts them all, each
    // with the seq it came with) and never the snapshot.
    std::thread::sleep(Duration::from_millis(200));
    let values = values.lock().unwrap();
    assert!(values.iter().all(|g| !g.key.ends_with("@snapshot")));
    for name in NAMES {
        let key = format!("{P}/{name}");
        let heard: Vec<&Got> = values.iter().filter(|g| g.key == key).collect();
        assert!(!heard.is_empty(), "nothing heard on {key}");
        for g in heard {
            assert_eq!(g.json, Rig::json_at(name, g.seq.unwrap()), "{key}");
        }
    }
}

/// A reply: (key, JSON, seq), or the error reply's text.
type Outcome = Result<(String, String, Option<u64>), String>;

/// Every reply of a get, sorted.
fn get(session: &Session, key: &str) -> Vec<Outcome> {
    let replies = session.get(key).timeout(LIMIT).wait().unwrap();
    let mut got = Vec::new();
    while let Ok(reply) = replies.recv() {
        got.push(outcome(reply));
    }
    got.sort();
    got
}

fn outcome(reply: Reply) -> Outcome {
    match reply.into_result() {
        Ok(sample) => {
            assert_eq!(sample.encoding().to_string(), "application/json");
            Ok((
                sample.key_expr().to_string(),
                sample.payload().try_to_string().unwrap().into_owned(),
                wire::seq_of(sample.attachment()),
            ))
        }
        Err(error) => {
            assert_eq!(error.encoding().to_string(), "text/plain");
            Err(error.payload().try_to_string().unwrap().into_owned())
        }
    }
}

/// A computation polled every millisecond by a runner.
struct Running {
    runner: Runner<Rig, AnyConnection, NoNotify, queueserver::NoClock, 64, 8>,
    zenoh: Zenoh<Rig>,
    other: Session,
    publisher: Publisher<Rig>,
    _computation: Session,
    _socket: SocketFile,
}

fn running(options: Options) -> Running {
    let Fixture {
        publisher,
        server,
        zenoh,
        other,
        computation,
        _socket,
    } = fixture(options);
    Running {
        runner: Runner::every(server, Duration::from_millis(1)).unwrap(),
        zenoh,
        other,
        publisher,
        _computation: computation,
        _socket,
    }
}

#[test]
fn gets_by_name_wildcard_and_snapshot_reply_on_concrete_keys() {
    let Running {
        runner,
        zenoh,
        other,
        mut publisher,
        ..
    } = running(Options::new());
    for seq in 1..=7 {
        publisher.put_update(&Rig::at(seq));
    }
    let seq = Some(7);
    let key = |name: &str| format!("{P}/{name}");
    // Wait for the queryable to be known to the other peer.
    wait_until(LIMIT, "a reply", || !get(&other, &key("count")).is_empty());

    assert_eq!(
        get(&other, &key("count")),
        [Ok((key("count"), "7".into(), seq))]
    );
    assert_eq!(
        get(&other, &key("motor/*")),
        [
            Ok((key("motor/on"), "false".into(), seq)),
            Ok((key("motor/speed"), "1.75".into(), seq)),
        ]
    );
    let all = get(&other, &format!("{P}/**"));
    let mut expected: Vec<_> = NAMES
        .iter()
        .map(|name| Ok((key(name), Rig::json_at(name, 7), seq)))
        .collect();
    expected.sort();
    assert_eq!(all, expected);
    let snapshot = get(&other, &key("@snapshot"));
    assert_eq!(snapshot.len(), 1);
    let (k, json, s) = snapshot[0].clone().unwrap();
    assert_eq!((k.as_str(), s), (key("@snapshot").as_str(), seq));
    let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(parsed["seq"], 7);
    assert_eq!(parsed["values"]["motor/speed"], 1.75);
    // A wildcard across prefixes finds the names under this one.
    assert_eq!(
        get(&other, "test/*/count"),
        [Ok((key("count"), "7".into(), seq))]
    );

    let server = runner.shutdown().unwrap();
    let stats = zenoh.stats();
    assert_eq!(
        (
            stats.gets_unknown,
            stats.gets_refused,
            stats.pending_replies
        ),
        (0, 0, 0)
    );
    assert_eq!(server.stats().requests_orphaned, 0);
}

#[test]
fn an_unknown_name_gets_an_error_reply_and_a_wildcard_matching_nothing_gets_none() {
    let Running {
        runner,
        zenoh,
        other,
        mut publisher,
        ..
    } = running(Options::new());
    publisher.put_update(&Rig::at(1));
    wait_until(LIMIT, "a reply", || {
        !get(&other, &format!("{P}/count")).is_empty()
    });

    let unknown = get(&other, &format!("{P}/torque"));
    assert_eq!(unknown.len(), 1);
    let message = unknown[0].clone().unwrap_err();
    assert!(
        message.contains("unknown name") && message.contains("torque"),
        "{message}"
    );
    assert!(get(&other, &format!("{P}/tor$*")).is_empty());
    let stats = zenoh.stats();
    assert_eq!((stats.gets_unknown, stats.gets_empty), (1, 1));
    // Neither cost the server a request.
    let server = runner.shutdown().unwrap();
    assert_eq!(
        server.stats().requests_accepted,
        zenoh.ask_stats().requests_sent
    );
    assert_eq!(zenoh.ask_stats().asked, 1);
}

#[test]
fn many_concurrent_gets_of_one_key_cost_the_snapshot_few_reads() {
    const GETS: usize = 300;
    let (endpoint, socket) = unix_endpoint("many");
    let computation = peer(&[&endpoint], &[]);
    // Reads at most every 50 ms: the gets that arrive meanwhile are consolidated.
    let (mut publisher, mut server) = Builder::new(Rig::default())
        .clock(StdClock::new())
        .config(Config::new().with_min_request_interval(Duration::from_millis(50)))
        .build::<AnyConnection>()
        .unwrap();
    let zenoh = Zenoh::attach(&mut server, &computation, P, Options::new()).unwrap();
    let other = peer_of(&endpoint);
    publisher.put_update(&Rig::at(1));
    let runner = Runner::every(server, Duration::from_millis(1)).unwrap();
    let key = format!("{P}/count");
    wait_until(LIMIT, "a reply", || !get(&other, &key).is_empty());
    let asked_before = zenoh.ask_stats();

    let pending: Vec<_> = (0..GETS)
        .map(|_| other.get(&key).timeout(LIMIT).wait().unwrap())
        .collect();
    let mut answered = 0;
    for replies in pending {
        while let Ok(reply) = replies.recv() {
            assert_eq!(outcome(reply), Ok((key.clone(), "1".into(), Some(1))));
            answered += 1;
        }
    }
    let server = runner.shutdown().unwrap();
    let asks = zenoh.ask_stats();
    let reads = server.stats().reads;
    let requests = asks.requests_sent - asked_before.requests_sent;
    println!("{GETS} gets answered by {requests} requests; {reads} reads of the snapshot in all");
    assert_eq!(answered, GETS);
    assert_eq!(asks.answered - asked_before.answered, GETS as u64);
    assert!(reads * 10 <= GETS as u64, "{reads} reads for {GETS} gets");
    drop(socket);
}

#[test]
fn past_the_bound_a_get_is_refused_at_once_and_room_comes_back_with_the_replies() {
    let mut f = fixture(Options::new().with_max_gets(4));
    f.step();
    let key = format!("{P}/count");
    // The queryable is known once a get is refused or answered; the poller is ours, so
    // nothing is answered until we poll.
    let first: Vec<_> = (0..10)
        .map(|_| f.other.get(&key).timeout(LIMIT).wait().unwrap())
        .collect();
    let zenoh = &f.zenoh;
    wait_until(LIMIT, "ten gets", || zenoh.stats().gets == 10);
    let stats = zenoh.stats();
    assert_eq!((stats.gets_refused, stats.pending_replies), (6, 4));
    // The six refused have their error already; the four wait for the poller.
    let mut refused = 0;
    let mut waiting = Vec::new();
    for replies in first {
        match replies.recv_timeout(Duration::from_millis(300)) {
            Ok(Some(reply)) => {
                let message = outcome(reply).unwrap_err();
                assert!(message.contains("too many outstanding gets"), "{message}");
                refused += 1;
            }
            _ => waiting.push(replies),
        }
    }
    assert_eq!((refused, waiting.len()), (6, 4));
    // A wildcard needing more room than is left is refused whole.
    let all = get(&f.other, &format!("{P}/**"));
    assert_eq!(all.len(), 1);
    assert!(all[0].clone().unwrap_err().contains("too many"));

    f.server.poll();
    for replies in waiting {
        let reply = replies.recv().unwrap();
        assert_eq!(outcome(reply), Ok((key.clone(), "1".into(), Some(1))));
    }
    let zenoh = &f.zenoh;
    wait_until(LIMIT, "room back", || zenoh.stats().pending_replies == 0);
    // Four names fit again.
    let other = f.other.clone();
    let all = std::thread::spawn(move || get(&other, &format!("{P}/**")));
    wait_until(LIMIT, "the wildcard get", || {
        f.zenoh.stats().pending_replies == 4
    });
    f.server.poll();
    assert_eq!(all.join().unwrap().len(), 4);
    assert_eq!(f.server.stats().reads, 1 + 4);
}

#[test]
fn a_get_the_server_never_answers_ends_with_an_error_at_its_deadline() {
    let mut f = fixture(Options::new().with_get_timeout(Duration::from_millis(300)));
    f.step();
    let started = std::time::Instant::now();
    // Nobody polls: the request stays queued.
    let replies = get(&f.other, &format!("{P}/count"));
    let waited = started.elapsed();
    assert_eq!(replies.len(), 1);
    let message = replies[0].clone().unwrap_err();
    assert!(message.contains("timed out"), "{message}");
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
    let zenoh = &f.zenoh;
    wait_until(LIMIT, "room back", || zenoh.stats().pending_replies == 0);
    assert_eq!(zenoh.ask_stats().expired, 1);
}

#[test]
fn the_liveliness_token_lives_as_long_as_the_attachment() {
    let (endpoint, socket) = unix_endpoint("token");
    let computation = peer(&[&endpoint], &[]);
    let other = peer_of(&endpoint);
    let events: Arc<Mutex<Vec<(String, SampleKind)>>> = Arc::default();
    let sink = Arc::clone(&events);
    let _watch = other
        .liveliness()
        .declare_subscriber("test/**")
        .callback(move |s| {
            sink.lock()
                .unwrap()
                .push((s.key_expr().to_string(), s.kind()))
        })
        .wait()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let listed = |session: &Session| {
        let replies = session
            .liveliness()
            .get("test/**")
            .timeout(LIMIT)
            .wait()
            .unwrap();
        let mut keys: BTreeMap<String, ()> = BTreeMap::new();
        while let Ok(reply) = replies.recv() {
            keys.insert(reply.into_result().unwrap().key_expr().to_string(), ());
        }
        keys.into_keys().collect::<Vec<_>>()
    };
    assert!(listed(&other).is_empty());

    let (_publisher, mut server) = Server::new(Rig::default());
    let zenoh = Zenoh::attach(&mut server, &computation, P, Options::new()).unwrap();
    wait_until(LIMIT, "the token", || {
        events
            .lock()
            .unwrap()
            .contains(&(P.to_owned(), SampleKind::Put))
    });
    assert_eq!(listed(&other), [P]);

    zenoh.close();
    wait_until(LIMIT, "the token to go", || {
        events
            .lock()
            .unwrap()
            .contains(&(P.to_owned(), SampleKind::Delete))
    });
    assert!(listed(&other).is_empty());
    drop(socket);
}

#[test]
fn a_closed_attachment_leaves_the_server_at_its_next_update() {
    let mut f = fixture(Options::new());
    f.step();
    assert_eq!(f.server.connection_count(), 1);
    let Fixture {
        mut publisher,
        mut server,
        zenoh,
        ..
    } = f;
    zenoh.close();
    publisher.put_update(&Rig::at(2));
    server.poll();
    assert_eq!(server.connection_count(), 0);
    let failed = server.take_failed().unwrap();
    assert_eq!(failed.error, queueserver::ConnectionError::Closed);
}

#[test]
fn bad_prefixes_and_nameless_keys_are_refused_with_typed_errors() {
    let (endpoint, socket) = unix_endpoint("bad");
    let session = peer(&[&endpoint], &[]);
    for prefix in ["", "a/*", "a/**/b", "a//b", "a/@x", "/a"] {
        let (_p, mut server) = Server::new(Rig::default());
        let error = Zenoh::attach(&mut server, &session, prefix, Options::new()).unwrap_err();
        assert!(
            matches!(error, queueserver_zenoh::Error::Prefix(_)),
            "{prefix}: {error}"
        );
        assert_eq!(server.connection_count(), 0);
    }
    // A map key that is no valid name cannot go on the wire.
    type Map = BTreeMap<String, f64>;
    let (_p, mut server) = QueueServer::<Map, Box<dyn queueserver::Connection<Map> + Send>>::new(
        Map::from([("a b".to_owned(), 1.0)]),
    );
    let error = Zenoh::attach(&mut server, &session, "x", Options::new()).unwrap_err();
    assert!(
        matches!(error, queueserver_zenoh::Error::Unnamed(_)),
        "{error}"
    );
    drop(socket);
}

#[test]
fn a_running_server_is_published_through_its_runner() {
    let (endpoint, socket) = unix_endpoint("runner");
    let computation = peer(&[&endpoint], &[]);
    let (mut publisher, mut server) = Server::new(Rig::default());
    let (requester, reader) = (server.requester(), server.reader());
    let runner = Runner::every(server, Duration::from_millis(1)).unwrap();
    // The connection joins the server on the poller's thread, while it runs.
    let zenoh = Zenoh::attach_with(
        requester,
        reader,
        &computation,
        P,
        Options::new(),
        |connection| runner.add_connection(connection.into()),
    )
    .unwrap();
    let other = peer_of(&endpoint);
    publisher.put_update(&Rig::at(1));
    let key = format!("{P}/count");
    wait_until(LIMIT, "a reply", || !get(&other, &key).is_empty());
    assert_eq!(get(&other, &key), [Ok((key.clone(), "1".into(), Some(1)))]);
    let (values, _sub) = subscribe(&other, &format!("{P}/**"));
    wait_until(LIMIT, "a put", || {
        publisher.put_update(&Rig::at(publisher.published() + 1));
        std::thread::sleep(Duration::from_millis(5));
        !values.lock().unwrap().is_empty()
    });

    let server = runner.shutdown().unwrap();
    assert_eq!(server.connection_count(), 1);
    assert_eq!(server.connection(zenoh.id().unwrap()).map(|_| ()), Some(()));
    zenoh.close();
    drop(socket);
}

/// Holds `x`; reading `boom` panics: a fault of the IDict, on the poller.
#[derive(Clone, Debug, Default)]
struct Brittle;

impl queueserver::IDict for Brittle {
    type Key = &'static str;
    type Value = f64;

    fn get(&self, key: &&'static str) -> Option<f64> {
        match *key {
            "x" => Some(1.0),
            "boom" => panic!("reading boom"),
            _ => None,
        }
    }

    fn write_name<W: std::fmt::Write + ?Sized>(
        key: &&'static str,
        out: &mut W,
    ) -> Result<(), queueserver::idict::KeyError> {
        queueserver::idict::write_checked(key, out)
    }

    fn visit<F: FnMut(&&'static str, &f64)>(&self, mut f: F) {
        f(&"x", &1.0);
        f(&"boom", &0.0);
    }
}

#[test]
fn a_get_whose_request_the_server_abandons_gets_an_error_reply_at_once() {
    const B: &str = "test/brittle";
    let (endpoint, socket) = unix_endpoint("abandon");
    let computation = peer(&[&endpoint], &[]);
    type BrittleConnection = Box<dyn queueserver::Connection<Brittle> + Send>;
    let (_publisher, mut server) = QueueServer::<Brittle, BrittleConnection>::new(Brittle);
    // A deadline far beyond the abandonment: an error that waited for it says "timed out".
    let options = Options::new().with_get_timeout(Duration::from_secs(5));
    let zenoh = Zenoh::attach(&mut server, &computation, B, options).unwrap();
    let other = peer_of(&endpoint);
    let runner = Runner::every(server, Duration::from_millis(1)).unwrap();
    wait_until(LIMIT, "a reply", || {
        !get(&other, &format!("{B}/x")).is_empty()
    });

    // Reading `boom` panics on the poller: the runner abandons what it had accepted, and
    // stops.
    let replies = get(&other, &format!("{B}/boom"));
    assert_eq!(replies.len(), 1, "{replies:?}");
    let message = replies[0].clone().unwrap_err();
    assert_eq!(message, "abandoned: reading the value panicked");
    wait_until(LIMIT, "the runner to stop", || runner.stopped().is_some());
    let asks = zenoh.ask_stats();
    assert_eq!(
        (asks.abandoned, asks.closed, asks.expired, asks.outstanding),
        (1, 0, 0, 0)
    );
    let zenoh_ref = &zenoh;
    wait_until(LIMIT, "room back", || {
        zenoh_ref.stats().pending_replies == 0
    });
    assert_eq!(zenoh.stats().error_replies, 1);
    let crashed = runner.shutdown().unwrap_err();
    assert_eq!(crashed.server.stats().requests_abandoned, 1);
    zenoh.close();
    drop(socket);
}
