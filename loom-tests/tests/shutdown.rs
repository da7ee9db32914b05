//! Model 5: connection removal and runner shutdown racing with requests.
//!
//! No accepted request is lost without being reported:
//!
//! - removal: the poller removes a connection and gives its slot to a new one while
//!   requests under the old id are being put. Each accepted request is either answered to
//!   the connection that asked (before its removal) or counted orphaned, never answered to
//!   the newcomer; each refused one comes back as from an unknown connection.
//! - shutdown: `Runner::shutdown` closes the request side while a requester puts. Each
//!   request is either accepted and answered exactly once before `shutdown` returns the
//!   server, or handed back as closed (and so is every later one).
//! - a poller that panics: reading one request's key panics, and the poller gives up while
//!   the requester puts another. Each accepted request is answered or abandoned (its
//!   connection told) exactly once, each refused one refused as closed; nothing is left
//!   pending, and `wants_update` is false.

#![cfg(loom)]

use loom::thread;
use queueserver::{Builder, Query, Request, RequestError, Runner, StopCause, ThreadNotify};
use queueserver_loom_tests::{check, put, quiet_deliberate_panics, Pair, Probe, PANICS};

/// Requests put by the requester.
const PUTS: u8 = 2;

#[test]
fn removal_races_with_requests() {
    check("shutdown: removal vs requests", || {
        // One slot: the newcomer takes the slot of the connection removed.
        let (_publisher, mut server) = Builder::new(Pair::at(0))
            .capacity::<2, 1>()
            .build_with([Probe::requester()])
            .unwrap();
        let old = server.connection_ids().next().unwrap();
        let requester = server.requester();

        let client = thread::spawn(move || {
            (1..=PUTS)
                .map(|key| put(&requester, Request::key(old, key)))
                .collect::<Vec<_>>()
        });

        let _ = server.process_requests();
        let removed = server.remove_connection(old).unwrap();
        let new = server.add_connection(Probe::requester()).unwrap();
        assert_eq!(new.index(), old.index());
        let _ = server.process_requests();

        let outcomes = client.join().unwrap();
        let _ = server.process_requests();
        assert_eq!(server.pending_requests(), 0);

        let mut accepted = 0;
        for (key, outcome) in (1..=PUTS).zip(&outcomes) {
            let answers = removed.answered(&Query::Key(key));
            match outcome {
                Ok(()) => {
                    accepted += 1;
                    assert!(answers <= 1, "key {key} answered {answers} times");
                }
                Err(error) => {
                    assert!(
                        matches!(error, RequestError::UnknownConnection(_)),
                        "key {key} refused as {error:?}"
                    );
                    assert_eq!(answers, 0, "refused key {key} was answered");
                }
            }
        }
        let newcomer = server.connection(new).unwrap();
        assert!(
            newcomer.answers.is_empty(),
            "the newcomer got answers to requests of the connection it replaced: {:?}",
            newcomer.answers
        );
        let stats = server.stats();
        assert_eq!(stats.requests_accepted, accepted, "{stats:?}");
        assert_eq!(stats.requests_answered, removed.answers.len() as u64);
        assert_eq!(
            stats.requests_accepted,
            stats.requests_answered + stats.requests_orphaned,
            "every accepted request answered or counted orphaned: {stats:?}"
        );
    });
}

#[test]
fn shutdown_races_with_requests() {
    check("shutdown: runner shutdown vs requests", || {
        let (_publisher, server) = Builder::new(Pair::at(0))
            .notify(ThreadNotify::new())
            .capacity::<2, 1>()
            .build_with([Probe::requester()])
            .unwrap();
        let id = server.connection_ids().next().unwrap();
        let requester = server.requester();
        let runner = Runner::notified(server).unwrap();

        let client = thread::spawn(move || {
            (1..=PUTS)
                .map(|key| put(&requester, Request::key(id, key)))
                .collect::<Vec<_>>()
        });

        let server = runner.shutdown().unwrap();
        let outcomes = client.join().unwrap();

        assert!(server.is_closed());
        assert_eq!(server.pending_requests(), 0, "an accepted request was left");
        let probe = server.connection(id).unwrap();
        let mut accepted = 0;
        let mut closed = false;
        for (key, outcome) in (1..=PUTS).zip(&outcomes) {
            let answers = probe.answered(&Query::Key(key));
            match outcome {
                Ok(()) => {
                    assert!(!closed, "key {key} accepted after a request was refused");
                    accepted += 1;
                    assert_eq!(answers, 1, "accepted key {key} answered {answers} times");
                }
                Err(error) => {
                    assert!(
                        matches!(error, RequestError::Closed(_)),
                        "key {key} refused as {error:?}"
                    );
                    closed = true;
                    assert_eq!(answers, 0, "refused key {key} was answered");
                }
            }
        }
        let stats = server.stats();
        assert_eq!(stats.requests_accepted, accepted, "{stats:?}");
        assert_eq!(stats.requests_answered, accepted, "{stats:?}");
        assert_eq!(stats.requests_orphaned, 0, "{stats:?}");
    });
}

#[test]
fn a_poller_that_panics_gives_up_without_losing_a_request() {
    quiet_deliberate_panics();
    check("shutdown: a poller that panics vs requests", || {
        let (publisher, server) = Builder::new(Pair::at(0))
            .notify(ThreadNotify::new())
            .capacity::<2, 1>()
            .build_with([Probe::requester()])
            .unwrap();
        let id = server.connection_ids().next().unwrap();
        let requester = server.requester();
        let runner = Runner::notified(server).unwrap();

        // The poller panics reading PANICS; the other request races its giving up.
        let client = thread::spawn(move || {
            [PANICS, 1]
                .into_iter()
                .map(|key| (key, put(&requester, Request::key(id, key))))
                .collect::<Vec<_>>()
        });
        let outcomes = client.join().unwrap();
        let crashed = match runner.shutdown() {
            Ok(_) => panic!("the poller went on after a panic"),
            Err(crashed) => crashed,
        };
        assert!(matches!(crashed.cause, StopCause::Panicked(_)));
        let server = crashed.server;
        assert!(server.is_closed());
        assert_eq!(server.pending_requests(), 0, "an accepted request was left");
        assert!(
            !publisher.wants_update(),
            "nobody serves the server any more"
        );

        let probe = server.connection(id).unwrap();
        let mut accepted = 0;
        for (key, outcome) in &outcomes {
            let query = Query::Key(*key);
            let (answered, abandoned) = (probe.answered(&query), probe.abandoned(&query));
            match outcome {
                Ok(()) => {
                    accepted += 1;
                    assert_eq!(
                        answered + abandoned,
                        1,
                        "key {key} accepted: answered {answered}, abandoned {abandoned}"
                    );
                }
                Err(error) => {
                    assert!(
                        matches!(error, RequestError::Closed(_)),
                        "key {key} refused as {error:?}"
                    );
                    assert_eq!(answered + abandoned, 0, "refused key {key} was settled");
                }
            }
        }
        assert!(
            outcomes[0].1.is_ok(),
            "the first request finds the poller running"
        );
        assert_eq!(probe.abandoned(&Query::Key(PANICS)), 1);
        let stats = server.stats();
        assert_eq!(stats.requests_accepted, accepted, "{stats:?}");
        assert_eq!(
            stats.requests_answered + stats.requests_abandoned,
            accepted,
            "{stats:?}"
        );
        assert_eq!(stats.requests_orphaned + stats.requests_consolidated, 0);
    });
}
