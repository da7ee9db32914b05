//! The `Runner` under faults and under control: a connection that panics, a poller that
//! panics, a runner dropped or given a zero period, and a runner talked to while it runs
//! (stats, connections added and removed, whether it runs and why not).
//!
//! Every wait is bounded (`PATIENCE`): a lost wake-up fails the test instead of hanging it.

mod common;

use common::{state, Answer, Brittle, State};
use queueserver::{
    Abandoned, AddError, Builder, Connection, ConnectionError, IDict, Query, QueueServer,
    RemoveError, Request, RequestError, Response, Runner, Snapshot, StartError, StopCause,
    ThreadNotify, WaitError,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

const PATIENCE: Duration = Duration::from_secs(10);

/// Runs `f` on another thread and returns its result, or fails after `PATIENCE`.
fn within<R: Send + 'static>(what: &str, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(PATIENCE)
        .unwrap_or_else(|_| panic!("{what}: no answer within {PATIENCE:?}"))
}

/// Waits until `condition` holds, or fails after `PATIENCE`.
fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(
            start.elapsed() < PATIENCE,
            "{what}: not within {PATIENCE:?}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// What a `Probe` was told, sent over a channel as it happens.
#[derive(Debug, PartialEq)]
enum Event {
    Update(u64),
    Answer(Answer),
    Abandoned(Query<&'static str>, Abandoned),
}

/// Forwards what it receives; panics on an update or an answer if told to.
struct Probe {
    tx: mpsc::Sender<Event>,
    panic_on_update: bool,
    panic_on_answer: bool,
    subscribed: bool,
    /// Read by nobody: it says when the probe is dropped.
    #[allow(dead_code)]
    dropped: Option<DropFlag>,
}

/// Set when dropped.
struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

impl Probe {
    fn new(tx: &mpsc::Sender<Event>) -> Self {
        Self {
            tx: tx.clone(),
            panic_on_update: false,
            panic_on_answer: false,
            subscribed: true,
            dropped: None,
        }
    }
}

impl<D: IDict<Key = &'static str, Value = f64>> Connection<D> for Probe {
    fn on_update(&mut self, snapshot: &Snapshot<D>) -> Result<(), ConnectionError> {
        assert!(!self.panic_on_update, "no more updates, please");
        let _ = self.tx.send(Event::Update(snapshot.seq()));
        Ok(())
    }

    fn on_response(&mut self, response: Response<'_, D>) -> Result<(), ConnectionError> {
        assert!(!self.panic_on_answer, "no answers, please");
        let answer = match response {
            Response::Value { key, value, seq } => Answer::Value(key, *value, seq),
            Response::NotFound { key, seq } => Answer::NotFound(key, seq),
            Response::Snapshot(s) => Answer::All(s.seq()),
        };
        let _ = self.tx.send(Event::Answer(answer));
        Ok(())
    }

    fn wants_updates(&self) -> bool {
        self.subscribed
    }

    fn on_abandoned(
        &mut self,
        query: &Query<&'static str>,
        why: Abandoned,
    ) -> Result<(), ConnectionError> {
        let _ = self.tx.send(Event::Abandoned(query.clone(), why));
        Ok(())
    }
}

fn notified_server<D: IDict<Key = &'static str, Value = f64> + Sync + 'static>(
    idict: D,
) -> (
    queueserver::Publisher<D, ThreadNotify>,
    QueueServer<D, Probe, ThreadNotify>,
) {
    Builder::new(idict)
        .notify(ThreadNotify::new())
        .build()
        .unwrap()
}

// ----- a connection that panics under a runner -----

#[test]
fn a_connection_panicking_under_a_runner_is_removed_and_the_rest_carry_on() {
    let (tx, rx) = mpsc::channel();
    let (mut publisher, mut server) = notified_server(state(0.0, 0.0));
    let healthy = server.add_connection(Probe::new(&tx)).unwrap();
    let panicky = server
        .add_connection(Probe {
            panic_on_answer: true,
            subscribed: false,
            ..Probe::new(&tx)
        })
        .unwrap();
    let requester = server.requester();
    let runner = Runner::notified(server).unwrap();

    requester.put_request(Request::key(panicky, "x")).unwrap();
    wait_until("the panicking connection removed", || {
        runner.stats().connections_failed == 1
    });
    // The runner carries on: the healthy connection is served, its requests answered,
    // and the panicking one's refused.
    publisher.put_update(&state(1.0, 0.0));
    assert_eq!(rx.recv_timeout(PATIENCE), Ok(Event::Update(1)));
    for _ in 0..10 {
        requester.put_request(Request::key(healthy, "x")).unwrap();
        assert_eq!(
            rx.recv_timeout(PATIENCE),
            Ok(Event::Answer(Answer::Value("x", 1.0, 1)))
        );
    }
    assert!(matches!(
        requester.put_request(Request::key(panicky, "x")),
        Err(RequestError::UnknownConnection(_))
    ));
    assert!(runner.is_running());
    assert_eq!(runner.stopped(), None);

    let mut server = runner.shutdown().unwrap();
    let failed = server.take_failed().unwrap();
    assert_eq!(failed.id, panicky);
    assert_eq!(
        failed.error.to_string(),
        "connection panicked: no answers, please"
    );
    let stats = server.stats();
    assert_eq!(stats.requests_answered, 10);
    assert_eq!(stats.requests_orphaned, 1);
    assert_eq!(stats.connections_failed, 1);
}

// ----- a poller that panics -----

#[test]
fn a_poller_that_panics_stops_closes_the_request_side_and_tells_who_waits() {
    let (tx, rx) = mpsc::channel();
    let (publisher, mut server) = notified_server(Brittle);
    let waiter = server.add_connection(Probe::new(&tx)).unwrap();
    let requester = server.requester();
    let reader = server.reader();
    let runner = Runner::notified(server).unwrap();
    assert!(publisher.wants_update());
    // A reader waiting for a newer snapshot: told when the poller stops, not at its timeout.
    let watching = std::thread::spawn(move || reader.wait_newer(0, PATIENCE * 6));

    requester.put_request(Request::key(waiter, "boom")).unwrap();
    // The waiter is told at once that no answer will come.
    assert_eq!(
        rx.recv_timeout(PATIENCE),
        Ok(Event::Abandoned(Query::Key("boom"), Abandoned::Panicked))
    );
    wait_until("the poller stopped", || !runner.is_running());
    let Some(StopCause::Panicked(message)) = runner.stopped() else {
        panic!("{:?}", runner.stopped());
    };
    assert_eq!(message.as_str(), "reading boom");
    // The reader is told at once that no newer snapshot will come.
    assert_eq!(
        watching.join().unwrap().map(|s| s.seq()),
        Err(WaitError::Closed)
    );

    // Nothing is accepted any more that nobody would answer.
    assert!(requester.is_closed());
    assert_eq!(
        requester.put_request(Request::key(waiter, "x")),
        Err(RequestError::Closed(Request::key(waiter, "x")))
    );
    assert!(!publisher.wants_update());
    let (tx2, _rx2) = mpsc::channel();
    assert!(matches!(
        runner.add_connection(Probe::new(&tx2)),
        Err(AddError::Stopped(_))
    ));
    assert!(matches!(
        runner.remove_connection(waiter),
        Err(RemoveError::Stopped)
    ));
    assert_eq!(runner.stats().requests_abandoned, 1);

    // Shutdown hands the server back anyway, with the panic.
    let crashed = runner.shutdown().unwrap_err();
    assert_eq!(crashed.cause, StopCause::Panicked(message));
    assert_eq!(crashed.to_string(), "the poller panicked: reading boom");
    let server = crashed.server;
    assert!(server.is_attached(waiter));
    let stats = server.stats();
    assert_eq!(stats.requests_accepted, 1);
    assert_eq!(stats.requests_abandoned, 1);
    assert_eq!(server.pending_requests(), 0);
}

#[test]
fn requests_pending_when_the_poller_panics_are_abandoned_not_lost() {
    // Several requests in one batch: the one whose read panics is abandoned as such, the
    // ones the poller gives up on as it stops, and each connection is told.
    let (tx, rx) = mpsc::channel();
    let (_publisher, mut server) = Builder::new(Brittle)
        .notify(ThreadNotify::new())
        .build::<Probe>()
        .unwrap();
    let ids: Vec<_> = (0..3)
        .map(|_| {
            server
                .add_connection(Probe {
                    subscribed: false,
                    ..Probe::new(&tx)
                })
                .unwrap()
        })
        .collect();
    let requester = server.requester();
    for &id in &ids {
        requester.put_request(Request::key(id, "zzz")).unwrap();
        requester.put_request(Request::key(id, "boom")).unwrap();
    }
    let runner = Runner::notified(server).unwrap();
    let mut told = Vec::new();
    while told.len() < 6 {
        match rx.recv_timeout(PATIENCE) {
            Ok(Event::Abandoned(query, why)) => told.push((query, why)),
            other => panic!("{other:?}"),
        }
    }
    told.sort_by_key(|(query, _)| format!("{query:?}"));
    assert!(told[..3]
        .iter()
        .all(|t| *t == (Query::Key("boom"), Abandoned::Panicked)));
    assert!(told[3..]
        .iter()
        .all(|t| *t == (Query::Key("zzz"), Abandoned::Stopped)));
    let server = runner.shutdown().unwrap_err().server;
    let stats = server.stats();
    assert_eq!(stats.requests_accepted, 6);
    assert_eq!(stats.requests_abandoned, 6);
    assert_eq!(stats.requests_answered + stats.requests_orphaned, 0);
}

// ----- dropping, starting -----

#[test]
fn dropping_a_runner_stops_its_thread_answers_what_it_accepted_and_drops_the_server() {
    let (tx, rx) = mpsc::channel();
    let dropped = Arc::new(AtomicBool::new(false));
    let (publisher, mut server) = notified_server(state(0.0, 0.0));
    let id = server
        .add_connection(Probe {
            dropped: Some(DropFlag(Arc::clone(&dropped))),
            ..Probe::new(&tx)
        })
        .unwrap();
    let requester = server.requester();
    let runner = Runner::notified(server).unwrap();
    requester.put_request(Request::key(id, "x")).unwrap();
    within("dropping the runner", move || drop(runner));

    // The thread has finished: the server, and its connection, are gone.
    assert!(dropped.load(Ordering::Acquire));
    let events: Vec<_> = rx.try_iter().collect();
    assert!(events.contains(&Event::Answer(Answer::Value("x", 0.0, 0))));
    assert!(requester.is_closed());
    assert!(matches!(
        requester.put_request(Request::key(id, "x")),
        Err(RequestError::Closed(_))
    ));
    assert!(!publisher.wants_update());
}

#[test]
fn a_zero_period_is_refused_and_the_server_handed_back() {
    let (_, server) = QueueServer::<State, common::Recorder>::new(state(0.0, 0.0));
    let id = server.id();
    let error = Runner::every(server, Duration::ZERO).unwrap_err();
    assert!(matches!(error, StartError::ZeroPeriod(_)));
    assert_eq!(error.to_string(), "a runner's period must not be zero");
    let server = error.into_server();
    assert_eq!(server.id(), id);
    // The server works with a real period.
    let runner = Runner::every(server, Duration::from_millis(1)).unwrap();
    assert!(runner.is_running());
    runner.shutdown().unwrap();
}

#[test]
fn a_runner_is_named_by_its_idict_and_connection_types_alone() {
    /// Holds a runner as an application would.
    struct App {
        runner: Runner<State, Probe>,
    }
    let (tx, rx) = mpsc::channel();
    let (mut publisher, server) = notified_server(state(0.0, 0.0));
    let app = App {
        runner: Runner::notified(server).unwrap(),
    };
    let id = app.runner.add_connection(Probe::new(&tx)).unwrap();
    publisher.put_update(&state(2.0, 0.0));
    assert_eq!(rx.recv_timeout(PATIENCE), Ok(Event::Update(1)));
    let server = app.runner.shutdown().unwrap();
    assert!(server.is_attached(id));
}

// ----- talking to a running poller -----

#[test]
fn stats_can_be_read_while_the_runner_runs() {
    let (mut publisher, server) = notified_server::<State>(state(0.0, 0.0));
    let runner = Runner::notified(server).unwrap();
    assert_eq!(runner.stats().updates_published, 0);
    for n in 1..=100 {
        publisher.put_update(&state(f64::from(n), 0.0));
    }
    wait_until("the stats show the publishes", || {
        runner.stats().updates_published == 100
    });
    let stats = runner.stats();
    assert_eq!(
        stats.updates_received + stats.updates_overwritten,
        stats.updates_published
    );
    runner.shutdown().unwrap();
}

#[test]
fn connections_can_be_added_and_removed_while_the_runner_runs() {
    for every in [false, true] {
        let (tx, rx) = mpsc::channel();
        let (mut publisher, server) = Builder::new(state(0.0, 0.0))
            .notify(ThreadNotify::new())
            .capacity::<8, 2>()
            .build::<Probe>()
            .unwrap();
        let requester = server.requester();
        // A long period: a control call must wake the poller, not wait for it.
        let runner = Arc::new(if every {
            Runner::every(server, Duration::from_secs(3600)).unwrap()
        } else {
            Runner::notified(server).unwrap()
        });

        let added = {
            let (runner, tx) = (Arc::clone(&runner), tx.clone());
            within("add_connection", move || {
                runner.add_connection(Probe::new(&tx))
            })
        };
        let id = added.unwrap();
        if !every {
            // Attached on the poller's thread, and served there.
            publisher.put_update(&state(1.0, 0.0));
            assert_eq!(rx.recv_timeout(PATIENCE), Ok(Event::Update(1)));
            requester.put_request(Request::key(id, "x")).unwrap();
            assert_eq!(
                rx.recv_timeout(PATIENCE),
                Ok(Event::Answer(Answer::Value("x", 1.0, 1)))
            );
        }
        // Two slots: the third connection comes back.
        let second = runner.add_connection(Probe::new(&tx)).unwrap();
        let third = Probe {
            subscribed: false,
            ..Probe::new(&tx)
        };
        let full = runner.add_connection(third).unwrap_err();
        assert!(matches!(full, AddError::Full(_)));
        assert!(!full.into_connection().subscribed);

        let removed = {
            let runner = Arc::clone(&runner);
            within("remove_connection", move || runner.remove_connection(id))
        };
        assert!(removed.unwrap().subscribed);
        assert!(matches!(
            runner.remove_connection(id),
            Err(RemoveError::NotAttached)
        ));
        assert!(matches!(
            requester.put_request(Request::key(id, "x")),
            Err(RequestError::UnknownConnection(_))
        ));

        let runner = Arc::into_inner(runner).unwrap();
        let server = runner.shutdown().unwrap();
        assert_eq!(server.connection_ids().collect::<Vec<_>>(), [second]);
        let stats = server.stats();
        assert_eq!((stats.connections_added, stats.connections_removed), (2, 1));
    }
}

#[test]
fn many_threads_can_control_one_runner_at_once() {
    const THREADS: usize = 4;
    const ROUNDS: usize = 50;
    let (_publisher, server) = Builder::new(state(0.0, 0.0))
        .capacity::<8, 4>()
        .build::<Probe>()
        .unwrap();
    let runner = Runner::every(server, Duration::from_millis(50)).unwrap();
    let (tx, _rx) = mpsc::channel();
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            let (runner, tx) = (&runner, tx.clone());
            s.spawn(move || {
                for _ in 0..ROUNDS {
                    let id = runner.add_connection(Probe::new(&tx)).unwrap();
                    let _ = runner.stats();
                    runner.remove_connection(id).unwrap();
                }
            });
        }
    });
    let stats = runner.stats();
    let expected = (THREADS * ROUNDS) as u64;
    assert_eq!(
        (stats.connections_added, stats.connections_removed),
        (expected, expected)
    );
    let server = runner.shutdown().unwrap();
    assert_eq!(server.connection_count(), 0);
}

#[test]
fn a_server_run_again_after_shutdown_is_woken_by_its_hook_again() {
    let (tx, rx) = mpsc::channel();
    let (mut publisher, mut server) = notified_server(state(0.0, 0.0));
    server.add_connection(Probe::new(&tx)).unwrap();
    let runner = Runner::notified(server).unwrap();
    publisher.put_update(&state(1.0, 0.0));
    assert_eq!(rx.recv_timeout(PATIENCE), Ok(Event::Update(1)));
    let server = runner.shutdown().unwrap();
    // Nobody serves it: the computation may skip its copies.
    assert!(!publisher.wants_update());

    // Run again: the hook is bound to the new poller's thread, which serves it again.
    let runner = Runner::notified(server).unwrap();
    wait_until("the new poller serves", || publisher.wants_update());
    publisher.put_update(&state(2.0, 0.0));
    assert_eq!(rx.recv_timeout(PATIENCE), Ok(Event::Update(2)));
    let server = runner.shutdown().unwrap();
    assert_eq!(server.stats().updates_delivered, 2);
}
