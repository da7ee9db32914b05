//! The host side against a device side running in a thread behind a real TCP socket on
//! 127.0.0.1 (as QEMU's `-chardev socket,server=on` offers the firmware's UART): the
//! handshake, snapshots and answers checked against the state at their seq, refusals,
//! garbage both ways, a host closed and reopened, and a line gone silent.

mod common;

use common::{options, Sim, State, WAIT};
use queueserver_link::host::{Device, Event, GetError, Options};
use queueserver_link::wire::ErrorCode;
use std::net::TcpListener;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[test]
fn snapshots_and_answers_are_the_state_at_their_seq() {
    let sim = Sim::start();
    let device = Device::open(&sim.address(), options()).unwrap();
    let schema = device.wait_ready(WAIT).unwrap();
    let names: Vec<&str> = schema.keys.iter().map(|k| k.name.as_str()).collect();
    assert_eq!(names, ["step", "ch1", "ch2"]);
    let mut seq = 0;
    for _ in 0..20 {
        let snapshot = device.wait_newer(seq, WAIT).unwrap();
        assert!(snapshot.seq > seq);
        seq = snapshot.seq;
        for (name, value) in snapshot.iter() {
            assert_eq!(
                *value,
                State::value_of(seq as u32, name),
                "{name} at #{seq}"
            );
        }
        let json = serde_json::to_value(&*snapshot).unwrap();
        assert_eq!(json["step"], seq);
    }
    for name in ["step", "ch1", "ch2", "ch1", "step"] {
        let answer = device.ask(name, WAIT).unwrap();
        let value = answer.value.expect("found");
        assert_eq!(
            value,
            State::value_of(answer.seq as u32, name),
            "{name} at #{}",
            answer.seq
        );
        assert!(
            answer.seq >= seq,
            "an answer is no older than the snapshots before it"
        );
    }
    let counters = device.counters();
    assert_eq!((counters.garbage_bytes, counters.bad_frames), (0, 0));
    assert!(counters.snapshots >= 20);
}

#[test]
fn an_unknown_name_gets_an_error() {
    let sim = Sim::start();
    let device = Device::open(&sim.address(), options()).unwrap();
    device.wait_ready(WAIT).unwrap();
    assert_eq!(
        device.ask("torque", WAIT),
        Err(GetError::UnknownName("torque".into()))
    );
    assert_eq!(
        device.get("torque"),
        Err(GetError::UnknownName("torque".into()))
    );
    // Sent anyway, the device refuses it by name.
    let tag = device.get_unchecked("torque").unwrap();
    let deadline = Instant::now() + WAIT;
    let events = device.events();
    loop {
        let event = events
            .recv_timeout(deadline - Instant::now())
            .expect("a refusal");
        if let Event::Refused { tag: t, code } = event {
            assert_eq!((t, code), (tag, ErrorCode::UnknownName));
            break;
        }
    }
}

#[test]
fn garbage_both_ways_is_counted_and_the_link_resynchronises() {
    let sim = Sim::start();
    let device = Device::open(&sim.address(), options()).unwrap();
    device.wait_ready(WAIT).unwrap();
    // Device to host: bytes that are no frame, between two frames.
    let garbage: Vec<u8> = (0..40u8)
        .map(|i| i.wrapping_mul(37) | 1)
        .chain([0])
        .collect();
    sim.control
        .garbage
        .lock()
        .unwrap()
        .extend_from_slice(&garbage);
    let deadline = Instant::now() + WAIT;
    while device.counters().bad_frames == 0 {
        assert!(Instant::now() < deadline, "the garbage arrives");
        std::thread::sleep(Duration::from_millis(5));
    }
    let counters = device.counters();
    assert_eq!(counters.garbage_bytes, 40, "{counters:?}");
    assert_eq!(counters.bad_frames, 1);
    let seq = device.latest().unwrap().seq;
    let after = device.wait_newer(seq, WAIT).unwrap();
    assert_eq!(
        after.get("ch1"),
        Some(&State::value_of(after.seq as u32, "ch1"))
    );
    // Host to device: garbage, then a get that must pass.
    let before = device.device_stats(WAIT).unwrap();
    device.write_raw(&[0x42; 25]).unwrap();
    let answer = device.ask("ch2", WAIT).unwrap();
    assert_eq!(
        answer.value,
        Some(State::value_of(answer.seq as u32, "ch2"))
    );
    let stats = device.device_stats(WAIT).unwrap();
    assert_eq!(
        stats.rx_garbage_bytes - before.rx_garbage_bytes,
        25,
        "{stats:?}"
    );
    assert_eq!(stats.rx_bad_frames - before.rx_bad_frames, 1);
}

