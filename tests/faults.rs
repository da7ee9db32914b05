//! Faults and edge cases the request side and the poller must survive without lying: a
//! panicking connection, an interrupted poll, a dropped server, stale or foreign connection
//! ids, a reused slot, a large queue, a clock that goes back, a panicking copy. One section
//! per fault; each test fails if the fault it names comes back.

mod common;

use common::{state, Answer, Recorder, State};
use core::time::Duration;
use queueserver::request::{queue_bytes, MAX_QUEUE_BYTES};
use queueserver::{
    Abandoned, Builder, Config, Connection, ConnectionError, ConnectionId, IDict, ManualClock,
    NoNotify, Query, QueueServer, Request, RequestError, Requester, Response, Snapshot, Stats,
};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Records the sequence numbers of the snapshots it is sent, for any IDict.
#[derive(Debug, Default)]
struct Seqs(Vec<u64>);

impl<D: IDict> Connection<D> for Seqs {
    fn on_update(&mut self, snapshot: &Snapshot<D>) -> Result<(), ConnectionError> {
        self.0.push(snapshot.seq());
        Ok(())
    }

    fn on_response(&mut self, _: Response<'_, D>) -> Result<(), ConnectionError> {
        Ok(())
    }
}

// ----- a clock that goes back -----

#[test]
fn a_clock_reading_earlier_than_the_last_lets_held_work_through() {
    let interval = Duration::from_millis(10);
    let (mut publisher, mut server) = Builder::new(state(0.0, 0.0))
        .clock(ManualClock::new())
        .config(
            Config::new()
                .with_min_request_interval(interval)
                .with_min_update_interval(interval),
        )
        .build::<Recorder>()
        .unwrap();
    let id = server.add_connection(Recorder::subscriber()).unwrap();
    server.clock().advance(Duration::from_secs(120));
    publisher.put_update(&state(1.0, 0.0));
    server.put_request(Request::key(id, "x")).unwrap();
    let first = server.poll();
    assert_eq!((first.handled, first.retry_after), (2, None));

    // The clock jumps back a minute (a tick counter that wrapped, a reset clock). Held work
    // goes through on the next poll instead of a minute later.
    server.clock().rewind(Duration::from_secs(60));
    publisher.put_update(&state(2.0, 0.0));
    server.put_request(Request::key(id, "x")).unwrap();
    let after_jump = server.poll();
    assert_eq!((after_jump.handled, after_jump.retry_after), (2, None));
    let connection = server.connection(id).unwrap();
    assert_eq!(connection.updates, [1, 2]);
    assert_eq!(
        connection.answers,
        [Answer::Value("x", 1.0, 1), Answer::Value("x", 2.0, 2)]
    );

    // The limits restart from the new reading.
    publisher.put_update(&state(3.0, 0.0));
    server.put_request(Request::key(id, "x")).unwrap();
    let held = server.poll();
    assert_eq!((held.handled, held.retry_after), (0, Some(interval)));
    server.clock().advance(interval);
    assert_eq!(server.poll().handled, 2);
}

// ----- a panicking copy -----

/// An IDict whose copy panics when the source says so, half-way through.
#[derive(Clone, Debug, Default, PartialEq)]
struct Fragile {
    first: u32,
    second: u32,
    poisoned: bool,
}

impl IDict for Fragile {
    type Key = u8;
    type Value = u32;

    fn get(&self, key: &u8) -> Option<u32> {
        match key {
            0 => Some(self.first),
            1 => Some(self.second),
            _ => None,
        }
    }

    fn copy_from(&mut self, source: &Self) {
        self.first = source.first;
        assert!(!source.poisoned, "copy of a poisoned state");
        self.second = source.second;
        self.poisoned = source.poisoned;
    }
}

