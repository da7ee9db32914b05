//! The relay: one connection of the server under every watcher, and its worker side.
//!
//! - a sink that panics on the worker's thread fails the relay's connection: counted,
//!   removed, handed back with the panic's message, and every ask told once;
//! - the poller hands over the `Arc` the reader holds (no new copy), and a paced sink is not
//!   woken by updates;
//! - one bound covers the asks outstanding, those being delivered, and requests whose askers
//!   all left; a party standing for several queries is admitted whole or refused whole;
//! - the worker sweeps the deadlines of the asks it serves;
//! - an update's time on the wall clock keeps the order of its monotonic time.

mod common;

use common::{state, State};
use queueserver::runtime::asks::{AskError, Asker};
use queueserver::runtime::relay::{Answered, End, Pace, Relay, RelayConnection, Sink, Update};
use queueserver::{ConnectionError, Query, QueueServer};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PATIENCE: Duration = Duration::from_secs(60);

fn later() -> Instant {
    Instant::now() + PATIENCE
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < PATIENCE, "waited too long for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// What an asker was told, in order.
#[derive(Clone, Debug, Default)]
struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

#[derive(Debug)]
struct Note(Log, &'static str);

impl Asker for Note {
    type Reply = String;

    fn answer(self, reply: &String) {
        self.0
             .0
            .lock()
            .unwrap()
            .push(format!("{}: {reply}", self.1));
    }

    fn fail(self, error: AskError) {
        self.0
             .0
            .lock()
            .unwrap()
            .push(format!("{}: {error:?}", self.1));
    }
}

/// A sink that writes answers as text, records updates, and panics when told to.
#[derive(Default)]
struct Text {
    updates: Arc<Mutex<Vec<u64>>>,
    panic_on_answer: bool,
    /// Ready for updates only this often.
    every: Option<Duration>,
    last: Option<Instant>,
}

impl Sink<State> for Text {
    type Asker = Note;

    fn prepare(&mut self, answer: Answered<State>) -> String {
        assert!(!self.panic_on_answer, "the sink breaks");
        match answer {
            Answered::Value { key, value, seq } => format!("{key}={value}@{seq}"),
            Answered::NotFound { key, seq } => format!("{key}?@{seq}"),
            Answered::Snapshot(s) => format!("all@{}", s.seq()),
        }
    }

    fn update(&mut self, update: &Update<State>) {
        self.last = Some(Instant::now());
        self.updates.lock().unwrap().push(update.seq());
    }

    fn pace(&mut self, now: Instant) -> Pace {
        match (self.every, self.last) {
            (Some(every), Some(last)) if now < last + every => Pace::at(last + every),
            _ => Pace::ready(),
        }
    }
}

type Server = QueueServer<State, RelayConnection<State>>;

fn server() -> (queueserver::Publisher<State>, Server) {
    QueueServer::new(state(1.0, 2.0))
}

#[test]
fn a_sink_that_panics_fails_the_connection_and_tells_every_ask_once() {
    let (mut publisher, mut server) = server();
    let relay = Relay::attach(server.requester(), None, 8, |c| server.add_connection(c)).unwrap();
    let log = Log::default();
    relay
        .ask(Query::Key("x"), Note(log.clone(), "x"), later())
        .unwrap();
    relay
        .ask(Query::Key("v"), Note(log.clone(), "v"), later())
        .unwrap();
    let id = relay.id().unwrap();
    let worker = relay
        .spawn(
            "breaks",
            Text {
                panic_on_answer: true,
                ..Text::default()
            },
        )
        .unwrap();
    let _ = server.poll();
    wait_for("the relay to fail", || {
        matches!(relay.end(), Some(End::Failed(_)))
    });
    worker.join();
    let Some(End::Failed(message)) = relay.end() else {
        unreachable!()
    };
    assert_eq!(message.as_str(), "the sink breaks");

    // The next snapshot fails the connection (a failed relay asks for it): counted,
    // removed, handed back.
    publisher.put_update(&state(5.0, 0.0));
    let _ = server.poll();
    let failed = server.take_failed().expect("the connection failed");
    assert_eq!(
        (failed.id, failed.error),
        (id, ConnectionError::Panicked(message))
    );
    assert_eq!(server.stats().connections_failed, 1);
    assert!(!server.is_attached(id));

    // Each asker told once: the one whose answer was being prepared, and the other.
    let mut told = log.take();
    told.sort();
    assert_eq!(told, ["v: Closed", "x: Closed"]);
    let asks = relay.asks().stats();
    assert_eq!((asks.asked, asks.closed, asks.outstanding), (2, 2, 0));
    assert_eq!(
        relay
            .ask(Query::Key("x"), Note(log, "late"), later())
            .unwrap_err()
            .error,
        AskError::Closed
    );
}

#[test]
fn the_poller_hands_over_the_readers_arc_and_a_paced_sink_is_not_woken_by_updates() {
    let (mut publisher, mut server) = server();
    let reader = server.reader();
    let relay: Relay<State, Note> =
        Relay::attach(server.requester(), Some(reader.clone()), 8, |c| {
            server.add_connection(c)
        })
        .unwrap();
    relay.subscribe(true);
    publisher.put_update(&state(3.0, 0.0));
    let _ = server.poll();
    // No copy: the relay holds the very snapshot the reader does.
    let mut sink = Text::default();
    relay.drain(&mut sink, true);
    assert_eq!(*sink.updates.lock().unwrap(), [1]);
    assert!(Arc::ptr_eq(&relay.latest().unwrap(), &reader.load_full()));

    // A worker that sleeps through updates costs the poller no wake-up per update.
    let wakes = Arc::new(AtomicUsize::new(0));
    let waker = std::task::Waker::from(Arc::new(CountWakes(Arc::clone(&wakes))));
    let mut slot = None;
    assert!(!relay.ready_or_register(&mut slot, &waker, false));
    for step in 2..=100 {
        publisher.put_update(&state(f64::from(step), 0.0));
        let _ = server.poll();
    }
    assert_eq!(wakes.load(Ordering::SeqCst), 0);
    let stats = relay.stats();
    assert_eq!((stats.updates_offered, stats.updates_superseded), (100, 98));
    // One that waits for updates is woken by the next one.
    assert!(relay.ready_or_register(&mut slot, &waker, true));
}

/// Counts its wakes.
struct CountWakes(Arc<AtomicUsize>);

impl std::task::Wake for CountWakes {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn one_bound_covers_asks_orphans_and_whole_parties() {
    let (_publisher, mut server) = server();
    let relay = Relay::attach(server.requester(), None, 3, |c| server.add_connection(c)).unwrap();
    let log = Log::default();
    // Two queries at once, and a third alone: the bound of three is reached.
    relay
        .ask_all(
            vec![
                (Query::Key("x"), Note(log.clone(), "x")),
                (Query::Key("v"), Note(log.clone(), "v")),
            ],
            later(),
        )
        .unwrap();
    let ticket = relay
        .ask(Query::All, Note(log.clone(), "all"), later())
        .unwrap();
    // A party of two finds no room: refused whole, every asker handed back untouched.
    let (error, back) = relay
        .ask_all(
            vec![
                (Query::Key("w"), Note(log.clone(), "w")),
                (Query::Key("x"), Note(log.clone(), "x2")),
            ],
            later(),
        )
        .unwrap_err();
    assert_eq!((error, back.len()), (AskError::TooManyAsks, 2));
    drop(back);
    // An asker that leaves keeps its request's place until the answer comes back.
    let asker = relay.asks().cancel(&ticket).unwrap();
    drop(asker);
    assert_eq!(relay.asks().stats().orphans, 1);
    assert_eq!(
        relay
            .ask(Query::Key("w"), Note(log.clone(), "w"), later())
            .unwrap_err()
            .error,
        AskError::TooManyAsks
    );
    // Its answer comes: the place is free again, and the others are answered.
    let _ = server.poll();
    relay.drain(&mut Text::default(), false);
    let mut told = log.take();
    told.sort();
    assert_eq!(told, ["v: v=2@0", "x: x=1@0"]);
    let stats = relay.asks().stats();
    assert_eq!((stats.orphans, stats.outstanding), (0, 0));
    relay.ask(Query::Key("w"), Note(log, "w"), later()).unwrap();
}

#[test]
fn answers_taken_from_the_table_still_count_until_delivered() {
    let (_publisher, mut server) = server();
    let relay = Relay::attach(server.requester(), None, 1, |c| server.add_connection(c)).unwrap();
    let log = Log::default();
    relay
        .ask(Query::Key("x"), Note(log.clone(), "x"), later())
        .unwrap();
    // The poller takes the asker out of the table with its answer; nothing delivered yet.
    let _ = server.poll();
    assert_eq!(relay.asks().outstanding(), 1);
    // A new ask of the same key would be a new request: no room until delivery.
    assert_eq!(
        relay
            .ask(Query::Key("x"), Note(log.clone(), "again"), later())
            .unwrap_err()
            .error,
        AskError::TooManyAsks
    );
    relay.drain(&mut Text::default(), false);
    assert_eq!(log.take(), ["x: x=1@0"]);
    relay
        .ask(Query::Key("x"), Note(log, "again"), later())
        .unwrap();
}

#[test]
fn the_worker_ends_asks_at_their_deadline() {
    let (_publisher, mut server) = server();
    let relay = Relay::attach(server.requester(), None, 8, |c| server.add_connection(c)).unwrap();
    let worker = relay.spawn("sweeps", Text::default()).unwrap();
    let log = Log::default();
    let start = Instant::now();
    relay
        .ask(
            Query::Key("x"),
            Note(log.clone(), "x"),
            start + Duration::from_millis(20),
        )
        .unwrap();
    // Nobody polls: only the worker's sweep can end it.
    wait_for("the ask to time out", || !log.0.lock().unwrap().is_empty());
    assert!(start.elapsed() >= Duration::from_millis(20));
    assert_eq!(log.take(), ["x: TimedOut"]);
    worker.stop();
    drop(server);
}

#[test]
#[cfg_attr(
    miri,
    ignore = "Miri's isolation has no wall clock; the same case runs natively"
)]
fn update_times_on_the_wall_clock_follow_the_order_they_were_taken_in() {
    let snapshot = Arc::new(queueserver::Snapshot::new(1, state(1.0, 2.0)));
    // Times around a point two seconds ahead, so that none is before the clock's start.
    let ahead = Duration::from_secs(2);
    let first = Update::new(Arc::clone(&snapshot), Instant::now() + ahead);
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    // Near the wall clock (one read of each clock apart, and a second of slack for a
    // preempted thread)...
    let at = first.taken_since_epoch();
    assert!(
        at.abs_diff(wall + ahead) < Duration::from_secs(1),
        "{at:?} vs {wall:?}"
    );
    // ...and exactly as far apart as their monotonic times, however late each is read:
    // a later update never has an earlier time.
    for step_us in [1, 10, 1000, 1_000_000] {
        let step = Duration::from_micros(step_us);
        let later = Update::new(Arc::clone(&snapshot), first.taken() + step);
        let earlier = Update::new(Arc::clone(&snapshot), first.taken() - step);
        std::thread::yield_now();
        assert_eq!(later.taken_since_epoch() - first.taken_since_epoch(), step);
        assert_eq!(
            first.taken_since_epoch() - earlier.taken_since_epoch(),
            step
        );
    }
}
