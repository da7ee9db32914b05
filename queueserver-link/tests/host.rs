//! The host side against a device side running in a thread behind a real TCP socket on
//! 127.0.0.1 (as QEMU's `-chardev socket,server=on` offers the firmware's UART): the
//! handshake, snapshots and answers checked against the state at their seq, refusals,
//! garbage both ways, a host closed and reopened, and a line gone silent.

use queueserver::{Builder, Config, IDict, ManualClock};
use queueserver_link::device::Parts;
use queueserver_link::host::{Device, Event, GetError, Options, Value};
use queueserver_link::wire::ErrorCode;
use queueserver_link::{Link, LinkStats, Storage};
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[derive(Clone, Debug, PartialEq, IDict)]
struct State {
    step: u32,
    ch1: f32,
    ch2: f32,
}

impl State {
    fn at(step: u32) -> Self {
        Self {
            step,
            ch1: (step % 1000) as f32 * 0.5,
            ch2: (step.wrapping_mul(7) % 1000) as f32 * 0.25,
        }
    }

    fn value_of(step: u32, name: &str) -> Value {
        let s = Self::at(step);
        match name {
            "step" => Value::U64(s.step.into()),
            "ch1" => Value::F32(s.ch1),
            "ch2" => Value::F32(s.ch2),
            other => panic!("no key {other}"),
        }
    }
}

type StateLink = Link<'static, State, 4, 64, 256>;

/// What the test tells the simulated device.
#[derive(Default)]
struct Control {
    stop: AtomicBool,
    /// Send nothing (the line goes silent); still read, to see the host close.
    mute: AtomicBool,
    /// Bytes to put on the line before the next frame.
    garbage: Mutex<Vec<u8>>,
    /// Connections accepted.
    accepted: AtomicU64,
    /// Drop the next bytes received (the host's describe frame is lost).
    deaf: AtomicBool,
    stats: Mutex<LinkStats>,
}

/// A device side in a thread: publishes every 1 ms (updates at most every 5 ms, by the
/// server's rate limit), serves one TCP client at a time, as QEMU does.
struct Sim {
    port: u16,
    control: Arc<Control>,
    thread: Option<JoinHandle<()>>,
}

impl Sim {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let control = Arc::new(Control::default());
        let thread = {
            let control = Arc::clone(&control);
            std::thread::spawn(move || run(listener, &control))
        };
        Self {
            port,
            control,
            thread: Some(thread),
        }
    }

    fn address(&self) -> String {
        format!("tcp:127.0.0.1:{}", self.port)
    }

    fn stats(&self) -> LinkStats {
        *self.control.stats.lock().unwrap()
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.control.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

fn run(listener: TcpListener, control: &Control) {
    let clock: &'static ManualClock = Box::leak(Box::new(ManualClock::new()));
    let storage = Box::leak(Box::new(Storage::<State, 4, 512>::new()));
    let Parts { link, mut tx, rx } = storage.split::<64, 256>(&State::at(0)).unwrap();
    let (mut publisher, mut server) = Builder::new(State::at(0))
        .clock(clock)
        .config(Config::new().with_min_update_interval(Duration::from_millis(5)))
        .capacity::<16, 2>()
        .build::<StateLink>()
        .unwrap();
    let id = server
        .add_connection(link)
        .unwrap_or_else(|_| panic!("a free slot"));
    let mut rx = rx.attach(server.requester(), id);
    let mut client: Option<TcpStream> = None;
    let mut out: Vec<u8> = Vec::new();
    let mut step = 0;
    let started = Instant::now();
    while !control.stop.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(1));
        step += 1;
        clock.set(started.elapsed());
        publisher.put_update(&State::at(step));
        server.poll();
        if client.is_none() {
            if let Ok((stream, _)) = listener.accept() {
                stream.set_nonblocking(true).unwrap();
                stream.set_nodelay(true).unwrap();
                client = Some(stream);
                control.accepted.fetch_add(1, Ordering::AcqRel);
            }
        }
        // Receive.
        let mut closed = false;
        if let Some(stream) = client.as_mut() {
            let mut buf = [0u8; 256];
            loop {
                match stream.read(&mut buf) {
                    Ok(0) => {
                        closed = true;
                        break;
                    }
                    Ok(_) if control.deaf.swap(false, Ordering::AcqRel) => {}
                    Ok(n) => {
                        if rx.receive_all(&buf[..n]) {
                            server.poll();
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => {
                        closed = true;
                        break;
                    }
                }
            }
        }
        server.connection_mut(id).unwrap().flush();
        // Transmit: the UART always drains the ring, whether anyone listens or not.
        let muted = control.mute.load(Ordering::Acquire);
        let mut garbage = control.garbage.lock().unwrap();
        if !garbage.is_empty() && out.is_empty() && !muted {
            out.append(&mut garbage);
        }
        drop(garbage);
        let mut chunk = [0u8; 512];
        let n = tx.fill(&mut chunk);
        if !muted {
            out.extend_from_slice(&chunk[..n]);
        }
        if let Some(stream) = client.as_mut() {
            match stream.write(&out) {
                Ok(n) => {
                    out.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => closed = true,
            }
        } else {
            out.clear();
        }
        if closed {
            client = None;
            out.clear();
        }
        *control.stats.lock().unwrap() = tx.stats();
    }
}

fn options() -> Options {
    Options {
        dead_after: Duration::from_millis(400),
        ping_after: Duration::from_millis(100),
        reopen_after: Duration::from_millis(50),
        ..Options::default()
    }
}

const WAIT: Duration = Duration::from_secs(10);

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