#[test]
fn a_panic_inside_copy_from_uses_up_no_sequence_number() {
    let (mut publisher, mut server) = QueueServer::new(Fragile::default());
    let id = server.add_connection(Seqs::default()).unwrap();
    let at = |n| Fragile {
        first: n,
        second: n,
        poisoned: false,
    };
    publisher.put_update(&at(1));
    let poisoned = Fragile {
        poisoned: true,
        ..at(2)
    };
    let unwound = catch_unwind(AssertUnwindSafe(|| publisher.put_update(&poisoned)));
    assert!(unwound.is_err());
    assert_eq!(publisher.published(), 1, "the failed publish took a number");
    publisher.put_update(&at(3));
    assert_eq!(publisher.published(), 2);

    let _ = server.poll();
    let stats = server.stats();
    assert_eq!(stats.updates_published, 2);
    assert_eq!(
        stats.updates_overwritten, 1,
        "only snapshot 1 was overwritten"
    );
    assert_eq!(server.snapshot().seq(), 2);
    assert_eq!(server.snapshot().data(), &at(3));
    assert_eq!(server.connection(id).unwrap().0, [2]);
}

// ----- the pending high-water mark -----

/// Puts `refill` more requests through its own requester each time it is answered.
struct Refiller {
    requester: Requester<&'static str, NoNotify, 4, 1>,
    me: Option<ConnectionId>,
    refill: usize,
    answers: usize,
}

impl Connection<State> for Refiller {
    fn on_update(&mut self, _: &Snapshot<State>) -> Result<(), ConnectionError> {
        Ok(())
    }

    fn on_response(&mut self, _: Response<'_, State>) -> Result<(), ConnectionError> {
        self.answers += 1;
        let me = self.me.expect("the id is set before the first request");
        for _ in 0..std::mem::take(&mut self.refill) {
            self.requester.put_request(Request::key(me, "v")).unwrap();
        }
        Ok(())
    }

    fn wants_updates(&self) -> bool {
        false
    }
}

#[test]
fn the_pending_high_water_mark_counts_requests_pending_not_queue_places() {
    // A queue of 4, all of it the one connection's share.
    let (_, mut server) = Builder::new(state(0.0, 0.0))
        .capacity::<4, 1>()
        .build::<Refiller>()
        .unwrap();
    let requester = server.requester();
    let id = server
        .add_connection(Refiller {
            requester: server.requester(),
            me: None,
            refill: 4,
            answers: 0,
        })
        .unwrap();
    server.connection_mut(id).unwrap().me = Some(id);
    for _ in 0..4 {
        requester.put_request(Request::key(id, "x")).unwrap();
    }
    // The first answer refills the whole queue while the batch of 4 is still in hand: 8
    // requests pending at once, twice the queue's capacity, and the mark says so.
    let _ = server.process_requests();
    assert_eq!(server.pending_requests(), 4);
    assert_eq!(server.stats().pending_high_water, 8);
    let _ = server.process_requests();
    let stats = server.stats();
    assert_eq!(stats.pending_high_water, 8);
    assert_eq!(stats.requests_accepted, 8);
    assert_eq!(stats.requests_answered + stats.requests_consolidated, 8);
}

// ----- stale and foreign ids -----

#[test]
#[cfg_attr(
    miri,
    ignore = "70 000 cycles take minutes under Miri; the same case runs natively"
)]
fn a_removed_connections_id_is_never_valid_again() {
    // One slot, reused far more often than a 16-bit generation could count.
    const CYCLES: u32 = 70_000;
    let (_, mut server) = Builder::new(state(0.0, 0.0))
        .capacity::<4, 1>()
        .build::<Recorder>()
        .unwrap();
    let first = server.add_connection(Recorder::requester()).unwrap();
    let mut last = first;
    for _ in 0..CYCLES {
        server.remove_connection(last).unwrap();
        let next = server.add_connection(Recorder::requester()).unwrap();
        assert_eq!(next.index(), first.index());
        assert!(next.generation() > last.generation());
        last = next;
    }
    assert!(!server.is_attached(first));
    assert!(server.connection(first).is_none());
    assert_eq!(
        server.put_request(Request::key(first, "x")),
        Err(RequestError::UnknownConnection(Request::key(first, "x")))
    );
    assert!(server.remove_connection(first).is_none());
    server.put_request(Request::key(last, "x")).unwrap();
    let _ = server.process_requests();
    assert_eq!(server.connection(last).unwrap().answers.len(), 1);
    assert_eq!(server.stats().requests_orphaned, 0);
}

