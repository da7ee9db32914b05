//! Regression tests for bugs the fuzz targets found, each reduced to the public API.

mod common;

use common::{state, Recorder};
use queueserver::{Config, ConfigError, ConnectionError, QueueServer, Request};

/// `server_ops`: repeats of a request were counted consolidated ("answered by that
/// request's answer") even when that request was never answered because its connection
/// had failed or been removed. They are orphaned, like the request they repeat.
#[test]
fn repeats_of_an_unanswered_request_are_orphaned_not_consolidated() {
    // The connection fails on its first answer.
    let (_, mut server) = QueueServer::new(state(0.0, 0.0));
    let failing = server
        .add_connection(Recorder {
            fail_responses: Some(ConnectionError::Closed),
            ..Recorder::requester()
        })
        .unwrap();
    let answered = server.add_connection(Recorder::requester()).unwrap();
    for _ in 0..2 {
        server.put_request(Request::snapshot(failing)).unwrap();
        server.put_request(Request::snapshot(answered)).unwrap();
    }
    let done = server.process_requests();
    assert_eq!((done.handled, done.failed), (4, 1));
    let stats = server.stats();
    assert_eq!(stats.requests_answered, 1);
    assert_eq!(stats.requests_consolidated, 1);
    assert_eq!(stats.requests_orphaned, 2);

    // The connection is removed before the poller answers.
    let (_, mut server) = QueueServer::new(state(0.0, 0.0));
    let gone = server.add_connection(Recorder::requester()).unwrap();
    for _ in 0..3 {
        server.put_request(Request::key(gone, "x")).unwrap();
    }
    server.remove_connection(gone).unwrap();
    assert_eq!(server.process_requests().handled, 3);
    let stats = server.stats();
    assert_eq!(stats.requests_consolidated, 0);
    assert_eq!(stats.requests_orphaned, 3);
    assert_eq!(
        stats.requests_accepted,
        stats.requests_answered + stats.requests_consolidated + stats.requests_orphaned
    );
}

/// `parse`: `Config::max_pending_per_connection` and `Config::validate` divided by `maxc`
/// and panicked for `maxc` = 0, where a bad value must be a `ConfigError`, never a panic.
#[test]
fn the_default_share_of_zero_slots_is_the_whole_queue() {
    let config = Config::new();
    assert_eq!(config.max_pending_per_connection(8, 0), 8);
    assert_eq!(config.validate(8, 0, false), Ok(()));
    assert_eq!(
        config.validate(0, 0, true),
        Err(ConfigError::Share {
            share: 1,
            capacity: 0
        })
    );
}

/// `server_ops` (seed `read-panics`): a batch cut short by a panicking read never closed,
/// and the pending high-water mark, sampled only as a batch closed, lost the peak that
/// batch had been (four requests pending, the mark said two).
#[test]
fn the_pending_high_water_mark_keeps_the_peak_of_a_batch_a_panic_cut_short() {
    #[derive(Clone)]
    struct Touchy;
    impl queueserver::IDict for Touchy {
        type Key = u8;
        type Value = u8;
        fn get(&self, key: &u8) -> Option<u8> {
            assert!(*key != 0, "reading key 0");
            Some(*key)
        }
    }
    struct Sink;
    impl queueserver::Connection<Touchy> for Sink {
        fn on_update(&mut self, _: &queueserver::Snapshot<Touchy>) -> Result<(), ConnectionError> {
            Ok(())
        }
        fn on_response(
            &mut self,
            _: queueserver::Response<'_, Touchy>,
        ) -> Result<(), ConnectionError> {
            Ok(())
        }
    }
    let (_, mut server) = QueueServer::new(Touchy);
    let id = server.add_connection(Sink).unwrap();
    for key in [0, 0, 1, 2] {
        server.put_request(Request::key(id, key)).unwrap();
    }
    let unwound =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| server.process_requests()));
    assert!(unwound.is_err());
    assert_eq!(server.stats().pending_high_water, 4);
    let _ = server.process_requests();
    let stats = server.stats();
    assert_eq!(stats.pending_high_water, 4);
    assert_eq!((stats.requests_abandoned, stats.requests_answered), (2, 2));
}

/// `server_ops` (`regression-subscription-after-an-unwound-call`): a subscriber that failed
/// in a call a panic then cut short stayed counted as subscribed, since the demand word
/// was refreshed only at the end of the call, and `wants_update` stayed true with nobody
/// left to want it. The word is now refreshed as soon as a connection fails.
#[test]
fn wants_update_forgets_a_subscriber_that_failed_in_a_call_a_panic_cut_short() {
    #[derive(Clone)]
    struct Touchy;
    impl queueserver::IDict for Touchy {
        type Key = u8;
        type Value = u8;
        fn get(&self, key: &u8) -> Option<u8> {
            assert!(*key != 9, "reading key 9");
            Some(*key)
        }
    }
    /// Subscribes, and fails on any answer.
    struct Refuses;
    impl queueserver::Connection<Touchy> for Refuses {
        fn on_update(&mut self, _: &queueserver::Snapshot<Touchy>) -> Result<(), ConnectionError> {
            Ok(())
        }
        fn on_response(
            &mut self,
            _: queueserver::Response<'_, Touchy>,
        ) -> Result<(), ConnectionError> {
            Err(ConnectionError::Closed)
        }
    }
    let (publisher, mut server) = QueueServer::new(Touchy);
    let id = server.add_connection(Refuses).unwrap();
    server.put_request(Request::key(id, 1)).unwrap();
    server.put_request(Request::key(id, 9)).unwrap();
    // Key 1: the connection fails; key 9: the read panics.
    let unwound =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| server.process_requests()));
    assert!(unwound.is_err());
    assert_eq!(server.stats().connections_failed, 1);
    let _ = server.abandon_requests();
    assert_eq!(server.pending_requests(), 0);
    assert!(!publisher.wants_update(), "no subscriber, nothing pending");
}

/// `server_ops` (`regression-the-free-tag-as-a-generation`): a free slot's tag holds
/// `u32::MAX`, and an id whose generation was `u32::MAX` matched it: a request for a slot
/// with no connection was accepted (or refused as closed), where it must be refused as from
/// an unknown connection.
#[test]
fn an_id_with_the_free_tag_as_its_generation_is_unknown() {
    let (_, mut server) = QueueServer::<common::State, Recorder>::new(state(0.0, 0.0));
    let forged = queueserver::ConnectionId::from_parts(server.id(), 0, u32::MAX);
    let request = Request::key(forged, "x");
    assert_eq!(
        server.put_request(request.clone()),
        Err(queueserver::RequestError::UnknownConnection(
            request.clone()
        ))
    );
    server.close();
    assert_eq!(
        server.put_request(request.clone()),
        Err(queueserver::RequestError::UnknownConnection(request))
    );
    assert_eq!(server.stats().requests_accepted, 0);
    assert!(!server.is_attached(forged));
}