#[test]
fn a_host_closed_and_reopened_finds_the_device_going_on() {
    let sim = Sim::start();
    let first = Device::open(&sim.address(), options()).unwrap();
    first.wait_ready(WAIT).unwrap();
    let seq = first.wait_newer(0, WAIT).unwrap().seq;
    let answered = first.ask("ch1", WAIT).unwrap().seq;
    first.close();
    std::thread::sleep(Duration::from_millis(50));
    let second = Device::open(&sim.address(), options()).unwrap();
    second.wait_ready(WAIT).unwrap();
    let snapshot = second.wait_newer(0, WAIT).unwrap();
    assert!(
        snapshot.seq > seq.max(answered),
        "the device went on: #{} after #{seq}",
        snapshot.seq
    );
    assert_eq!(
        snapshot.get("step"),
        Some(&State::value_of(snapshot.seq as u32, "step"))
    );
    let stats = second.device_stats(WAIT).unwrap();
    assert!(
        stats.schemas_sent >= 2,
        "the schema again, not a restart: {stats:?}"
    );
    assert!(stats.gets_accepted >= 1, "counters kept: {stats:?}");
    assert_eq!(sim.control.accepted.load(Ordering::Acquire), 2);
}

#[test]
fn a_silent_line_is_declared_dead_and_reopened() {
    let sim = Sim::start();
    let device = Device::open(&sim.address(), options()).unwrap();
    device.wait_ready(WAIT).unwrap();
    let seq = device.wait_newer(0, WAIT).unwrap().seq;
    sim.control.mute.store(true, Ordering::Release);
    let deadline = Instant::now() + WAIT;
    while device.is_connected() {
        assert!(Instant::now() < deadline, "the silence is noticed");
        std::thread::sleep(Duration::from_millis(10));
    }
    sim.control.mute.store(false, Ordering::Release);
    device.wait_ready(WAIT).unwrap();
    let after = device.wait_newer(seq, WAIT).unwrap();
    assert!(after.seq > seq);
    let counters = device.counters();
    assert!(
        counters.disconnects >= 1 && counters.connects >= 2,
        "{counters:?}"
    );
    let events: Vec<Event> = device.events().try_iter().collect();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Disconnected(why) if why.contains("dead"))),
        "{events:?}"
    );
    assert!(sim.control.accepted.load(Ordering::Acquire) >= 2);
    assert!(sim.stats().schemas_sent >= 2);
}

#[test]
fn opening_a_bad_address_is_a_typed_error() {
    assert!(Device::open("tcp:nowhere", Options::default()).is_err());
    assert!(Device::open("", Options::default()).is_err());
    // Nothing listens there (a port just freed).
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    assert!(Device::open(&format!("tcp:127.0.0.1:{port}"), Options::default()).is_err());
    assert!(Device::open("/dev/no-such-serial-port", Options::default()).is_err());
}

#[test]
fn a_device_handle_is_shared_across_threads() {
    fn shared<T: Send + Sync>() {}
    shared::<Device>();
    let sim = Sim::start();
    let device = Arc::new(Device::open(&sim.address(), options()).unwrap());
    device.wait_ready(WAIT).unwrap();
    let askers: Vec<_> = ["step", "ch1", "ch2", "ch1"]
        .into_iter()
        .map(|name| {
            let device = Arc::clone(&device);
            std::thread::spawn(move || {
                for _ in 0..20 {
                    let answer = device.ask(name, WAIT).unwrap();
                    assert_eq!(answer.value, Some(State::value_of(answer.seq as u32, name)));
                }
            })
        })
        .collect();
    for asker in askers {
        asker.join().unwrap();
    }
}

#[test]
fn a_lost_describe_is_sent_again() {
    let sim = Sim::start();
    // Settle: the device's own schema at start goes out to nobody.
    std::thread::sleep(Duration::from_millis(50));
    sim.control.deaf.store(true, Ordering::Release);
    let device = Device::open(&sim.address(), options()).unwrap();
    let schema = device.wait_ready(WAIT).unwrap();
    assert_eq!(schema.keys.len(), 3);
    assert!(
        !sim.control.deaf.load(Ordering::Acquire),
        "the first describe was dropped"
    );
    assert!(
        device.counters().unusable_frames > 0,
        "snapshots came before the schema"
    );
    let snapshot = device.wait_newer(0, WAIT).unwrap();
    assert_eq!(
        snapshot.get("ch2"),
        Some(&State::value_of(snapshot.seq as u32, "ch2"))
    );
}

#[test]
fn a_schema_lost_on_a_new_line_is_asked_for_again() {
    let sim = Sim::start();
    let device = Device::open(&sim.address(), options()).unwrap();
    device.wait_ready(WAIT).unwrap();
    // The line goes silent and is reopened; the device answers the new line's describe
    // while its sending side still drops everything.
    sim.control.mute.store(true, Ordering::Release);
    device.wait_connection(false, WAIT).unwrap();
    let schemas = sim.stats().schemas_sent;
    common::until("the new line's schema, lost", || {
        sim.control.accepted.load(Ordering::Acquire) >= 2 && sim.stats().schemas_sent > schemas
    });
    sim.control.mute.store(false, Ordering::Release);
    // Snapshots come again, decodable with the schema of the first line: only a describe
    // sent again completes the handshake.
    let schema = device.wait_ready(WAIT).unwrap();
    assert_eq!(schema.keys.len(), 3);
    let snapshot = device.wait_newer(0, WAIT).unwrap();
    assert_eq!(
        snapshot.get("ch1"),
        Some(&State::value_of(snapshot.seq as u32, "ch1"))
    );
}