#[test]
fn an_id_issued_by_another_server_is_refused() {
    let (_, mut here) = QueueServer::new(state(0.0, 0.0));
    let (_, mut there) = QueueServer::new(state(0.0, 0.0));
    // The same slot and generation in both servers.
    let ours = here.add_connection(Recorder::requester()).unwrap();
    let theirs = there.add_connection(Recorder::requester()).unwrap();
    assert_eq!(
        (ours.index(), ours.generation()),
        (theirs.index(), theirs.generation())
    );
    assert_ne!(here.id(), there.id());
    assert_ne!(ours, theirs);
    assert_eq!((ours.server(), theirs.server()), (here.id(), there.id()));

    assert_eq!(
        here.requester().put_request(Request::key(theirs, "x")),
        Err(RequestError::UnknownConnection(Request::key(theirs, "x")))
    );
    assert!(!here.is_attached(theirs));
    assert!(here.connection(theirs).is_none());
    assert!(here.remove_connection(theirs).is_none());
    let _ = here.process_requests();
    assert!(here.connection(ours).unwrap().answers.is_empty());
    assert_eq!(here.stats().requests_accepted, 0);
}

// ----- a reused slot -----

#[test]
fn a_connection_in_a_reused_slot_starts_with_an_empty_share() {
    let (_, mut server) = Builder::new(state(0.0, 0.0))
        .capacity::<4, 1>()
        .config(Config::new().with_max_pending_per_connection(2))
        .build::<Recorder>()
        .unwrap();
    let old = server.add_connection(Recorder::requester()).unwrap();
    for _ in 0..2 {
        server.put_request(Request::key(old, "x")).unwrap();
    }
    server.remove_connection(old).unwrap();
    let new = server.add_connection(Recorder::requester()).unwrap();
    assert_eq!(new.index(), old.index());
    // The two requests the old connection left queued do not count against the new one.
    for _ in 0..2 {
        server.put_request(Request::key(new, "v")).unwrap();
    }
    assert!(matches!(
        server.put_request(Request::key(new, "v")),
        Err(RequestError::OverQuota(_))
    ));
    let _ = server.process_requests();
    let stats = server.stats();
    assert_eq!(stats.requests_orphaned, 2);
    assert_eq!(stats.requests_answered + stats.requests_consolidated, 2);
    assert_eq!(server.connection(new).unwrap().answers.len(), 1);
}

#[test]
fn a_slot_skips_a_generation_to_give_a_newcomer_an_empty_share() {
    let (_, mut server) = Builder::new(state(0.0, 0.0))
        .capacity::<4, 1>()
        .config(Config::new().with_max_pending_per_connection(2))
        .build::<Recorder>()
        .unwrap();
    let first = server.add_connection(Recorder::requester()).unwrap();
    for _ in 0..2 {
        server.put_request(Request::key(first, "x")).unwrap();
    }
    server.remove_connection(first).unwrap();
    let second = server.add_connection(Recorder::requester()).unwrap();
    server.remove_connection(second).unwrap();
    // The next generation would share its counter with the first connection, whose
    // requests are still queued: the slot skips it.
    let third = server.add_connection(Recorder::requester()).unwrap();
    assert_eq!(
        (first.generation(), second.generation(), third.generation()),
        (0, 1, 3)
    );
    for _ in 0..2 {
        server.put_request(Request::key(third, "v")).unwrap();
    }
}

#[test]
fn a_slot_reused_twice_without_a_drain_charges_the_newcomer_until_the_next_drain() {
    // The documented exception: both counters of the only slot hold requests of its last
    // two connections.
    let (_, mut server) = Builder::new(state(0.0, 0.0))
        .capacity::<4, 1>()
        .config(Config::new().with_max_pending_per_connection(2))
        .build::<Recorder>()
        .unwrap();
    let mut last = server.add_connection(Recorder::requester()).unwrap();
    for _ in 0..2 {
        for _ in 0..2 {
            server.put_request(Request::key(last, "x")).unwrap();
        }
        server.remove_connection(last).unwrap();
        last = server.add_connection(Recorder::requester()).unwrap();
    }
    assert!(matches!(
        server.put_request(Request::key(last, "v")),
        Err(RequestError::OverQuota(_))
    ));
    let _ = server.process_requests();
    assert_eq!(server.stats().requests_orphaned, 4);
    for _ in 0..2 {
        server.put_request(Request::key(last, "v")).unwrap();
    }
}

