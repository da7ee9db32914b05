//! Model 6: a slot reused while a requester of its former connection is still putting.
//!
//! The poller removes connection A and gives its slot to B, removes B, and gives the slot to
//! C, while a requester puts a request under A's id. The request either got past the slot's
//! check while A was attached (it is accepted, then counted orphaned when drained) or is
//! refused as from an unknown connection. In every interleaving, once the requester has
//! returned and before anything is drained, C has its whole share: A's accepted request
//! never counts against it. (The poller gives C the generation of the counter A's request
//! is not in; it sees that request's count because the requester counts itself in before
//! the tag read-modify-write that the poller's detaching swap synchronises with.)

#![cfg(loom)]

use loom::thread;
use queueserver::{Builder, Config, Query, Request, RequestError};
use queueserver_loom_tests::{check, put, Pair, Probe};

#[test]
fn a_reused_slot_gives_its_newcomer_an_empty_share() {
    check(
        "reuse: slot reuse vs a requester of the old connection",
        || {
            // One slot, a share of one request.
            let (_publisher, mut server) = Builder::new(Pair::at(0))
                .config(Config::new().with_max_pending_per_connection(1))
                .capacity::<2, 1>()
                .build_with([Probe::requester()])
                .unwrap();
            let a = server.connection_ids().next().unwrap();
            let requester = server.requester();

            let late = thread::spawn(move || put(&requester, Request::key(a, 1)));

            let _ = server.remove_connection(a).unwrap();
            let b = server.add_connection(Probe::requester()).unwrap();
            let _ = server.remove_connection(b).unwrap();
            let c = server.add_connection(Probe::requester()).unwrap();
            assert_eq!(c.index(), a.index());

            let outcome = late.join().unwrap();
            if let Err(error) = &outcome {
                assert!(
                    matches!(error, RequestError::UnknownConnection(_)),
                    "A's request refused as {error:?}"
                );
            }
            // Nothing drained yet: C's share must be whole, whatever became of A's request.
            assert_eq!(
                put(&server.requester(), Request::key(c, 2)),
                Ok(()),
                "C's share holds A's request (A's request: {outcome:?}, C: {c})"
            );
            assert!(matches!(
                put(&server.requester(), Request::key(c, 3)),
                Err(RequestError::OverQuota(_))
            ));

            let _ = server.process_requests();
            assert_eq!(server.pending_requests(), 0);
            assert_eq!(server.connection(c).unwrap().answered(&Query::Key(2)), 1);
            let stats = server.stats();
            let accepted = u64::from(outcome.is_ok());
            assert_eq!(stats.requests_orphaned, accepted, "{stats:?}");
            assert_eq!(stats.requests_answered, 1, "{stats:?}");
            assert_eq!(stats.requests_accepted, 1 + accepted, "{stats:?}");

            // Drained: C's share is whole again, and no more.
            assert_eq!(put(&server.requester(), Request::key(c, 4)), Ok(()));
            assert!(matches!(
                put(&server.requester(), Request::key(c, 5)),
                Err(RequestError::OverQuota(_))
            ));
        },
    );
}
