//! Model 7: a server dropped while a requester puts.
//!
//! The poller's owner drops the server (with a subscriber attached) while a requester puts
//! two requests. A request is accepted only if it counted itself in before the drop closed
//! the request side; after the drop, every put is refused as closed, `is_closed` is true,
//! and `wants_update` is false, whatever was pending: no requester is told a request was
//! accepted when nobody will answer it.

#![cfg(loom)]

use loom::thread;
use queueserver::{Builder, Config, Request, RequestError};
use queueserver_loom_tests::{check, put, Pair, Probe};

#[test]
fn dropping_the_server_closes_the_request_side_for_good() {
    check("drop: dropping the server vs requests", || {
        // Room for both requests: nothing drains them.
        let (publisher, mut server) = Builder::new(Pair::at(0))
            .config(Config::new().with_max_pending_per_connection(2))
            .capacity::<2, 2>()
            .build_with([Probe::requester()])
            .unwrap();
        let id = server.connection_ids().next().unwrap();
        server.add_connection(Probe::subscriber()).unwrap();
        let requester = server.requester();
        let later = server.requester();

        let client = thread::spawn(move || {
            (1..=2)
                .map(|key| put(&requester, Request::key(id, key)))
                .collect::<Vec<_>>()
        });
        drop(server);

        // After the drop, on this thread: closed, refused, nothing wanted.
        assert!(later.is_closed());
        assert!(matches!(
            put(&later, Request::key(id, 9)),
            Err(RequestError::Closed(_))
        ));
        assert!(
            !publisher.wants_update(),
            "wants_update is true after the server was dropped"
        );

        // The requester's puts: accepted ones first, then only refusals as closed.
        let outcomes = client.join().unwrap();
        let mut closed = false;
        for outcome in &outcomes {
            match outcome {
                Ok(()) => assert!(!closed, "a request accepted after one was refused"),
                Err(error) => {
                    assert!(
                        matches!(error, RequestError::Closed(_)),
                        "refused as {error:?}"
                    );
                    closed = true;
                }
            }
        }
        assert!(!publisher.wants_update());
    });
}