// ----- a large queue -----

/// Every `u64` key exists.
#[derive(Clone, Debug, Default)]
struct Wide;

impl IDict for Wide {
    type Key = u64;
    type Value = u64;

    fn get(&self, key: &u64) -> Option<u64> {
        Some(*key)
    }
}

#[test]
fn the_largest_queue_builds_and_runs_on_a_small_thread_stack() {
    // 4096 requests of 8-byte keys (the largest queue allowed for them; a larger one does
    // not compile: see `queueserver::request::MAX_QUEUE_BYTES`) on a thread with a quarter
    // of a spawned thread's default stack.
    assert!(queue_bytes::<u64, 4096>() <= MAX_QUEUE_BYTES);
    let answered = std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(|| {
            let (_, mut server) = Builder::new(Wide)
                .capacity::<4096, 8>()
                .build::<Seqs>()
                .unwrap();
            // The queue, the batch and the slots live on the heap: the server is small.
            assert!(std::mem::size_of_val(&server) < 1024);
            let id = server.add_connection(Seqs::default()).unwrap();
            let requester = server.requester();
            for key in 0..512 {
                requester.put_request(Request::key(id, key)).unwrap();
            }
            let done = server.process_requests();
            (done.handled, server.stats().requests_answered)
        })
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(answered, (512, 512));
}

// ----- a panicking connection -----

/// What a `Moody` connection does when called.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
enum Mood {
    #[default]
    Fine,
    PanicOnUpdate,
    PanicOnAnswer,
    PanicOnSubscribe,
    FailOnUpdate,
}

/// Records its updates, answers and abandoned queries; panics or fails as its mood says.
#[derive(Debug, Default)]
struct Moody {
    mood: Mood,
    subscribed: bool,
    updates: Vec<u64>,
    answers: Vec<Answer>,
    abandoned: Vec<(Query<&'static str>, Abandoned)>,
}

impl Moody {
    fn new(mood: Mood, subscribed: bool) -> Self {
        Self {
            mood,
            subscribed,
            ..Self::default()
        }
    }
}

impl<D: IDict<Key = &'static str, Value = f64>> Connection<D> for Moody {
    fn on_update(&mut self, snapshot: &Snapshot<D>) -> Result<(), ConnectionError> {
        match self.mood {
            Mood::PanicOnUpdate => panic!("update {} was too much", snapshot.seq()),
            Mood::FailOnUpdate => Err(ConnectionError::Overloaded),
            _ => {
                self.updates.push(snapshot.seq());
                Ok(())
            }
        }
    }

    fn on_response(&mut self, response: Response<'_, D>) -> Result<(), ConnectionError> {
        if self.mood == Mood::PanicOnAnswer {
            std::panic::panic_any(String::from("cannot take an answer"));
        }
        self.answers.push(match response {
            Response::Value { key, value, seq } => Answer::Value(key, *value, seq),
            Response::NotFound { key, seq } => Answer::NotFound(key, seq),
            Response::Snapshot(s) => Answer::All(s.seq()),
        });
        Ok(())
    }

    fn wants_updates(&self) -> bool {
        if self.mood == Mood::PanicOnSubscribe {
            panic!("{}", "asked once too often");
        }
        self.subscribed
    }

    fn on_abandoned(
        &mut self,
        query: &Query<&'static str>,
        why: Abandoned,
    ) -> Result<(), ConnectionError> {
        self.abandoned.push((query.clone(), why));
        Ok(())
    }
}

/// The request identity of `Stats`, with `pending` requests still pending.
#[track_caller]
fn assert_balanced(stats: &Stats, pending: usize) {
    assert_eq!(
        stats.requests_accepted,
        stats.requests_answered
            + stats.requests_consolidated
            + stats.requests_orphaned
            + stats.requests_abandoned
            + pending as u64,
        "{stats:#?}"
    );
}

