//! Faults and edge cases the request side and the poller must survive without lying: a
//! panicking connection, an interrupted poll, a dropped server, stale or foreign connection
//! ids, a reused slot, a large queue, a clock that goes back, a panicking copy. One section
//! per fault; each test fails if the fault it names comes back.

mod common;

use common::{state, Answer, Recorder, State};
use core::time::Duration;
use queueserver::request::{queue_bytes, MAX_QUEUE_BYTES};
use queueserver::{
    Builder, Config, Connection, ConnectionError, ConnectionId, IDict, ManualClock, NoNotify,
    QueueServer, Request, RequestError, Requester, Response, Snapshot,
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
