//! A microcontroller's line served by `WebView::publish`: the serial link's simulated
//! device (a device side in a thread behind a TCP socket on 127.0.0.1, the same `Sim` as
//! queueserver-link's tests) opened by a `Bridge` that feeds two relays, the web view's and
//! a second one with a sink of its own. A WebSocket client reads the page's stream: values
//! equal to the device's state at their seq, and answers to its asks; a get of one name
//! asked by the page and by the second relay at once is one GET on the line.

mod common;
#[path = "../../queueserver-link/tests/common/mod.rs"]
mod sim;

use common::{wait_for, Page};
use queueserver::runtime::asks::{AskError, Asker};
use queueserver::runtime::relay::{Answered, Relay, Sink, Update};
use queueserver::{IDict, Query, Snapshot};
use queueserver_link::host::{Bridge, DeviceValues, Value};
use queueserver_web::{Options, ViewAsker, WebView};
use serde_json::{json, Value as Json};
use sim::{Sim, State};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the second relay's asker is handed: the name, value and seq of an answer.
type Got = Result<(String, Option<Value>, u64), AskError>;

/// The second relay's asker: sends what it is told to the test.
struct Waiter(Sender<Got>);

impl Asker for Waiter {
    type Reply = (String, Option<Value>, u64);

    fn answer(self, reply: &Self::Reply) {
        let _ = self.0.send(Ok(reply.clone()));
    }

    fn fail(self, error: AskError) {
        let _ = self.0.send(Err(error));
    }
}

/// The second relay's sink: keeps each snapshot it is handed.
struct Keep(Arc<Mutex<Vec<Arc<Snapshot<DeviceValues>>>>>);

impl Sink<DeviceValues> for Keep {
    type Asker = Waiter;

    fn prepare(&mut self, answer: Answered<DeviceValues>) -> (String, Option<Value>, u64) {
        match answer {
            Answered::Value { key, value, seq } => (key, Some(value), seq),
            Answered::NotFound { key, seq } => (key, None, seq),
            Answered::Snapshot(snapshot) => (String::new(), None, snapshot.seq()),
        }
    }

    fn update(&mut self, update: &Update<DeviceValues>) {
        self.0.lock().unwrap().push(Arc::clone(update.snapshot()));
    }
}

/// The device's value of `name` at `seq`, as the page's JSON has it.
fn json_at(name: &str, seq: u64) -> Json {
    serde_json::to_value(State::value_of(seq as u32, name)).unwrap()
}

/// Checks that a page's update holds the device's state at its seq; returns the seq.
fn check_update(update: &Json) -> u64 {
    let seq = update["seq"].as_u64().expect("a seq");
    let values = update["values"].as_object().expect("values");
    assert_eq!(values.len(), 3, "the device's three values: {update}");
    let state = State::at(seq as u32);
    assert_eq!(values["step"], json!(state.step), "{update}");
    assert_eq!(values["ch1"], json!(state.ch1), "{update}");
    assert_eq!(values["ch2"], json!(state.ch2), "{update}");
    seq
}

/// Reads the page until the answer to ask `id`; checks it is `name`'s value at its seq.
fn check_answer(page: &mut Page, id: u64, name: &str) -> (Json, u64) {
    let answer = loop {
        let message = page.next();
        if message["type"] == "answer" || message["type"] == "error" {
            break message;
        }
    };
    assert_eq!(answer["type"], "answer", "{answer}");
    assert_eq!(answer["id"], json!(id), "{answer}");
    assert_eq!(answer["name"], name, "{answer}");
    assert_eq!(answer["found"], true, "{answer}");
    let seq = answer["seq"].as_u64().expect("a seq");
    assert_eq!(answer["value"], json_at(name, seq), "{answer}");
    (answer["value"].clone(), seq)
}

/// The simulated device, its bridge, the web view on its own relay, and a second relay
/// with a [`Keep`] sink.
struct Rig {
    sim: Sim,
    bridge: Bridge<Waiter>,
    view: WebView<DeviceValues>,
    kept: Arc<Mutex<Vec<Arc<Snapshot<DeviceValues>>>>>,
    _worker: queueserver::runtime::relay::Worker,
}

impl Rig {
    fn start() -> Self {
        let sim = Sim::start();
        let bridge = Bridge::<Waiter>::open(&sim.address(), sim::options(), 64).unwrap();
        bridge.device().wait_ready(sim::WAIT).unwrap();
        let options = Options::new();
        let relay: Relay<DeviceValues, ViewAsker> = bridge.add_relay(options.total_asks());
        let view = WebView::publish(relay, options).unwrap();
        let kept = Arc::new(Mutex::new(Vec::new()));
        bridge.relay().subscribe(true);
        let worker = bridge
            .relay()
            .spawn("test-sink", Keep(Arc::clone(&kept)))
            .unwrap();
        // The first snapshot pushed: a page is greeted with it.
        wait_for("a snapshot", || bridge.reader().load().seq() > 0);
        Self {
            sim,
            bridge,
            view,
            kept,
            _worker: worker,
        }
    }

