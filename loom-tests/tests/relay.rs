//! Model 9: the relay's handoff between the poller and the worker side, and its ends.
//!
//! The poller (the model's main thread) publishes and polls a server whose one connection
//! is a relay's; the worker side (a second thread) drains the relay and sleeps, when it
//! finds nothing, on a waker that unparks it. In every interleaving:
//!
//! - **handoff**: the worker is handed the answer to the ask it made (exactly once, read
//!   from a whole snapshot) and ends with the newest snapshot the poller fanned out, having
//!   seen snapshots in order and none torn; it is never left asleep with work in the relay
//!   (loom reports the deadlock);
//! - **answers wake**: a worker that sleeps through updates (it paces them) is woken by
//!   the answer it waits for;
//! - **the poller's side goes**: the server is dropped while the worker waits; the worker
//!   is woken, gets what the poller queued before, then the end (`Detached`), and the asker
//!   is told exactly once (answered, or closed);
//! - **the worker's side goes**: the relay is closed while the poller fans out and answers;
//!   the connection fails with `Closed` and is removed, and the asker is told exactly once.

#![cfg(loom)]

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;
use queueserver::runtime::asks::{AskError, Asker};
use queueserver::runtime::relay::{Answered, End, Relay, RelayConnection, Sink, Update};
use queueserver::{Builder, ConnectionError, Query};
use queueserver_loom_tests::{check, Pair};
use std::sync::Arc;
use std::task::{Wake, Waker};
use std::time::{Duration, Instant};

/// How an asker was told.
#[derive(Default)]
struct Told {
    answers: AtomicUsize,
    failures: AtomicUsize,
    /// The value answered (the first word of the snapshot read) and its seq, packed.
    answer: AtomicUsize,
}

impl Told {
    fn times(&self) -> usize {
        self.answers.load(Ordering::SeqCst) + self.failures.load(Ordering::SeqCst)
    }
}

struct Probe(Arc<Told>);

impl Asker for Probe {
    type Reply = (u64, u64);

    fn answer(self, &(value, seq): &(u64, u64)) {
        assert_eq!(value, seq, "answered from a torn or foreign snapshot");
        self.0.answer.store(seq as usize, Ordering::SeqCst);
        self.0.answers.fetch_add(1, Ordering::SeqCst);
    }

    fn fail(self, error: AskError) {
        assert_eq!(error, AskError::Closed);
        self.0.failures.fetch_add(1, Ordering::SeqCst);
    }
}

/// The worker side's sink: records the snapshots it is handed.
#[derive(Default)]
struct Seen {
    updates: Vec<u64>,
}

impl Sink<Pair> for Seen {
    type Asker = Probe;

    fn prepare(&mut self, answer: Answered<Pair>) -> (u64, u64) {
        match answer {
            Answered::Value { value, seq, .. } => (value, seq),
            other => panic!("unexpected answer {other:?}"),
        }
    }

    fn update(&mut self, update: &Update<Pair>) {
        assert!(update.is_whole(update.seq()), "a torn snapshot");
        if let Some(&last) = self.updates.last() {
            assert!(
                update.seq() > last,
                "snapshot {} after {last}",
                update.seq()
            );
        }
        self.updates.push(update.seq());
    }
}

