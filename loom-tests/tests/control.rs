//! Model 8: talking to a running poller.
//!
//! A thread adds a connection through the `Runner` while the poller sleeps (parked, woken
//! only by notifications), and while the poller stops after a panic. The poller never
//! waits for the caller: it looks into the mailbox with a `try_lock` once per cycle, and a
//! caller it finds posting wakes it when done. In every interleaving:
//!
//! - a call made while the poller runs is answered, with the connection attached: a lost
//!   wake-up leaves the caller waiting for an answer and the poller parked, and loom reports
//!   the deadlock;
//! - a call racing a poller that stops by itself (a panic in the server's work) either
//!   attaches the connection (it is in the server handed back) or hands it back as the
//!   poller had stopped; it is never lost, and the caller never waits for ever. (A call
//!   cannot race `shutdown`, which takes the runner.)

#![cfg(loom)]

use loom::thread;
use queueserver::{AddError, Builder, Query, Request, Runner, StopCause, ThreadNotify};
use queueserver_loom_tests::{check, put, quiet_deliberate_panics, Pair, Probe, PANICS};
use std::sync::Arc;

#[test]
fn a_control_call_reaches_a_sleeping_poller() {
    check("control: add_connection vs a parked runner", || {
        let (_publisher, server) = Builder::new(Pair::at(0))
            .notify(ThreadNotify::new())
            .capacity::<2, 1>()
            .build::<Probe>()
            .unwrap();
        let runner = Arc::new(Runner::notified(server).unwrap());

        let caller = {
            let runner = Arc::clone(&runner);
            thread::spawn(move || runner.add_connection(Probe::requester()))
        };
        // Only the poller can answer: if it sleeps through the call, loom reports a
        // deadlock.
        let id = match caller.join().unwrap() {
            Ok(id) => id,
            Err(error) => panic!("add_connection to a running poller: {error}"),
        };
        assert_eq!(runner.stats().connections_added, 1);

        let runner = Arc::into_inner(runner).unwrap();
        let server = runner.shutdown().unwrap();
        assert!(server.is_attached(id));
        assert_eq!(server.connection_count(), 1);
    });
}

#[test]
fn a_control_call_racing_a_poller_that_stops_is_answered_and_loses_nothing() {
    quiet_deliberate_panics();
    check("control: add_connection vs a poller that panics", || {
        let (_publisher, mut server) = Builder::new(Pair::at(0))
            .notify(ThreadNotify::new())
            .capacity::<2, 2>()
            .build::<Probe>()
            .unwrap();
        let asker = server.add_connection(Probe::requester()).unwrap();
        let requester = server.requester();
        let runner = Arc::new(Runner::notified(server).unwrap());

        let caller = {
            let runner = Arc::clone(&runner);
            thread::spawn(move || runner.add_connection(Probe::subscriber()))
        };
        // The poller panics reading this key, and stops, while the caller may be posting
        // or waiting for its answer.
        assert_eq!(put(&requester, Request::key(asker, PANICS)), Ok(()));
        let added = caller.join().unwrap();

        let runner = Arc::into_inner(runner).unwrap();
        let crashed = match runner.shutdown() {
            Ok(_) => panic!("the poller read the key that panics and went on"),
            Err(crashed) => crashed,
        };
        assert!(matches!(crashed.cause, StopCause::Panicked(_)));
        let server = crashed.server;
        match added {
            Ok(id) => assert!(server.is_attached(id)),
            Err(AddError::Stopped(probe)) => {
                assert!(probe.updates.is_empty());
                assert_eq!(server.connection_count(), 1);
            }
            Err(error) => panic!("refused as {error}"),
        }
        // The request that made it panic was abandoned, its connection told.
        let asker = server.connection(asker).unwrap();
        assert_eq!(asker.abandoned(&Query::Key(PANICS)), 1);
        assert_eq!(server.stats().requests_abandoned, 1);
        assert_eq!(server.pending_requests(), 0);
    });
}
