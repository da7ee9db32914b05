//! The many-askers machinery on a relay, with the kinds of askers the transports bring: a
//! browser's bounded outbox (a delivery only tries to push) and a network query answered
//! later (a final reply when it is dropped). The relay's worker side is driven by hand
//! (`Setup::poll` runs the poller, then drains).

mod common;

use common::{state, State};
use queueserver::runtime::asks::{AskError, AskStats, Asker, Asks, Refused};
use queueserver::runtime::relay::{Answered, Relay, RelayConnection, Sink};
use queueserver::{Abandoned, Connection, Query, QueueServer, Response};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the askers are handed: text made once per answer.
type Text = String;

/// A network query: keeps its replies, and sends a final reply when dropped.
#[derive(Clone, Default)]
struct Wire {
    replies: Arc<Mutex<Vec<String>>>,
    finals: Arc<AtomicUsize>,
}

enum Party {
    /// A browser's bounded outbox.
    Outbox(SyncSender<String>),
    /// A network query, numbered.
    Query(u32, Wire),
}

impl Drop for Party {
    fn drop(&mut self) {
        if let Party::Query(_, wire) = self {
            wire.finals.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl Asker for Party {
    type Reply = Text;

    fn answer(self, reply: &Text) {
        match &self {
            // Never blocks: a full outbox drops the message.
            Party::Outbox(tx) => drop(tx.try_send(reply.clone())),
            Party::Query(_, wire) => wire.replies.lock().unwrap().push(reply.clone()),
        }
    }

    fn fail(self, error: AskError) {
        let text = format!("error: {error:?}");
        match &self {
            Party::Outbox(tx) => drop(tx.try_send(text)),
            Party::Query(_, wire) => wire.replies.lock().unwrap().push(text),
        }
    }
}

/// The sink: counts how many replies it prepared.
struct Prepare(Arc<AtomicUsize>);

impl Sink<State> for Prepare {
    type Asker = Party;

    fn prepare(&mut self, answer: Answered<State>) -> Text {
        self.0.fetch_add(1, Ordering::SeqCst);
        match answer.response() {
            Response::Value { key, value, seq } => format!("{key}={value}@{seq}"),
            Response::NotFound { key, seq } => format!("{key}?@{seq}"),
            Response::Snapshot(s) => format!("all@{}", s.seq()),
        }
    }
}

struct Setup {
    server: QueueServer<State, RelayConnection<State>>,
    relay: Relay<State, Party>,
    asks: Asks<State, Party>,
    sink: Prepare,
    prepared: Arc<AtomicUsize>,
}

impl Setup {
    /// The poller's work, then the worker side's.
    fn poll(&mut self) {
        let _ = self.server.poll();
        self.drain();
    }

    fn drain(&mut self) {
        self.relay.drain(&mut self.sink, false);
    }
}

fn setup(max_asks: usize) -> Setup {
    let (_publisher, mut server) = QueueServer::new(state(1.0, 2.0));
    let prepared = Arc::new(AtomicUsize::new(0));
    let relay = Relay::attach(server.requester(), None, max_asks, |connection| {
        server.add_connection(connection)
    })
    .unwrap();
    Setup {
        server,
        asks: relay.asks().clone(),
        relay,
        sink: Prepare(Arc::clone(&prepared)),
        prepared,
    }
}

fn later() -> Instant {
    Instant::now() + Duration::from_secs(600)
}

fn outbox(capacity: usize) -> (Party, Receiver<String>) {
    let (tx, rx) = sync_channel(capacity);
    (Party::Outbox(tx), rx)
}

fn assert_balanced(stats: &AskStats) {
    assert_eq!(
        stats.asked,
        stats.answered
            + stats.expired
            + stats.closed
            + stats.abandoned
            + stats.cancelled
            + stats.outstanding,
        "{stats:?}"
    );
}

#[test]
fn one_reply_is_prepared_per_answer_and_handed_to_every_asker_of_the_query() {
    let mut setup = setup(16);
    let (asks, prepared) = (setup.asks.clone(), Arc::clone(&setup.prepared));
    let wire = Wire::default();
    let (a, from_a) = outbox(4);
    let (b, from_b) = outbox(4);
    asks.ask(Query::Key("x"), a, later()).unwrap();
    asks.ask(Query::Key("x"), Party::Query(1, wire.clone()), later())
        .unwrap();
    asks.ask(Query::Key("v"), b, later()).unwrap();
    asks.ask(Query::All, Party::Query(2, wire.clone()), later())
        .unwrap();
    assert_eq!(setup.server.pending_requests(), 3, "one request per query");
    setup.poll();

    assert_eq!(prepared.load(Ordering::SeqCst), 3, "one reply per answer");
    assert_eq!(from_a.try_recv().unwrap(), "x=1@0");
    assert_eq!(from_b.try_recv().unwrap(), "v=2@0");
    let mut replies = wire.replies.lock().unwrap().clone();
    replies.sort();
    assert_eq!(replies, ["all@0", "x=1@0"]);
    assert_eq!(
        wire.finals.load(Ordering::SeqCst),
        2,
        "each query's final reply went out"
    );
    let stats = asks.stats();
    assert_eq!(
        (
            stats.asked,
            stats.answered,
            stats.requests_sent,
            stats.responses
        ),
        (4, 4, 3, 3)
    );
    assert_balanced(&stats);
}

#[test]
fn a_full_outbox_never_blocks_the_poller() {
    let mut setup = setup(16);
    let asks = setup.asks.clone();
    let (full, rx) = outbox(1);
    if let Party::Outbox(tx) = &full {
        tx.try_send("already there".into()).unwrap();
    }
    asks.ask(Query::Key("x"), full, later()).unwrap();
    // Would block forever if a delivery waited for room.
    setup.poll();
    assert_eq!(rx.try_recv().unwrap(), "already there");
    assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    assert_eq!(asks.stats().answered, 1);
}

#[test]
fn dropping_the_connection_tells_every_asker_closed_and_refuses_later_asks() {
    let mut setup = setup(16);
    let asks = setup.asks.clone();
    let wire = Wire::default();
    let (a, from_a) = outbox(4);
    asks.ask(Query::Key("x"), a, later()).unwrap();
    asks.ask(Query::All, Party::Query(1, wire.clone()), later())
        .unwrap();
    // The server goes, and its connection with it; the worker side learns it.
    let (_publisher, empty) = QueueServer::new(state(0.0, 0.0));
    drop(std::mem::replace(&mut setup.server, empty));
    setup.drain();
    assert_eq!(from_a.try_recv().unwrap(), "error: Closed");
    assert_eq!(*wire.replies.lock().unwrap(), ["error: Closed"]);
    assert_eq!(wire.finals.load(Ordering::SeqCst), 1);
    assert!(asks.is_closed());

    // A later ask is handed back untouched, with its query.
    let refused = asks.ask(Query::Key("v"), Party::Query(7, wire.clone()), later());
    let Err(Refused {
        error,
        query,
        asker,
    }) = refused
    else {
        panic!("a closed connection accepted an ask");
    };
    assert_eq!((error, query), (AskError::Closed, Query::Key("v")));
    assert!(matches!(&asker, Party::Query(7, _)));
    assert_eq!(
        wire.replies.lock().unwrap().len(),
        1,
        "the refused asker was not told"
    );
    let stats = asks.stats();
    assert_eq!((stats.closed, stats.refused), (2, 1));
    assert_balanced(&stats);
}

#[test]
fn past_the_bound_an_ask_is_refused_at_once_and_handed_back() {
    let mut setup = setup(2);
    let asks = setup.asks.clone();
    let (a, _from_a) = outbox(4);
    let (b, _from_b) = outbox(4);
    let (c, from_c) = outbox(4);
    asks.ask(Query::Key("x"), a, later()).unwrap();
    asks.ask(Query::Key("x"), b, later()).unwrap();
    let refused = asks.ask(Query::Key("v"), c, later()).unwrap_err();
    assert_eq!(refused.error, AskError::TooManyAsks);
    assert_eq!(refused.query, Query::Key("v"));
    drop(refused);
    assert_eq!(
        from_c.try_recv(),
        Err(TryRecvError::Disconnected),
        "never told"
    );
    setup.poll();
    let (d, from_d) = outbox(4);
    asks.ask(Query::Key("v"), d, later()).unwrap();
    setup.poll();
    assert_eq!(from_d.try_recv().unwrap(), "v=2@0");
    assert_balanced(&asks.stats());
}

#[test]
fn a_sweep_ends_the_asks_past_their_deadline_and_says_when_to_come_back() {
    let mut setup = setup(16);
    let asks = setup.asks.clone();
    let now = Instant::now();
    let (a, from_a) = outbox(4);
    let (b, from_b) = outbox(4);
    let (c, from_c) = outbox(4);
    asks.ask(Query::Key("x"), a, now).unwrap();
    asks.ask(Query::Key("x"), b, now + Duration::from_secs(100))
        .unwrap();
    asks.ask(Query::Key("v"), c, now + Duration::from_secs(50))
        .unwrap();
    let sweep = asks.sweep(now);
    assert_eq!(sweep.expired, 1);
    assert_eq!(sweep.next_deadline, Some(now + Duration::from_secs(50)));
    assert!(!sweep.unsent);
    assert_eq!(from_a.try_recv().unwrap(), "error: TimedOut");
    let sweep = asks.sweep(now + Duration::from_secs(60));
    assert_eq!(
        (sweep.expired, sweep.next_deadline),
        (1, Some(now + Duration::from_secs(100)))
    );
    assert_eq!(from_c.try_recv().unwrap(), "error: TimedOut");
    // The requests stayed queued; their answers reach whoever still waits.
    setup.poll();
    assert_eq!(from_b.try_recv().unwrap(), "x=1@0");
    let stats = asks.stats();
    assert_eq!((stats.expired, stats.answered, stats.responses), (2, 1, 2));
    assert_balanced(&stats);
}

#[test]
fn cancel_hands_the_asker_back_and_abandon_tells_one_query_why() {
    let mut setup = setup(16);
    let asks = setup.asks.clone();
    let wire = Wire::default();
    let ticket = asks
        .ask(Query::Key("x"), Party::Query(1, wire.clone()), later())
        .unwrap();
    assert_eq!(ticket.query(), &Query::Key("x"));
    let asker = asks.cancel(&ticket).expect("still outstanding");
    assert!(matches!(&asker, Party::Query(1, _)));
    assert!(asks.cancel(&ticket).is_none(), "a ticket ends once");
    drop(asker);
    assert!(wire.replies.lock().unwrap().is_empty());

    let (a, from_a) = outbox(4);
    let (b, from_b) = outbox(4);
    asks.ask(Query::Key("x"), a, later()).unwrap();
    asks.ask(Query::Key("v"), b, later()).unwrap();
    // A connection told its request for "v" will never be answered.
    let id = setup.relay.id().unwrap();
    let view = setup.server.connection_mut(id).unwrap();
    view.on_abandoned(&Query::Key("v"), Abandoned::Panicked)
        .unwrap();
    setup.drain();
    assert_eq!(from_b.try_recv().unwrap(), "error: Abandoned(Panicked)");
    setup.poll();
    assert_eq!(from_a.try_recv().unwrap(), "x=1@0");
    let stats = asks.stats();
    assert_eq!(
        (
            stats.cancelled,
            stats.abandoned,
            stats.closed,
            stats.answered
        ),
        (1, 1, 0, 1)
    );
    assert_balanced(&stats);
}

#[test]
fn a_closed_request_side_ends_the_asks_it_cannot_queue_and_answers_the_rest() {
    let mut setup = setup(16);
    let asks = setup.asks.clone();
    let (a, from_a) = outbox(4);
    asks.ask(Query::Key("x"), a, later()).unwrap();
    setup.server.close();
    let (b, from_b) = outbox(4);
    asks.ask(Query::Key("v"), b, later()).unwrap();
    assert_eq!(from_b.try_recv().unwrap(), "error: Closed");
    assert!(asks.is_closed());
    while setup.server.pending_requests() > 0 {
        let _ = setup.server.process_requests();
    }
    setup.drain();
    assert_eq!(from_a.try_recv().unwrap(), "x=1@0");
    let (c, _) = outbox(4);
    assert_eq!(
        asks.ask(Query::All, c, later()).unwrap_err().error,
        AskError::Closed
    );
    assert_balanced(&asks.stats());
}
