//! The server's behaviour, one section per part of its contract: construction, the update
//! path, the request path, rate limits, hooks, connections and stats. Single-threaded and
//! deterministic: the clock is a `ManualClock`.

mod common;

use common::{state, Answer, Recorder, State};
use core::time::Duration;
use queueserver::{
    Builder, Config, ConfigError, ConnectionError, ConnectionId, Event, FlagNotify, ManualClock,
    Notify, QueueServer, Request, RequestError, StdClock,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

// ----- construction -----

#[test]
fn handles_cross_threads_as_their_roles_need() {
    fn send<T: Send>() {}
    fn sync<T: Sync>() {}
    send::<queueserver::Publisher<State, queueserver::NoNotify>>();
    send::<QueueServer<State, Recorder>>();
    send::<queueserver::Requester<&'static str, queueserver::NoNotify, 64, 8>>();
    sync::<queueserver::Requester<&'static str, queueserver::NoNotify, 64, 8>>();
    send::<queueserver::Reader<State>>();
    sync::<queueserver::Reader<State>>();
}

#[test]
fn new_starts_from_the_initial_idict() {
    let (publisher, server) = QueueServer::<State, Recorder>::new(state(1.0, 2.0));
    assert_eq!(publisher.published(), 0);
    assert_eq!(server.snapshot().seq(), 0);
    assert_eq!(server.snapshot().data(), &state(1.0, 2.0));
    assert_eq!(server.connection_count(), 0);
    assert_eq!(server.share(), 64 / 8);
    assert_eq!(server.stats(), Default::default());
}

#[test]
fn with_connections_attaches_them_in_order() {
    let (_, server) = QueueServer::with_connections(
        state(0.0, 0.0),
        [Recorder::subscriber(), Recorder::requester()],
    );
    let ids: Vec<_> = server.connection_ids().collect();
    assert_eq!(
        ids,
        [
            ConnectionId::from_parts(server.id(), 0, 0),
            ConnectionId::from_parts(server.id(), 1, 0)
        ]
    );
    assert!(server.connection(ids[0]).unwrap().subscribed);
    assert!(!server.connection(ids[1]).unwrap().subscribed);
    assert_eq!(server.stats().connections_added, 2);
}

#[test]
fn builder_rejects_bad_settings_with_typed_errors() {
    let zero = Builder::new(state(0.0, 0.0))
        .config(Config::new().with_max_pending_per_connection(0))
        .build::<Recorder>();
    assert_eq!(
        zero.err(),
        Some(ConfigError::Share {
            share: 0,
            capacity: 64
        })
    );

    let too_big = Builder::new(state(0.0, 0.0))
        .capacity::<16, 2>()
        .config(Config::new().with_max_pending_per_connection(17))
        .build::<Recorder>();
    assert_eq!(
        too_big.err(),
        Some(ConfigError::Share {
            share: 17,
            capacity: 16
        })
    );

    let no_clock = Builder::new(state(0.0, 0.0))
        .config(Config::new().with_min_request_interval(Duration::from_millis(1)))
        .build::<Recorder>();
    assert_eq!(no_clock.err(), Some(ConfigError::RateLimitWithoutClock));

    let fine = Builder::new(state(0.0, 0.0))
        .clock(StdClock::new())
        .config(Config::new().with_min_request_interval(Duration::from_millis(1)))
        .capacity::<16, 2>()
        .build::<Recorder>();
    assert_eq!(fine.unwrap().1.share(), 8);

    // More slots than queue entries: every connection may still queue one request.
    let (_, tiny) = Builder::new(state(0.0, 0.0))
        .capacity::<2, 8>()
        .build::<Recorder>()
        .unwrap();
    assert_eq!(tiny.share(), 1);
}

#[test]
fn config_errors_explain_themselves() {
    let share = ConfigError::Share {
        share: 0,
        capacity: 8,
    };
    assert_eq!(
        share.to_string(),
        "per-connection share 0 is outside 1..=8 (the queue's capacity)"
    );
    let boxed: Box<dyn std::error::Error> = Box::new(ConfigError::RateLimitWithoutClock);
    assert!(boxed.to_string().contains("no running clock"));
}

// ----- update path -----

#[test]
fn put_update_publishes_a_copy_with_the_next_sequence_number() {
    let (mut publisher, mut server) = QueueServer::new(state(0.0, 0.0));
    let id = server.add_connection(Recorder::subscriber()).unwrap();
    let mut s = state(1.0, 0.0);
    publisher.put_update(&s);
    s.insert("x", 2.0); // changing the source after the call changes nothing published
    assert_eq!(publisher.published(), 1);
    let done = server.process_updates();
    assert_eq!(done.handled, 1);
    assert_eq!(server.snapshot().seq(), 1);
    assert_eq!(server.snapshot().data()["x"], 1.0);
    assert_eq!(server.connection(id).unwrap().updates, [1]);
}

#[test]
fn process_updates_pushes_only_the_newest_and_counts_exactly_what_was_overwritten() {
    let (mut publisher, mut server) = QueueServer::new(state(0.0, 0.0));
    let a = server.add_connection(Recorder::subscriber()).unwrap();
    let b = server.add_connection(Recorder::subscriber()).unwrap();
    let r = server.add_connection(Recorder::requester()).unwrap();

    for i in 1..=5 {
        publisher.put_update(&state(f64::from(i), 0.0));
    }
    assert_eq!(server.process_updates().handled, 2);
    for i in 6..=8 {
        publisher.put_update(&state(f64::from(i), 0.0));
    }
    assert_eq!(server.process_updates().handled, 2);
    // Nothing new: nothing delivered.
    assert_eq!(server.process_updates().handled, 0);

    assert_eq!(server.connection(a).unwrap().updates, [5, 8]);
    assert_eq!(server.connection(b).unwrap().updates, [5, 8]);
    assert!(server.connection(r).unwrap().updates.is_empty());
    let stats = server.stats();
    assert_eq!(stats.updates_published, 8);
    assert_eq!(stats.updates_received, 2);
    assert_eq!(stats.updates_overwritten, 6);
    assert_eq!(stats.updates_delivered, 2);
    assert_eq!(stats.deliveries, 4);
    assert_eq!(
        stats.updates_published,
        stats.updates_received + stats.updates_overwritten
    );
}

#[test]
fn wants_update_follows_subscribers_and_pending_requests() {
    let (publisher, mut server) = QueueServer::new(state(0.0, 0.0));
    assert!(!publisher.wants_update());

    let watcher = server.add_connection(Recorder::subscriber()).unwrap();
    assert!(publisher.wants_update());
    server.remove_connection(watcher).unwrap();
    assert!(!publisher.wants_update());

    let asker = server.add_connection(Recorder::requester()).unwrap();
    assert!(!publisher.wants_update());
    server.put_request(Request::key(asker, "x")).unwrap();
    assert!(publisher.wants_update());
    let _ = server.process_requests();
    assert!(!publisher.wants_update());
    assert!(!server.wants_update());
}

#[test]
fn a_subscription_change_is_seen_by_the_next_process_updates() {
    let (publisher, mut server) = QueueServer::new(state(0.0, 0.0));
    let id = server.add_connection(Recorder::requester()).unwrap();
    assert!(!publisher.wants_update());
    server.connection_mut(id).unwrap().subscribed = true;
    let _ = server.process_updates();
    assert!(publisher.wants_update());
}

// ----- request path -----

#[test]
fn requests_are_consolidated_one_read_per_key_one_answer_per_connection() {
    let (mut publisher, mut server) = QueueServer::new(state(0.0, 0.0));
    let ids: Vec<_> = (0..3)
        .map(|_| server.add_connection(Recorder::requester()).unwrap())
        .collect();
    publisher.put_update(&state(4.0, 5.0));
    for &id in &ids {
        for _ in 0..2 {
            server.put_request(Request::key(id, "x")).unwrap();
        }
        server.put_request(Request::key(id, "v")).unwrap();
    }
    let done = server.process_requests();
    assert_eq!(done.handled, 9);
    for &id in &ids {
        let mut answers = server.connection(id).unwrap().answers.clone();
        answers.sort_by_key(|a| format!("{a:?}"));
        assert_eq!(
            answers,
            [Answer::Value("v", 5.0, 1), Answer::Value("x", 4.0, 1)]
        );
    }
    let stats = server.stats();
    assert_eq!(stats.reads, 2);
    assert_eq!(stats.requests_accepted, 9);
    assert_eq!(stats.requests_answered, 6);
    assert_eq!(stats.requests_consolidated, 3);
    assert_eq!(server.pending_requests(), 0);
}

#[test]
fn the_high_water_mark_keeps_the_most_requests_pending_at_once() {
    let (_, mut server) = QueueServer::new(state(0.0, 0.0));
    let id = server.add_connection(Recorder::requester()).unwrap();
    let put = |server: &QueueServer<State, Recorder>, n| {
        for _ in 0..n {
            server.put_request(Request::key(id, "x")).unwrap();
        }
    };
    put(&server, 3);
    // Seen before the poller ran.
    assert_eq!(server.stats().pending_high_water, 3);
    put(&server, 2);
    let _ = server.process_requests();
    put(&server, 4);
    assert_eq!(server.stats().pending_high_water, 5);
    let _ = server.process_requests();
    put(&server, 7);
    let _ = server.process_requests();
    assert_eq!(server.stats().pending_high_water, 7);
    // A refused request does not count.
    put(&server, 8);
    assert!(server.put_request(Request::key(id, "x")).is_err());
    let _ = server.process_requests();
    assert_eq!(server.stats().pending_high_water, 8);
}

#[test]
fn answers_come_from_the_newest_snapshot() {
    let (mut publisher, mut server) = QueueServer::new(state(0.0, 0.0));
    let id = server.add_connection(Recorder::requester()).unwrap();
    server.put_request(Request::key(id, "x")).unwrap();
    publisher.put_update(&state(1.0, 0.0));
    publisher.put_update(&state(2.0, 0.0));
    // process_updates was never called: process_requests takes the newest itself.
    let _ = server.process_requests();
    assert_eq!(
        server.connection(id).unwrap().answers,
        [Answer::Value("x", 2.0, 2)]
    );
}

#[test]
fn an_unknown_key_gets_not_found_and_all_gets_the_snapshot() {
    let (mut publisher, mut server) = QueueServer::new(state(0.0, 0.0));
    let id = server.add_connection(Recorder::requester()).unwrap();
    publisher.put_update(&state(1.0, 0.0));
    server.put_request(Request::key(id, "nope")).unwrap();
    server.put_request(Request::snapshot(id)).unwrap();
    let _ = server.process_requests();
    assert_eq!(
        server.connection(id).unwrap().answers,
        [Answer::NotFound("nope", 1), Answer::All(1)]
    );
}

#[test]
fn a_full_queue_hands_the_request_back() {
    let (_, mut server) = Builder::new(state(0.0, 0.0))
        .capacity::<4, 1>()
        .build::<Recorder>()
        .unwrap();
    let id = server.add_connection(Recorder::requester()).unwrap();
    assert_eq!(server.share(), 4);
    for _ in 0..4 {
        server.put_request(Request::key(id, "x")).unwrap();
    }
    let refused = server.put_request(Request::key(id, "v")).unwrap_err();
    // Over quota and full at once: the quota is checked first.
    assert_eq!(refused, RequestError::OverQuota(Request::key(id, "v")));

    let (_, mut server) = Builder::new(state(0.0, 0.0))
        .capacity::<4, 2>()
        .config(Config::new().with_max_pending_per_connection(4))
        .build::<Recorder>()
        .unwrap();
    let a = server.add_connection(Recorder::requester()).unwrap();
    let b = server.add_connection(Recorder::requester()).unwrap();
    for _ in 0..4 {
        server.put_request(Request::key(a, "x")).unwrap();
    }
    let refused = server.put_request(Request::key(b, "v")).unwrap_err();
    assert_eq!(refused.to_string(), "request queue is full");
    assert_eq!(refused.into_request(), Request::key(b, "v"));
    assert_eq!(server.stats().requests_rejected, 1);
    assert_eq!(server.stats().requests_accepted, 4);
    // Draining makes room again.
    let _ = server.process_requests();
    server.put_request(Request::key(b, "v")).unwrap();
}

#[test]
fn a_connection_over_its_share_gets_the_request_back_and_others_still_get_in() {
    let (_, mut server) = Builder::new(state(0.0, 0.0))
        .capacity::<8, 4>()
        .build::<Recorder>()
        .unwrap();
    assert_eq!(server.share(), 2);
    let flood = server.add_connection(Recorder::requester()).unwrap();
    let calm = server.add_connection(Recorder::requester()).unwrap();
    let mut refused = Vec::new();
    for _ in 0..100 {
        if let Err(e) = server.put_request(Request::key(flood, "x")) {
            refused.push(e);
        }
    }
    assert_eq!(refused.len(), 98);
    assert!(refused
        .iter()
        .all(|e| *e == RequestError::OverQuota(Request::key(flood, "x"))));
    server.put_request(Request::key(calm, "v")).unwrap();
    server.put_request(Request::key(calm, "x")).unwrap();
    let _ = server.process_requests();
    assert_eq!(server.connection(calm).unwrap().answers.len(), 2);
    assert_eq!(server.connection(flood).unwrap().answers.len(), 1);
    // The share is given back once answered.
    server.put_request(Request::key(flood, "x")).unwrap();
}

#[test]
fn requests_from_unknown_or_removed_connections_come_back() {
    let (_, mut server) = QueueServer::<State, Recorder>::new(state(0.0, 0.0));
    let nobody = ConnectionId::from_parts(server.id(), 3, 0);
    assert_eq!(
        server.put_request(Request::key(nobody, "x")),
        Err(RequestError::UnknownConnection(Request::key(nobody, "x")))
    );
    let beyond = ConnectionId::from_parts(server.id(), 500, 0);
    assert!(matches!(
        server.put_request(Request::key(beyond, "x")),
        Err(RequestError::UnknownConnection(_))
    ));

    let id = server.add_connection(Recorder::requester()).unwrap();
    server.remove_connection(id).unwrap();
    let again = server.add_connection(Recorder::requester()).unwrap();
    assert_eq!(again.index(), id.index());
    assert_ne!(again, id);
    assert!(matches!(
        server.put_request(Request::key(id, "x")),
        Err(RequestError::UnknownConnection(_))
    ));
    server.put_request(Request::key(again, "x")).unwrap();
}

#[test]
fn a_closed_server_hands_requests_back_and_still_answers_what_it_accepted() {
    let (_, mut server) = QueueServer::new(state(0.0, 0.0));
    let id = server.add_connection(Recorder::requester()).unwrap();
    let requester = server.requester();
    requester.put_request(Request::key(id, "x")).unwrap();
    server.close();
    assert!(requester.is_closed());
    assert_eq!(
        requester.put_request(Request::key(id, "v")),
        Err(RequestError::Closed(Request::key(id, "v")))
    );
    assert_eq!(server.pending_requests(), 1);
    let _ = server.process_requests();
    assert_eq!(server.pending_requests(), 0);
    assert_eq!(server.connection(id).unwrap().answers.len(), 1);
}

#[test]
fn requests_of_a_removed_connection_are_counted_orphaned() {
    let (_, mut server) = QueueServer::new(state(0.0, 0.0));
    let gone = server.add_connection(Recorder::requester()).unwrap();
    let stays = server.add_connection(Recorder::requester()).unwrap();
    server.put_request(Request::key(gone, "x")).unwrap();
    server.put_request(Request::key(stays, "x")).unwrap();
    server.remove_connection(gone).unwrap();
    // A new connection in the freed slot must not receive the old connection's answer.
    let newcomer = server.add_connection(Recorder::requester()).unwrap();
    let _ = server.process_requests();
    assert!(server.connection(newcomer).unwrap().answers.is_empty());
    assert_eq!(server.connection(stays).unwrap().answers.len(), 1);
    let stats = server.stats();
    assert_eq!(stats.requests_orphaned, 1);
    assert_eq!(stats.requests_answered, 1);
    assert_eq!(stats.connections_removed, 1);
}

// ----- rate limits -----

#[test]
fn min_update_interval_limits_deliveries_and_says_when_to_retry() {
    let (mut publisher, mut server) = Builder::new(state(0.0, 0.0))
        .clock(ManualClock::new())
        .config(Config::new().with_min_update_interval(Duration::from_millis(100)))
        .build::<Recorder>()
        .unwrap();
    let id = server.add_connection(Recorder::subscriber()).unwrap();

    publisher.put_update(&state(1.0, 0.0));
    assert_eq!(server.process_updates().handled, 1);

    server.clock().advance(Duration::from_millis(30));
    publisher.put_update(&state(2.0, 0.0));
    let held = server.process_updates();
    assert_eq!(held.handled, 0);
    assert_eq!(held.retry_after, Some(Duration::from_millis(70)));

    server.clock().advance(Duration::from_millis(30));
    publisher.put_update(&state(3.0, 0.0));
    assert_eq!(server.process_updates().handled, 0);

    server.clock().advance(Duration::from_millis(40));
    let done = server.process_updates();
    assert_eq!((done.handled, done.retry_after), (1, None));
    // Only the newest of the held-back snapshots goes out.
    assert_eq!(server.connection(id).unwrap().updates, [1, 3]);
    let stats = server.stats();
    assert_eq!(stats.updates_superseded, 1);
    assert_eq!(stats.updates_received, 3);
    assert_eq!(stats.updates_delivered, 2);

    // Closing lifts the limit: the last snapshot goes out at once.
    publisher.put_update(&state(4.0, 0.0));
    assert_eq!(server.process_updates().handled, 0);
    server.close();
    assert_eq!(server.process_updates().handled, 1);
    assert_eq!(server.connection(id).unwrap().updates, [1, 3, 4]);
}

#[test]
fn min_request_interval_holds_requests_and_consolidates_them_into_the_next_read() {
    let (mut publisher, mut server) = Builder::new(state(0.0, 0.0))
        .clock(ManualClock::new())
        .config(Config::new().with_min_request_interval(Duration::from_millis(50)))
        .build::<Recorder>()
        .unwrap();
    let id = server.add_connection(Recorder::requester()).unwrap();

    server.put_request(Request::key(id, "x")).unwrap();
    assert_eq!(server.process_requests().handled, 1);

    server.clock().advance(Duration::from_millis(10));
    server.put_request(Request::key(id, "x")).unwrap();
    server.put_request(Request::key(id, "x")).unwrap();
    let held = server.process_requests();
    assert_eq!(held.handled, 0);
    assert_eq!(held.retry_after, Some(Duration::from_millis(40)));
    assert_eq!(server.pending_requests(), 2);

    publisher.put_update(&state(7.0, 0.0));
    server.clock().advance(Duration::from_millis(40));
    assert_eq!(server.process_requests().handled, 2);
    assert_eq!(
        server.connection(id).unwrap().answers,
        [Answer::Value("x", 0.0, 0), Answer::Value("x", 7.0, 1)]
    );
    let stats = server.stats();
    assert_eq!(stats.reads, 2);
    assert_eq!(stats.requests_consolidated, 1);
}

#[test]
fn a_manual_clock_only_moves_forward() {
    use queueserver::{Clock, NoClock};
    let clock = ManualClock::new();
    assert!(clock.set(Duration::from_millis(5)));
    assert!(!clock.set(Duration::from_millis(4)));
    clock.advance(Duration::from_millis(1));
    assert_eq!(clock.now(), Duration::from_millis(6));
    assert!(clock.is_running());
    assert!(!NoClock.is_running());
}

#[test]
fn closing_lifts_the_request_rate_limit() {
    let (_, mut server) = Builder::new(state(0.0, 0.0))
        .clock(ManualClock::new())
        .config(Config::new().with_min_request_interval(Duration::from_secs(3600)))
        .build::<Recorder>()
        .unwrap();
    let id = server.add_connection(Recorder::requester()).unwrap();
    server.put_request(Request::key(id, "x")).unwrap();
    let _ = server.process_requests();
    server.put_request(Request::key(id, "v")).unwrap();
    assert_eq!(server.process_requests().handled, 0);
    server.close();
    assert_eq!(server.process_requests().handled, 1);
    assert_eq!(server.pending_requests(), 0);
}

// ----- hooks -----

#[derive(Default)]
struct CountingNotify {
    updates: AtomicUsize,
    requests: AtomicUsize,
}

impl Notify for CountingNotify {
    fn notify(&self, event: Event) {
        match event {
            Event::Update => self.updates.fetch_add(1, Ordering::Relaxed),
            Event::Request => self.requests.fetch_add(1, Ordering::Relaxed),
        };
    }
}

#[test]
fn notifications_are_coalesced_to_one_per_poll_cycle() {
    let hook = Arc::new(CountingNotify::default());
    let (mut publisher, mut server) = Builder::new(state(0.0, 0.0))
        .notify(Arc::clone(&hook))
        .build::<Recorder>()
        .unwrap();
    let id = server.add_connection(Recorder::requester()).unwrap();
    let count = |h: &CountingNotify| {
        (
            h.updates.load(Ordering::Relaxed),
            h.requests.load(Ordering::Relaxed),
        )
    };

    for _ in 0..5 {
        publisher.put_update(&state(1.0, 0.0));
    }
    assert_eq!(count(&hook), (1, 0));
    assert!(server.has_pending_events());
    for _ in 0..3 {
        server.put_request(Request::key(id, "x")).unwrap();
    }
    assert_eq!(count(&hook), (1, 1));

    let _ = server.process_updates();
    publisher.put_update(&state(1.0, 0.0));
    server.put_request(Request::key(id, "x")).unwrap();
    // process_updates took the last snapshot, so this publish notifies; the request flag
    // was not cleared yet.
    assert_eq!(count(&hook), (2, 1));

    let _ = server.poll();
    assert!(!server.has_pending_events());
    server.put_request(Request::key(id, "x")).unwrap();
    assert_eq!(count(&hook), (2, 2));
}

#[test]
fn a_snapshot_taken_to_answer_a_request_makes_the_next_publish_notify() {
    let hook = Arc::new(CountingNotify::default());
    let (mut publisher, mut server) = Builder::new(state(0.0, 0.0))
        .notify(Arc::clone(&hook))
        .build::<Recorder>()
        .unwrap();
    let id = server.add_connection(Recorder::subscriber()).unwrap();

    publisher.put_update(&state(1.0, 0.0));
    assert_eq!(hook.updates.load(Ordering::Relaxed), 1);
    server.put_request(Request::key(id, "x")).unwrap();
    // Takes snapshot 1 to answer, without fanning it out.
    let _ = server.process_requests();
    assert_eq!(
        server.connection(id).unwrap().answers,
        [Answer::Value("x", 1.0, 1)]
    );
    assert!(!server.has_pending_events());

    // The buffer was taken, so this publish notifies; the one after replaces an untaken
    // snapshot and does not.
    publisher.put_update(&state(2.0, 0.0));
    publisher.put_update(&state(3.0, 0.0));
    assert_eq!(hook.updates.load(Ordering::Relaxed), 2);
    assert!(server.has_pending_events());
    let _ = server.process_updates();
    assert_eq!(server.connection(id).unwrap().updates, [3]);
    assert!(!server.has_pending_events());

    // Taken again: the next publish notifies again.
    publisher.put_update(&state(4.0, 0.0));
    assert_eq!(hook.updates.load(Ordering::Relaxed), 3);
}

#[test]
fn a_rejected_request_does_not_notify() {
    let hook = Arc::new(CountingNotify::default());
    let (_, server) = Builder::new(state(0.0, 0.0))
        .notify(Arc::clone(&hook))
        .build::<Recorder>()
        .unwrap();
    let nobody = ConnectionId::from_parts(server.id(), 0, 0);
    assert!(server.put_request(Request::key(nobody, "x")).is_err());
    assert_eq!(hook.requests.load(Ordering::Relaxed), 0);
}

#[test]
fn flag_notify_is_set_by_a_publish_and_taken_once() {
    let (mut publisher, server) = Builder::new(state(0.0, 0.0))
        .notify(FlagNotify::new())
        .build::<Recorder>()
        .unwrap();
    assert!(!server.notifier().take());
    publisher.put_update(&state(1.0, 0.0));
    assert!(publisher.notifier().is_set());
    assert!(server.notifier().take());
    assert!(!server.notifier().take());
}

#[test]
fn waker_notify_wakes_the_registered_task() {
    use queueserver::WakerNotify;
    use std::task::{Wake, Waker};

    struct CountWakes(AtomicUsize);
    impl Wake for CountWakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    let (mut publisher, mut server) = Builder::new(state(0.0, 0.0))
        .notify(WakerNotify::new())
        .build::<Recorder>()
        .unwrap();
    let wakes = Arc::new(CountWakes(AtomicUsize::new(0)));
    // Nothing registered: a publish wakes nobody and does not fail.
    publisher.put_update(&state(1.0, 0.0));
    let _ = server.process_updates();

    server.notifier().register(&Waker::from(Arc::clone(&wakes)));
    publisher.put_update(&state(2.0, 0.0));
    publisher.put_update(&state(3.0, 0.0));
    assert_eq!(wakes.0.load(Ordering::Relaxed), 1);
}

// ----- connections -----

#[test]
fn a_failing_connection_is_removed_counted_and_handed_back() {
    let (mut publisher, mut server) = QueueServer::new(state(0.0, 0.0));
    let good = server.add_connection(Recorder::subscriber()).unwrap();
    let bad = server
        .add_connection(Recorder {
            fail_updates: Some(ConnectionError::Closed),
            ..Recorder::subscriber()
        })
        .unwrap();
    publisher.put_update(&state(1.0, 0.0));
    let done = server.process_updates();
    assert_eq!((done.handled, done.failed), (1, 1));
    assert!(!server.is_attached(bad));
    assert!(server.is_attached(good));

    let failed = server.take_failed().unwrap();
    assert_eq!(failed.id, bad);
    assert_eq!(failed.error, ConnectionError::Closed);
    assert_eq!(
        failed.connection.fail_updates,
        Some(ConnectionError::Closed)
    );
    assert!(server.take_failed().is_none());

    // Its later requests are refused: the id is no longer attached.
    assert!(matches!(
        server.put_request(Request::key(bad, "x")),
        Err(RequestError::UnknownConnection(_))
    ));
    let stats = server.stats();
    assert_eq!(stats.connections_failed, 1);
    assert_eq!(stats.connections_removed, 1);
}

#[test]
fn a_connection_failing_on_a_response_loses_its_other_answers_as_orphaned() {
    let (_, mut server) = QueueServer::new(state(0.0, 0.0));
    let bad = server
        .add_connection(Recorder {
            fail_responses: Some(ConnectionError::Failed("socket")),
            ..Recorder::requester()
        })
        .unwrap();
    let good = server.add_connection(Recorder::requester()).unwrap();
    for k in ["x", "v", "nope"] {
        server.put_request(Request::key(bad, k)).unwrap();
        server.put_request(Request::key(good, k)).unwrap();
    }
    let done = server.process_requests();
    assert_eq!(done.failed, 1);
    assert_eq!(server.connection(good).unwrap().answers.len(), 3);
    let stats = server.stats();
    assert_eq!(stats.requests_answered, 3);
    assert_eq!(stats.requests_orphaned, 3);
    assert_eq!(
        stats.requests_accepted,
        stats.requests_answered + stats.requests_consolidated + stats.requests_orphaned
    );
    let failed = server.take_failed().unwrap();
    assert_eq!(failed.error.to_string(), "connection failed: socket");
}

#[test]
fn connection_slots_are_bounded_and_the_extra_one_comes_back() {
    let (_, mut server) = Builder::new(state(0.0, 0.0))
        .capacity::<8, 2>()
        .build::<Recorder>()
        .unwrap();
    let a = server.add_connection(Recorder::requester()).unwrap();
    server.add_connection(Recorder::requester()).unwrap();
    let extra = server
        .add_connection(Recorder {
            subscribed: true,
            ..Recorder::default()
        })
        .unwrap_err();
    assert!(extra.0.subscribed);
    assert_eq!(extra.to_string(), "every connection slot is taken");
    server.remove_connection(a).unwrap();
    assert!(server.remove_connection(a).is_none());
    server.add_connection(extra.0).unwrap();
    assert_eq!(server.connection_count(), 2);
}

#[test]
fn only_the_most_recent_failed_connections_are_kept() {
    let (mut publisher, mut server) = Builder::new(state(0.0, 0.0))
        .capacity::<8, 2>()
        .build::<Recorder>()
        .unwrap();
    let failing = || Recorder {
        fail_updates: Some(ConnectionError::Overloaded),
        ..Recorder::subscriber()
    };
    let mut ids = Vec::new();
    for round in 0..3 {
        ids.push(server.add_connection(failing()).unwrap());
        publisher.put_update(&state(f64::from(round), 0.0));
        let _ = server.process_updates();
    }
    assert_eq!(server.stats().connections_failed, 3);
    let kept: Vec<_> = std::iter::from_fn(|| server.take_failed())
        .map(|f| f.id)
        .collect();
    assert_eq!(kept, ids[1..]);
}