#[test]
fn a_connection_that_panics_is_removed_counted_and_handed_back_and_the_rest_carry_on() {
    let (mut publisher, mut server) = QueueServer::new(state(0.0, 0.0));
    let fine = server.add_connection(Moody::new(Mood::Fine, true)).unwrap();
    let on_update = server
        .add_connection(Moody::new(Mood::PanicOnUpdate, true))
        .unwrap();
    let on_answer = server
        .add_connection(Moody::new(Mood::PanicOnAnswer, false))
        .unwrap();
    publisher.put_update(&state(1.0, 2.0));
    for id in [fine, on_answer, fine] {
        server.put_request(Request::key(id, "x")).unwrap();
    }
    server.put_request(Request::key(fine, "v")).unwrap();

    let done = server.poll();
    assert_eq!(done.failed, 2);
    let connection = server.connection(fine).unwrap();
    assert_eq!(connection.updates, [1]);
    assert_eq!(
        connection.answers,
        [Answer::Value("v", 2.0, 1), Answer::Value("x", 1.0, 1)]
    );
    assert!(!server.is_attached(on_update) && !server.is_attached(on_answer));

    let failed: Vec<_> = std::iter::from_fn(|| server.take_failed()).collect();
    assert_eq!(failed.len(), 2);
    assert_eq!(failed[0].id, on_update);
    let ConnectionError::Panicked(message) = failed[0].error else {
        panic!("{:?}", failed[0].error);
    };
    assert_eq!(message.as_str(), "update 1 was too much");
    assert_eq!(failed[1].id, on_answer);
    assert_eq!(
        failed[1].error.to_string(),
        "connection panicked: cannot take an answer"
    );

    let stats = server.stats();
    assert_eq!(stats.connections_failed, 2);
    assert_eq!(stats.deliveries, 1);
    assert_eq!(
        (stats.requests_answered, stats.requests_consolidated),
        (2, 1)
    );
    assert_eq!(stats.requests_orphaned, 1);
    assert_balanced(&stats, server.pending_requests());
    assert_eq!(server.pending_requests(), 0);

    // Its requests are refused from now on; the others go on being answered.
    assert!(matches!(
        server.put_request(Request::key(on_answer, "x")),
        Err(RequestError::UnknownConnection(_))
    ));
    server.put_request(Request::key(fine, "x")).unwrap();
    let _ = server.poll();
    assert_eq!(server.connection(fine).unwrap().answers.len(), 3);
}

#[test]
fn a_connection_that_panics_when_asked_whether_it_subscribes_is_removed() {
    let (_, mut server) = QueueServer::new(state(0.0, 0.0));
    let fine = server
        .add_connection(Moody::new(Mood::Fine, false))
        .unwrap();
    // Asked at once, when attached.
    let moody = server
        .add_connection(Moody::new(Mood::PanicOnSubscribe, true))
        .unwrap();
    assert!(!server.is_attached(moody));
    assert!(server.is_attached(fine));
    let failed = server.take_failed().unwrap();
    assert_eq!(failed.id, moody);
    assert_eq!(
        failed.error.to_string(),
        "connection panicked: asked once too often"
    );
    assert!(!server.wants_update());
}

#[test]
fn a_poll_loop_catching_panics_never_gets_a_batch_answered_twice() {
    // A hand-written poll loop that catches whatever unwinds out of `poll`.
    let (_, mut server) = QueueServer::new(state(0.0, 0.0));
    let asker = server
        .add_connection(Moody::new(Mood::Fine, false))
        .unwrap();
    let panicker = server
        .add_connection(Moody::new(Mood::PanicOnAnswer, false))
        .unwrap();
    server.put_request(Request::key(asker, "x")).unwrap();
    server.put_request(Request::key(panicker, "x")).unwrap();
    server.put_request(Request::key(asker, "v")).unwrap();
    for _ in 0..3 {
        let polled = catch_unwind(AssertUnwindSafe(|| server.poll()));
        assert!(
            polled.is_ok(),
            "the connection's panic unwound through poll"
        );
    }
    assert_eq!(server.connection(asker).unwrap().answers.len(), 2);
    assert!(!server.is_attached(panicker));
    let stats = server.stats();
    assert_eq!(stats.requests_answered, 2);
    assert_eq!(stats.requests_orphaned, 1);
    assert_balanced(&stats, 0);
}

