//! The bridge from a device to a relay of the core, against a device side in a thread
//! behind a real TCP socket: the relay's sink is handed the device's snapshots, and its
//! askers the device's answers, each the state at its seq; concurrent gets of one key
//! cross the line once; refusals, lost frames and a line that goes down and comes back.

mod common;

use common::{options, until, Sim, State, ONE_ANSWER, WAIT};
use queueserver::runtime::asks::{AskError, Asker};
use queueserver::runtime::relay::{Answered, Sink, Update, Worker};
use queueserver::{IDict, Query, Snapshot};
use queueserver_link::host::{Bridge, DeviceValues, Options, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

/// What an asker is handed.
#[derive(Clone, Debug, PartialEq)]
enum Got {
    Value {
        name: String,
        value: Value,
        seq: u64,
    },
    NotFound {
        name: String,
        seq: u64,
    },
    Snapshot(Arc<Snapshot<DeviceValues>>),
}

type Outcome = Result<Got, AskError>;

/// An asker that sends what it is told to the test.
struct Waiter(Sender<Outcome>);

impl Asker for Waiter {
    type Reply = Got;

    fn answer(self, reply: &Got) {
        let _ = self.0.send(Ok(reply.clone()));
    }

    fn fail(self, error: AskError) {
        let _ = self.0.send(Err(error));
    }
}

/// A sink that keeps every snapshot it is handed and counts the replies it prepares.
struct Keep {
    updates: Arc<Mutex<Vec<Arc<Snapshot<DeviceValues>>>>>,
    prepared: Arc<AtomicUsize>,
}

impl Sink<DeviceValues> for Keep {
    type Asker = Waiter;

    fn prepare(&mut self, answer: Answered<DeviceValues>) -> Got {
        self.prepared.fetch_add(1, Ordering::Relaxed);
        match answer {
            Answered::Value { key, value, seq } => Got::Value {
                name: key,
                value,
                seq,
            },
            Answered::NotFound { key, seq } => Got::NotFound { name: key, seq },
            Answered::Snapshot(snapshot) => Got::Snapshot(snapshot),
        }
    }

    fn update(&mut self, update: &Update<DeviceValues>) {
        self.updates
            .lock()
            .unwrap()
            .push(Arc::clone(update.snapshot()));
    }
}

/// A bridge to `sim` with a [`Keep`] sink on its relay's own thread.
struct Rig {
    bridge: Bridge<Waiter>,
    updates: Arc<Mutex<Vec<Arc<Snapshot<DeviceValues>>>>>,
    prepared: Arc<AtomicUsize>,
    _worker: Worker,
}

impl Rig {
    fn open(sim: &Sim, options: Options) -> Self {
        let bridge = Bridge::<Waiter>::open(&sim.address(), options, 64).unwrap();
        bridge.device().wait_ready(WAIT).unwrap();
        let updates = Arc::new(Mutex::new(Vec::new()));
        let prepared = Arc::new(AtomicUsize::new(0));
        let sink = Keep {
            updates: Arc::clone(&updates),
            prepared: Arc::clone(&prepared),
        };
        bridge.relay().subscribe(true);
        let worker = bridge.relay().spawn("test-sink", sink).unwrap();
        Self {
            bridge,
            updates,
            prepared,
            _worker: worker,
        }
    }

    /// Asks for `query` on the relay; the outcome comes on the receiver.
    fn ask(&self, query: Query<String>) -> Receiver<Outcome> {
        let (tx, rx) = channel();
        self.bridge
            .relay()
            .ask(query, Waiter(tx), Instant::now() + WAIT)
            .unwrap();
        rx
    }

    fn gets_sent(&self) -> u64 {
        self.bridge.device().counters().gets_sent
    }
}

fn key(name: &str) -> Query<String> {
    Query::Key(name.to_owned())
}

/// Checks that `got` is the value of `name` (or, for a snapshot, every value) at its seq.
fn assert_at_seq(got: &Got, name: &str) {
    match got {
        Got::Value {
            name: n,
            value,
            seq,
        } => {
            assert_eq!(n, name);
            assert_eq!(
                *value,
                State::value_of(*seq as u32, name),
                "{name} at #{seq}"
            );
        }
        Got::Snapshot(snapshot) => assert_snapshot(snapshot),
        Got::NotFound { .. } => panic!("{name} not found: {got:?}"),
    }
}

fn assert_snapshot(snapshot: &Snapshot<DeviceValues>) {
    let mut names = Vec::new();
    snapshot.visit(|name, value| {
        assert_eq!(
            *value,
            State::value_of(snapshot.seq() as u32, name),
            "{name} at #{}",
            snapshot.seq()
        );
        names.push(name.clone());
    });
    assert_eq!(names, ["step", "ch1", "ch2"], "the firmware's order");
}

fn outcome(rx: &Receiver<Outcome>) -> Outcome {
    rx.recv_timeout(WAIT).expect("the asker is told")
}

#[test]
fn the_relay_is_handed_each_snapshot_at_its_seq_and_its_reader_the_newest() {
    let sim = Sim::start();
    let rig = Rig::open(&sim, options());
    until("20 updates", || rig.updates.lock().unwrap().len() >= 20);
    let updates = rig.updates.lock().unwrap().clone();
    let mut seq = 0;
    for update in &updates {
        assert!(update.seq() > seq, "in order");
        seq = update.seq();
        assert_snapshot(update);
    }
    let newest = rig.bridge.reader().load_full();
    assert!(newest.seq() >= seq);
    assert_snapshot(&newest);
    let stats = rig.bridge.relay().stats();
    assert!(stats.updates_taken >= 20, "{stats:?}");
}

#[test]
fn concurrent_gets_of_one_name_cross_the_line_once() {
    const ASKERS: usize = 32;
    let sim = Sim::start();
    let rig = Arc::new(Rig::open(&sim, options()));
    // The device takes gets but answers none until told.
    sim.control.hold.store(true, Ordering::Release);
    let before = rig.gets_sent();
    let barrier = Arc::new(Barrier::new(ASKERS));
    let askers: Vec<_> = (0..ASKERS)
        .map(|_| {
            let (rig, barrier) = (Arc::clone(&rig), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                let rx = rig.ask(key("ch1"));
                outcome(&rx)
            })
        })
        .collect();
    until("every ask outstanding", || {
        rig.bridge.relay().asks().outstanding() == ASKERS
    });
    until("the get on the device", || sim.stats().gets_accepted == 1);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(
        rig.gets_sent() - before,
        1,
        "one GET frame for {ASKERS} askers"
    );
    sim.control.hold.store(false, Ordering::Release);
    let outcomes: Vec<Got> = askers
        .into_iter()
        .map(|asker| asker.join().unwrap().unwrap())
        .collect();
    for got in &outcomes {
        assert_at_seq(got, "ch1");
        assert_eq!(*got, outcomes[0], "one answer for all");
    }
    assert_eq!(rig.prepared.load(Ordering::Relaxed), 1, "prepared once");
    let stats = sim.stats();
    assert_eq!(
        (stats.gets_accepted, stats.gets_joined),
        (1, 0),
        "{stats:?}"
    );
    let asks = rig.bridge.relay().asks().stats();
    assert_eq!((asks.requests_sent, asks.answered), (1, ASKERS as u64));
}

