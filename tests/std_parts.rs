//! The std parts: the lock-free `Reader`, and the `Runner` that drives the poller on its
//! own thread, by notification or by interval.

mod common;

use common::{state, Answer, Recorder, State};
use queueserver::{Builder, Connection, ConnectionError, QueueServer, Request, RequestError};
use queueserver::{Response, Runner, Snapshot, ThreadNotify};
use std::sync::mpsc;
use std::time::Duration;

#[test]
fn reader_sees_the_newest_snapshot_the_poller_took() {
    let (mut publisher, mut server) = QueueServer::<State, Recorder>::new(state(0.0, 0.0));
    let reader = server.reader();
    assert_eq!(reader.load().seq(), 0);
    publisher.put_update(&state(1.0, 0.0));
    publisher.put_update(&state(2.0, 0.0));
    // Not taken yet: the reader still sees the old one.
    assert_eq!(reader.load().seq(), 0);
    let _ = server.process_updates();
    let seen = reader.load();
    assert_eq!(seen.seq(), 2);
    assert_eq!(seen.data()["x"], 2.0);
    let owned = reader.clone().load_full();
    assert_eq!(owned.seq(), 2);
    let on_another_thread = std::thread::spawn(move || reader.load().seq());
    assert_eq!(on_another_thread.join().unwrap(), 2);
}

/// Reports every update and answer over a channel.
struct Forward {
    tx: mpsc::Sender<Answer>,
}

impl Connection<State> for Forward {
    fn on_update(&mut self, s: &Snapshot<State>) -> Result<(), ConnectionError> {
        self.tx
            .send(Answer::All(s.seq()))
            .map_err(|_| ConnectionError::Closed)
    }
    fn on_response(&mut self, r: Response<'_, State>) -> Result<(), ConnectionError> {
        let answer = match r {
            Response::Value { key, value, seq } => Answer::Value(key, *value, seq),
            Response::NotFound { key, seq } => Answer::NotFound(key, seq),
            Response::Snapshot(s) => Answer::All(s.seq()),
        };
        self.tx.send(answer).map_err(|_| ConnectionError::Closed)
    }
}

const PATIENCE: Duration = Duration::from_secs(10);

#[test]
fn a_notified_runner_wakes_on_publish_and_request_and_hands_the_server_back() {
    let (tx, rx) = mpsc::channel();
    let (mut publisher, server) = Builder::new(state(0.0, 0.0))
        .notify(ThreadNotify::new())
        .build_with([Forward { tx }])
        .unwrap();
    let id = server.connection_ids().next().unwrap();
    let requester = server.requester();
    let runner = Runner::notified(server).unwrap();

    publisher.put_update(&state(1.0, 0.0));
    assert_eq!(rx.recv_timeout(PATIENCE), Ok(Answer::All(1)));
    requester.put_request(Request::key(id, "x")).unwrap();
    assert_eq!(rx.recv_timeout(PATIENCE), Ok(Answer::Value("x", 1.0, 1)));
    publisher.put_update(&state(2.0, 0.0));
    assert_eq!(rx.recv_timeout(PATIENCE), Ok(Answer::All(2)));

    let server = runner.shutdown().unwrap();
    assert!(server.is_closed());
    assert_eq!(
        requester.put_request(Request::key(id, "x")),
        Err(RequestError::Closed(Request::key(id, "x")))
    );
    let stats = server.stats();
    assert_eq!(stats.updates_published, 2);
    assert_eq!(stats.requests_answered, 1);
}

#[test]
fn an_interval_runner_polls_without_notifications() {
    let (tx, rx) = mpsc::channel();
    let (mut publisher, server) = Builder::new(state(0.0, 0.0))
        .build_with([Forward { tx }])
        .unwrap();
    let id = server.connection_ids().next().unwrap();
    let requester = server.requester();
    let runner = Runner::every(server, Duration::from_millis(1)).unwrap();
    publisher.put_update(&state(3.0, 0.0));
    assert_eq!(rx.recv_timeout(PATIENCE), Ok(Answer::All(1)));
    requester.put_request(Request::key(id, "nope")).unwrap();
    assert_eq!(rx.recv_timeout(PATIENCE), Ok(Answer::NotFound("nope", 1)));
    let server = runner.shutdown().unwrap();
    assert_eq!(server.pending_requests(), 0);
}

#[test]
fn shutdown_answers_requests_held_back_by_the_rate_limit() {
    let (tx, rx) = mpsc::channel();
    let (_, server) = Builder::new(state(0.0, 0.0))
        .notify(ThreadNotify::new())
        .clock(queueserver::StdClock::new())
        .config(queueserver::Config::new().with_min_request_interval(Duration::from_secs(3600)))
        .build_with([Forward { tx }])
        .unwrap();
    let id = server.connection_ids().next().unwrap();
    let requester = server.requester();
    let runner = Runner::notified(server).unwrap();
    requester.put_request(Request::key(id, "x")).unwrap();
    assert_eq!(rx.recv_timeout(PATIENCE), Ok(Answer::Value("x", 0.0, 0)));
    // Held for an hour by the rate limit...
    requester.put_request(Request::key(id, "v")).unwrap();
    // ...but shutdown answers it.
    let server = runner.shutdown().unwrap();
    assert_eq!(rx.try_recv(), Ok(Answer::Value("v", 0.0, 0)));
    assert_eq!(server.pending_requests(), 0);
    assert_eq!(server.stats().requests_answered, 2);
}
