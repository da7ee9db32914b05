//! Model 2: requesters racing with the poller's drain.
//!
//! Two connections with a share of one request each put requests from three threads (two of
//! them for the same connection) while the poller drains. In every interleaving:
//!
//! - every accepted request is answered exactly once, to the connection that asked;
//! - every refused request comes back unchanged, over quota (the queue holds both shares, so
//!   it is never full), and is never answered;
//! - the counters match what the requesters saw;
//! - once drained, each connection's quota is back to zero: not leaked (it can queue its
//!   whole share again) and not negative (the request after its share is refused).

#![cfg(loom)]

use loom::thread;
use queueserver::{Builder, Config, Query, Request, RequestError};
use queueserver_loom_tests::{check, put, Pair, Probe};

/// Requests each connection may have queued.
const SHARE: u32 = 1;

/// `process_requests` calls racing with the requesters.
const POLLS: usize = 2;

/// The requests one thread put, each with what `put_request` said.
type Outcomes = Vec<(Request<u8>, Result<(), RequestError<u8>>)>;

#[test]
fn requesters_race_with_the_drain() {
    check("requests: requesters vs drain", || {
        let (_publisher, mut server) = Builder::new(Pair::at(0))
            .config(Config::new().with_max_pending_per_connection(SHARE))
            .capacity::<2, 2>()
            .build_with([Probe::requester(), Probe::requester()])
            .unwrap();
        let ids: Vec<_> = server.connection_ids().collect();
        let (a, b) = (ids[0], ids[1]);

        // A asks from two threads at once, twice on one of them: with a share of one, the
        // two race for A's place. B asks once.
        let threads: Vec<_> = [vec![(a, 1), (a, 2)], vec![(a, 3)], vec![(b, 4)]]
            .into_iter()
            .map(|puts| {
                let requester = server.requester();
                thread::spawn(move || -> Outcomes {
                    puts.into_iter()
                        .map(|(from, key)| {
                            let request = Request::key(from, key);
                            (request.clone(), put(&requester, request))
                        })
                        .collect()
                })
            })
            .collect();

        for _ in 0..POLLS {
            let _ = server.process_requests();
        }
        let outcomes: Vec<Outcomes> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let _ = server.process_requests();
        assert_eq!(
            server.pending_requests(),
            0,
            "one call drains a quiet queue"
        );

        let (mut accepted, mut refused) = (0, 0);
        for (request, outcome) in outcomes.iter().flatten() {
            let connection = server.connection(request.from).unwrap();
            let answers = connection.answered(&request.query);
            match outcome {
                Ok(()) => {
                    accepted += 1;
                    assert_eq!(answers, 1, "{request:?} accepted, answered {answers} times");
                }
                Err(error) => {
                    refused += 1;
                    // The queue holds both shares: only a connection over its share
                    // is ever refused.
                    assert!(
                        matches!(error, RequestError::OverQuota(_)),
                        "{request:?} refused as {error:?}"
                    );
                    assert_eq!(answers, 0, "{request:?} refused, answered {answers} times");
                }
            }
        }
        let stats = server.stats();
        assert_eq!(stats.requests_accepted, accepted, "{stats:?}");
        assert_eq!(stats.requests_rejected, refused, "{stats:?}");
        assert_eq!(stats.requests_answered, accepted, "{stats:?}");
        assert_eq!(stats.requests_consolidated + stats.requests_orphaned, 0);

        // Drained, each connection has its whole share again, and not one more.
        let requester = server.requester();
        for (id, key) in [(a, 10), (b, 20)] {
            for n in 0..SHARE as u8 {
                let request = Request::key(id, key + n);
                assert_eq!(put(&requester, request), Ok(()), "quota of {id} leaked");
            }
            let extra = Request::key(id, key + SHARE as u8);
            assert!(
                matches!(put(&requester, extra), Err(RequestError::OverQuota(_))),
                "quota of {id} went below zero"
            );
        }
        let _ = server.process_requests();
        assert_eq!(server.pending_requests(), 0);
        for (id, key) in [(a, 10), (b, 20)] {
            assert_eq!(server.connection(id).unwrap().answered(&Query::Key(key)), 1);
        }
    });
}