    fn gets_sent(&self) -> u64 {
        self.bridge.device().counters().gets_sent
    }

    /// Asks for `name` on the second relay; the outcome comes on the receiver.
    fn ask(&self, name: &str) -> Receiver<Got> {
        let (tx, rx) = channel();
        self.bridge
            .relay()
            .ask(
                Query::Key(name.to_owned()),
                Waiter(tx),
                Instant::now() + sim::WAIT,
            )
            .unwrap();
        rx
    }
}

#[test]
fn a_page_watches_a_device_beside_another_relay_of_its_line() {
    let rig = Rig::start();
    let mut page = Page::connect(&rig.view);
    let hello = page.next();
    assert_eq!(hello["type"], "hello", "{hello}");
    assert_eq!(hello["names"], json!(["step", "ch1", "ch2"]), "{hello}");
    assert_eq!(hello["running"], true, "{hello}");

    // The greeting (the reader's newest), then the device's snapshots as it pushes them.
    let mut last = 0;
    for _ in 0..20 {
        let seq = check_update(&page.next_of("update"));
        assert!(seq > last, "updates in order: {seq} after {last}");
        last = seq;
    }
    // The second relay is fed by the same line meanwhile.
    wait_for("the second relay's updates", || {
        rig.kept.lock().unwrap().len() >= 20
    });
    for snapshot in rig.kept.lock().unwrap().iter() {
        snapshot.visit(|name, value| {
            assert_eq!(
                *value,
                State::value_of(snapshot.seq() as u32, name),
                "{name} at #{}",
                snapshot.seq()
            );
        });
    }

    // A page's ask goes through the line.
    let before = rig.gets_sent();
    page.send(r#"{"type":"ask","id":1,"name":"ch1"}"#);
    check_answer(&mut page, 1, "ch1");
    assert!(rig.gets_sent() > before, "the ask went to the device");

    // A name the device does not have.
    page.send(r#"{"type":"ask","id":2,"name":"torque"}"#);
    let answer = page.next_of("answer");
    assert_eq!(
        (answer["id"].clone(), answer["found"].clone()),
        (json!(2), json!(false)),
        "{answer}"
    );
}

#[test]
fn a_name_asked_by_a_page_and_by_the_other_relay_is_one_get_on_the_line() {
    let rig = Rig::start();
    let mut page = Page::connect(&rig.view);
    page.next_of("hello");
    // The device takes gets but answers none until told.
    rig.sim
        .control
        .hold
        .store(true, std::sync::atomic::Ordering::Release);
    let before = (rig.gets_sent(), rig.sim.stats());
    page.send(r#"{"type":"ask","id":7,"name":"ch2"}"#);
    wait_for("the page's ask on the relay", || {
        rig.view
            .ask_stats()
            .is_some_and(|asks| asks.outstanding == 1)
    });
    let got = rig.ask("ch2");
    wait_for("the get on the device", || {
        rig.sim.stats().gets_accepted > before.1.gets_accepted
    });
    // Time for a second GET frame, if one were written, to reach the device.
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(
        rig.gets_sent() - before.0,
        1,
        "one GET frame for both relays"
    );
    assert_eq!(rig.bridge.relay().asks().stats().outstanding, 1);

    rig.sim
        .control
        .hold
        .store(false, std::sync::atomic::Ordering::Release);
    let (value, seq) = check_answer(&mut page, 7, "ch2");
    let (name, other, other_seq) = got.recv_timeout(sim::WAIT).unwrap().unwrap();
    assert_eq!(
        (name.as_str(), other_seq),
        ("ch2", seq),
        "one answer for both"
    );
    assert_eq!(serde_json::to_value(other.unwrap()).unwrap(), value);
    let stats = rig.sim.stats();
    assert_eq!(
        (
            stats.gets_accepted - before.1.gets_accepted,
            stats.gets_joined - before.1.gets_joined
        ),
        (1, 0),
        "{stats:?}"
    );
    assert_eq!(rig.gets_sent() - before.0, 1);
}

#[test]
fn closing_the_bridge_tells_the_page_no_more_updates_come() {
    let rig = Rig::start();
    let mut page = Page::connect(&rig.view);
    check_update(&page.next_of("update"));
    let Rig {
        bridge, view, sim, ..
    } = rig;
    bridge.close();
    let status = page.next_of("status");
    assert_eq!(status["running"], false, "{status}");
    wait_for("the view to see it", || !view.stats().running);
    drop(sim);
}