#[test]
fn the_whole_snapshot_and_an_unknown_name() {
    let sim = Sim::start();
    let rig = Rig::open(&sim, options());
    let got = outcome(&rig.ask(Query::All)).unwrap();
    assert!(matches!(got, Got::Snapshot(_)), "{got:?}");
    assert_at_seq(&got, "@snapshot");
    // The relay's askers are not limited to the schema: the device refuses the name, and
    // the askers are told it has none.
    let seen = rig.bridge.reader().load().seq();
    match outcome(&rig.ask(key("torque"))).unwrap() {
        Got::NotFound { name, seq } => {
            assert_eq!(name, "torque");
            assert!(
                seq >= seen,
                "searched in the newest snapshot: #{seq} < #{seen}"
            );
        }
        other => panic!("not found expected: {other:?}"),
    }
    until("the refusal counted", || sim.stats().gets_refused == 1);
    // A name that cannot go on the wire at all.
    let long = "x".repeat(65);
    assert!(matches!(
        outcome(&rig.ask(key(&long))),
        Ok(Got::NotFound { .. })
    ));
    for name in ["step", "ch1", "ch2"] {
        assert_at_seq(&outcome(&rig.ask(key(name))).unwrap(), name);
    }
}

#[test]
fn a_get_refused_as_busy_is_sent_again() {
    // Room for one answer: a get of `@snapshot` in flight leaves none for another.
    let sim = Sim::start_with::<ONE_ANSWER>();
    let rig = Rig::open(&sim, options());
    sim.control.hold.store(true, Ordering::Release);
    let all = rig.ask(Query::All);
    until("the snapshot's get on the device", || {
        sim.stats().gets_accepted == 1
    });
    let ch2 = rig.ask(key("ch2"));
    until("a refusal", || sim.stats().gets_refused >= 1);
    sim.control.hold.store(false, Ordering::Release);
    assert_at_seq(&outcome(&all).unwrap(), "@snapshot");
    assert_at_seq(&outcome(&ch2).unwrap(), "ch2");
    assert!(rig.gets_sent() >= 3, "the busy get sent again");
}