/// Wakes a loom thread.
struct Unpark(thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

type Server = queueserver::QueueServer<
    Pair,
    RelayConnection<Pair>,
    queueserver::NoNotify,
    queueserver::NoClock,
    2,
    1,
>;

/// A server whose one connection is a relay's, subscribed to updates or not.
fn setup(subscribed: bool) -> (queueserver::Publisher<Pair>, Server, Relay<Pair, Probe>) {
    let (publisher, mut server) = Builder::new(Pair::at(0))
        .capacity::<2, 1>()
        .build::<RelayConnection<Pair>>()
        .unwrap();
    let relay = Relay::attach(server.requester(), None, 2, |c| server.add_connection(c)).unwrap();
    relay.subscribe(subscribed);
    (publisher, server, relay)
}

fn far() -> Instant {
    Instant::now() + Duration::from_secs(3600)
}

/// The worker side: drains until `done` says so or the relay ends, sleeping when there is
/// nothing to do. Returns the sink and the end, if any.
/// `updates`: whether an update is work for it (else it sleeps through them, as a worker
/// pacing its updates does).
fn work(
    relay: &Relay<Pair, Probe>,
    updates: bool,
    done: impl Fn(&Seen) -> bool,
) -> (Seen, Option<End>) {
    let mut sink = Seen::default();
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut slot = None;
    loop {
        let drained = relay.drain(&mut sink, updates);
        if drained.end.is_some() || done(&sink) {
            relay.unregister(&mut slot);
            return (sink, drained.end);
        }
        if !relay.ready_or_register(&mut slot, &waker, updates) {
            thread::park();
        }
    }
}

#[test]
fn the_worker_gets_its_answer_and_the_newest_snapshot_and_never_sleeps_on_work() {
    check("relay: handoff", || {
        let (mut publisher, mut server, relay) = setup(true);
        let told = Arc::new(Told::default());
        relay
            .ask(Query::Key(1), Probe(Arc::clone(&told)), far())
            .unwrap();
        let worker = {
            let (relay, told) = (relay.clone(), Arc::clone(&told));
            thread::spawn(move || {
                work(&relay, true, |seen| {
                    told.answers.load(Ordering::SeqCst) == 1 && seen.updates.last() == Some(&2)
                })
            })
        };
        for step in 1..=2 {
            publisher.put_update(&Pair::at(step));
            let _ = server.poll();
        }
        let (seen, end) = worker.join().unwrap();
        assert_eq!(end, None);
        assert_eq!(seen.updates.last(), Some(&2));
        assert_eq!(told.times(), 1);
        assert_eq!(server.stats().connections_failed, 0);
    });
}

#[test]
fn an_answer_wakes_a_worker_that_sleeps_through_updates() {
    check("relay: answers wake", || {
        let (mut publisher, mut server, relay) = setup(true);
        let told = Arc::new(Told::default());
        relay
            .ask(Query::Key(1), Probe(Arc::clone(&told)), far())
            .unwrap();
        let worker = {
            let (relay, told) = (relay.clone(), Arc::clone(&told));
            thread::spawn(move || work(&relay, false, |_| told.times() == 1))
        };
        publisher.put_update(&Pair::at(1));
        let _ = server.poll();
        let (seen, end) = worker.join().unwrap();
        assert_eq!((told.answers.load(Ordering::SeqCst), end), (1, None));
        assert!(seen.updates.is_empty(), "it took no update");
    });
}

#[test]
fn a_dropped_server_wakes_the_worker_after_what_it_queued() {
    check("relay: the poller's side goes", || {
        let (mut publisher, mut server, relay) = setup(false);
        let told = Arc::new(Told::default());
        relay
            .ask(Query::Key(1), Probe(Arc::clone(&told)), far())
            .unwrap();
        let worker = {
            let relay = relay.clone();
            thread::spawn(move || work(&relay, false, |_| false))
        };
        publisher.put_update(&Pair::at(1));
        let _ = server.poll();
        drop(server);
        let (_, end) = worker.join().unwrap();
        assert_eq!(end, Some(End::Detached));
        // The answer was queued before the drop: it is delivered, not lost.
        assert_eq!(told.answers.load(Ordering::SeqCst), 1);
        assert_eq!(told.times(), 1);
        let stats = relay.asks().stats();
        assert_eq!((stats.outstanding, stats.answered), (0, 1));
    });
}

#[test]
fn a_closed_relay_fails_its_connection_and_tells_its_asker_once() {
    check("relay: the worker's side goes", || {
        let (mut publisher, mut server, relay) = setup(true);
        let told = Arc::new(Told::default());
        relay
            .ask(Query::Key(1), Probe(Arc::clone(&told)), far())
            .unwrap();
        let closer = {
            let relay = relay.clone();
            thread::spawn(move || {
                relay.close();
                let mut sink = Seen::default();
                relay.drain(&mut sink, true).end
            })
        };
        publisher.put_update(&Pair::at(1));
        let _ = server.poll();
        let end = closer.join().unwrap();
        assert_eq!(end, Some(End::Closed));
        // The next update finds the relay closed at the latest.
        publisher.put_update(&Pair::at(2));
        let _ = server.poll();
        let failed = server
            .take_failed()
            .expect("the connection fails once closed");
        assert_eq!(failed.error, ConnectionError::Closed);
        drop(failed);
        drop(relay);
        assert_eq!(told.times(), 1, "told exactly once");
    });
}
