//! Model 4: the demand word behind `wants_update`.
//!
//! A requester puts a request while the poller attaches and detaches a subscriber (which
//! sets and clears the subscribed bit of the same word) and answers. In every interleaving:
//! while the poller answers the request, `wants_update` is true (the request was counted
//! before the poller could see it); and once the subscriber is gone and the request
//! answered, `wants_update` is false and nothing is pending: the count neither stuck above
//! zero nor wrapped below it.

#![cfg(loom)]

use loom::thread;
use queueserver::{Builder, Query, Request};
use queueserver_loom_tests::{check, put, Pair, Probe};
use std::sync::Arc;

#[test]
fn demand_follows_requests_and_subscribers() {
    check("demand: requests vs subscription changes", || {
        let (publisher, mut server) = Builder::new(Pair::at(0))
            .capacity::<2, 2>()
            .build::<Probe>()
            .unwrap();
        // The computation's view, read from the poller's thread while it answers.
        let publisher = Arc::new(publisher);
        let asker = {
            let publisher = Arc::clone(&publisher);
            Probe::requester().on_answer(move |query| {
                assert!(
                    publisher.wants_update(),
                    "{query:?} answered while wants_update is false"
                );
            })
        };
        let id = server.add_connection(asker).unwrap();
        assert!(!publisher.wants_update(), "no subscriber, no request");
        let requester = server.requester();

        let client = thread::spawn(move || put(&requester, Request::key(id, 1)));

        let subscriber = server.add_connection(Probe::subscriber()).unwrap();
        assert!(publisher.wants_update(), "a subscriber is attached");
        let _ = server.remove_connection(subscriber).unwrap();
        let _ = server.process_requests();

        assert_eq!(client.join().unwrap(), Ok(()));
        let _ = server.process_requests();
        assert_eq!(server.connection(id).unwrap().answered(&Query::Key(1)), 1);
        assert_eq!(server.pending_requests(), 0, "nothing is pending");
        assert!(
            !publisher.wants_update(),
            "wants_update stays true with no subscriber and nothing pending"
        );
    });
}
