//! Faults and edge cases the request side and the poller must survive without lying: a
//! panicking connection, an interrupted poll, a dropped server, stale or foreign connection
//! ids, a reused slot, a large queue, a clock that goes back, a panicking copy. One section
//! per fault; each test fails if the fault it names comes back.

mod common;

use common::{state, Answer, Recorder};
use core::time::Duration;
use queueserver::{Builder, Config, ManualClock, Request};

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