#[test]
fn process_updates_keeps_its_counts_when_connections_fail_and_panic_in_one_fan_out() {
    let (mut publisher, mut server) = QueueServer::new(state(0.0, 0.0));
    let failing = server
        .add_connection(Moody::new(Mood::FailOnUpdate, true))
        .unwrap();
    let panicking = server
        .add_connection(Moody::new(Mood::PanicOnUpdate, true))
        .unwrap();
    let fine = server.add_connection(Moody::new(Mood::Fine, true)).unwrap();
    publisher.put_update(&state(1.0, 0.0));
    let done = server.process_updates();
    assert_eq!((done.handled, done.failed), (1, 2));
    assert!(!server.is_attached(failing) && !server.is_attached(panicking));
    assert_eq!(server.connection(fine).unwrap().updates, [1]);
    let stats = server.stats();
    assert_eq!(stats.connections_failed, 2);
    assert_eq!(stats.connections_removed, 2);
    assert_eq!(stats.deliveries, 1);
    assert_eq!(stats.updates_delivered, 1);
    let errors: Vec<_> = std::iter::from_fn(|| server.take_failed())
        .map(|f| f.error.to_string())
        .collect();
    assert_eq!(
        errors,
        [
            "connection overloaded",
            "connection panicked: update 1 was too much"
        ]
    );
}

// ----- a panic that unwinds through the poller -----

/// Holds `x`, `v` and `boom`; reading `boom` panics.
#[derive(Clone, Debug, Default)]
struct Touchy;

impl IDict for Touchy {
    type Key = &'static str;
    type Value = f64;

    fn get(&self, key: &&'static str) -> Option<f64> {
        match *key {
            "a" => Some(1.0),
            "z" => Some(26.0),
            "boom" => panic!("reading boom"),
            _ => None,
        }
    }
}

#[test]
fn a_panicking_read_abandons_its_requests_and_the_rest_of_the_batch_is_answered_once() {
    let (_, mut server) = QueueServer::new(Touchy);
    let first = server
        .add_connection(Moody::new(Mood::Fine, false))
        .unwrap();
    let second = server
        .add_connection(Moody::new(Mood::Fine, false))
        .unwrap();
    // Sorted, the batch is: a (first), boom (first, first, second), z (first).
    for key in ["a", "boom", "boom", "z"] {
        server.put_request(Request::key(first, key)).unwrap();
    }
    server.put_request(Request::key(second, "boom")).unwrap();

    let unwound = catch_unwind(AssertUnwindSafe(|| server.poll()));
    assert!(unwound.is_err(), "the read of boom unwinds through poll");
    // Counted as far as it went: `a` answered, the rest pending.
    let stats = server.stats();
    assert_eq!(stats.requests_answered, 1);
    assert_eq!(server.pending_requests(), 4);
    assert_balanced(&stats, server.pending_requests());

    // The next call settles the rest: boom abandoned (each connection told once), z
    // answered; nothing answered twice.
    let _ = server.poll();
    let answers = &server.connection(first).unwrap().answers;
    assert_eq!(
        *answers,
        [Answer::Value("a", 1.0, 0), Answer::Value("z", 26.0, 0)]
    );
    for id in [first, second] {
        assert_eq!(
            server.connection(id).unwrap().abandoned,
            [(Query::Key("boom"), Abandoned::Panicked)]
        );
    }
    let stats = server.stats();
    assert_eq!(stats.requests_abandoned, 3);
    assert_eq!(stats.requests_answered, 2);
    assert_eq!(server.pending_requests(), 0);
    assert_balanced(&stats, 0);
    assert_eq!(stats.connections_failed, 0);
    // And the server goes on.
    server.put_request(Request::key(second, "a")).unwrap();
    let _ = server.poll();
    assert_eq!(server.connection(second).unwrap().answers.len(), 1);
}

/// A key whose comparison panics when it meets 13.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Prickly(u8);

impl PartialOrd for Prickly {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Prickly {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        assert!(self.0 != 13 && other.0 != 13, "13 cannot be compared");
        self.0.cmp(&other.0)
    }
}

/// Every `Prickly` key exists.
#[derive(Clone, Debug, Default)]
struct Pricklies;

impl IDict for Pricklies {
    type Key = Prickly;
    type Value = u8;

    fn get(&self, key: &Prickly) -> Option<u8> {
        Some(key.0)
    }
}

