//! Logging: a failing connection is logged by the poller, and nothing is ever logged from
//! the computation's thread or the request path.

mod common;

use common::{state, Recorder};
use queueserver::{ConnectionError, QueueServer, Request};
use std::sync::Mutex;
use std::thread::{self, ThreadId};

struct Capture {
    records: Mutex<Vec<(ThreadId, log::Level, String)>>,
}

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        if record.target().starts_with("queueserver") {
            self.records.lock().unwrap().push((
                thread::current().id(),
                record.level(),
                record.args().to_string(),
            ));
        }
    }
    fn flush(&self) {}
}

static CAPTURE: Capture = Capture {
    records: Mutex::new(Vec::new()),
};

#[test]
fn only_the_poller_logs_and_a_failure_is_logged_as_a_warning() {
    log::set_logger(&CAPTURE).unwrap();
    log::set_max_level(log::LevelFilter::Trace);

    let (mut publisher, mut server) = QueueServer::new(state(0.0, 0.0));
    let bad = server
        .add_connection(Recorder {
            fail_updates: Some(ConnectionError::Overloaded),
            ..Recorder::subscriber()
        })
        .unwrap();
    let asker = server.add_connection(Recorder::requester()).unwrap();
    let requester = server.requester();
    let poller = thread::current().id();

    // The computation and a requester on their own threads: nothing may be logged there.
    let computation = thread::spawn(move || {
        for i in 0..100 {
            publisher.put_update(&state(f64::from(i), 0.0));
            let _ = publisher.wants_update();
        }
        thread::current().id()
    })
    .join()
    .unwrap();
    let requesting = thread::spawn(move || {
        for _ in 0..100 {
            let _ = requester.put_request(Request::key(asker, "x"));
        }
        thread::current().id()
    })
    .join()
    .unwrap();

    let _ = server.poll();
    let records = CAPTURE.records.lock().unwrap().clone();
    assert!(records
        .iter()
        .all(|(t, _, _)| *t != computation && *t != requesting));
    assert!(records.iter().all(|(t, _, _)| *t == poller));
    let warning = format!("connection {bad} removed: connection overloaded");
    assert!(
        records
            .iter()
            .any(|(_, level, msg)| *level == log::Level::Warn && *msg == warning),
        "no warning for the failed connection in {records:?}"
    );
}
