//! Faults and edge cases the request side and the poller must survive without lying: a
//! panicking connection, an interrupted poll, a dropped server, stale or foreign connection
//! ids, a reused slot, a large queue, a clock that goes back, a panicking copy. One section
//! per fault; each test fails if the fault it names comes back.

mod common;

use common::{state, Answer, Recorder, State};
use core::time::Duration;
use queueserver::{
    Builder, Config, Connection, ConnectionError, ConnectionId, IDict, ManualClock, NoNotify,
    QueueServer, Request, Requester, Response, Snapshot,
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