/// Counts its answers and the queries it is told are abandoned.
#[derive(Debug, Default)]
struct Tally {
    answers: usize,
    abandoned: Vec<(Query<Prickly>, Abandoned)>,
}

impl Connection<Pricklies> for Tally {
    fn on_update(&mut self, _: &Snapshot<Pricklies>) -> Result<(), ConnectionError> {
        Ok(())
    }

    fn on_response(&mut self, _: Response<'_, Pricklies>) -> Result<(), ConnectionError> {
        self.answers += 1;
        Ok(())
    }

    fn on_abandoned(
        &mut self,
        query: &Query<Prickly>,
        why: Abandoned,
    ) -> Result<(), ConnectionError> {
        self.abandoned.push((query.clone(), why));
        Ok(())
    }
}

#[test]
fn a_batch_whose_sort_panics_is_abandoned_whole_and_never_answered() {
    let (_, mut server) = QueueServer::new(Pricklies);
    let id = server.add_connection(Tally::default()).unwrap();
    for key in [3, 13, 1] {
        server.put_request(Request::key(id, Prickly(key))).unwrap();
    }
    assert!(catch_unwind(AssertUnwindSafe(|| server.process_requests())).is_err());
    let _ = server.process_requests();
    let tally = server.connection(id).unwrap();
    assert_eq!(tally.answers, 0);
    assert_eq!(tally.abandoned.len(), 3);
    assert!(tally
        .abandoned
        .iter()
        .all(|(_, why)| *why == Abandoned::Panicked));
    let stats = server.stats();
    assert_eq!(stats.requests_abandoned, 3);
    assert_eq!(server.pending_requests(), 0);
    assert_balanced(&stats, 0);
    // Keys that compare are served as before.
    server.put_request(Request::key(id, Prickly(2))).unwrap();
    let _ = server.process_requests();
    assert_eq!(server.connection(id).unwrap().answers, 1);
}

#[test]
fn abandoning_requests_tells_each_connection_once_per_query_and_counts_them() {
    let (_, mut server) = QueueServer::new(state(0.0, 0.0));
    let first = server
        .add_connection(Moody::new(Mood::Fine, false))
        .unwrap();
    let second = server
        .add_connection(Moody::new(Mood::Fine, false))
        .unwrap();
    let gone = server
        .add_connection(Moody::new(Mood::Fine, false))
        .unwrap();
    for (id, key) in [
        (first, "x"),
        (first, "x"),
        (first, "v"),
        (second, "x"),
        (gone, "x"),
    ] {
        server.put_request(Request::key(id, key)).unwrap();
    }
    server.put_request(Request::snapshot(second)).unwrap();
    server.remove_connection(gone).unwrap();
    server.close();
    let done = server.abandon_requests();
    assert_eq!(done.handled, 6);
    assert_eq!(server.pending_requests(), 0);
    let told = |id| server.connection(id).unwrap().abandoned.clone();
    assert_eq!(
        told(first),
        [
            (Query::Key("v"), Abandoned::Stopped),
            (Query::Key("x"), Abandoned::Stopped)
        ]
    );
    assert_eq!(
        told(second),
        [
            (Query::Key("x"), Abandoned::Stopped),
            (Query::All, Abandoned::Stopped)
        ]
    );
    assert!(server.connection(first).unwrap().answers.is_empty());
    let stats = server.stats();
    assert_eq!((stats.requests_abandoned, stats.requests_orphaned), (5, 1));
    assert_eq!(stats.requests_answered + stats.reads, 0);
    assert_balanced(&stats, 0);
}

// ----- a dropped server -----

#[test]
fn a_dropped_server_closes_its_request_side_for_good() {
    let (publisher, mut server) = QueueServer::new(state(0.0, 0.0));
    let id = server.add_connection(Recorder::subscriber()).unwrap();
    let requester = server.requester();
    requester.put_request(Request::key(id, "x")).unwrap();
    assert!(publisher.wants_update());
    drop(server);

    assert!(requester.is_closed());
    assert!(!publisher.wants_update(), "nobody is left to want it");
    for _ in 0..16 {
        assert_eq!(
            requester.put_request(Request::key(id, "x")),
            Err(RequestError::Closed(Request::key(id, "x")))
        );
    }
    assert!(requester.clone().is_closed());
}