#[test]
fn a_lost_answer_is_asked_for_again() {
    let sim = Sim::start();
    let options = Options {
        resend_after: Duration::from_millis(200),
        ..options()
    };
    let rig = Rig::open(&sim, options);
    sim.control.hold.store(true, Ordering::Release);
    let before = rig.gets_sent();
    let ch1 = rig.ask(key("ch1"));
    until("the get on the device", || sim.stats().gets_accepted == 1);
    // The answer goes out while the line drops what the device sends (shorter than
    // `dead_after`: the line stays up).
    sim.control.mute.store(true, Ordering::Release);
    sim.control.hold.store(false, Ordering::Release);
    until("the answer sent", || sim.stats().answers_sent == 1);
    std::thread::sleep(Duration::from_millis(20));
    sim.control.mute.store(false, Ordering::Release);
    assert_at_seq(&outcome(&ch1).unwrap(), "ch1");
    // Once at least: on a loaded machine `resend_after` may also pass while the device
    // holds the get, and the device joins the second copy to the first.
    let sent = rig.gets_sent() - before;
    assert!(sent >= 2, "sent again after resend_after: {sent} sent");
    assert_eq!(
        rig.bridge.device().counters().disconnects,
        0,
        "sent again on a line that stayed up"
    );
}

#[test]
fn gets_wait_for_a_line_that_comes_back() {
    let sim = Sim::start();
    let rig = Rig::open(&sim, options());
    sim.control.hold.store(true, Ordering::Release);
    let ch2 = rig.ask(key("ch2"));
    until("the get on the device", || sim.stats().gets_accepted == 1);
    // The line goes silent: the host declares it dead, its answer is lost.
    sim.control.mute.store(true, Ordering::Release);
    rig.bridge
        .device()
        .wait_connection(false, WAIT)
        .expect("the silence noticed");
    sim.control.hold.store(false, Ordering::Release);
    // Asked while the line is down: it waits for the line.
    let step = rig.ask(key("step"));
    std::thread::sleep(Duration::from_millis(50));
    assert!(step.try_recv().is_err(), "no answer while the line is down");
    sim.control.mute.store(false, Ordering::Release);
    rig.bridge
        .device()
        .wait_connection(true, WAIT)
        .expect("the line back");
    assert_at_seq(&outcome(&ch2).unwrap(), "ch2");
    assert_at_seq(&outcome(&step).unwrap(), "step");
    let counters = rig.bridge.device().counters();
    assert!(
        counters.disconnects >= 1 && counters.connects >= 2,
        "{counters:?}"
    );
}

#[test]
fn closing_the_bridge_ends_the_asks_still_waiting() {
    let sim = Sim::start();
    let rig = Rig::open(&sim, options());
    sim.control.hold.store(true, Ordering::Release);
    let ch1 = rig.ask(key("ch1"));
    until("the get on the device", || sim.stats().gets_accepted == 1);
    let Rig {
        bridge, _worker, ..
    } = rig;
    let relay = bridge.relay().clone();
    bridge.close();
    assert_eq!(outcome(&ch1), Err(AskError::Closed));
    // Later asks are refused at once.
    let (tx, _rx) = channel();
    let refused = relay
        .ask(key("ch1"), Waiter(tx), Instant::now() + WAIT)
        .unwrap_err();
    assert_eq!(refused.error, AskError::Closed);
    drop(_worker);
}
