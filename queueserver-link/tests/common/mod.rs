//! What the host-side tests share: a device side in a thread behind a real TCP socket on
//! 127.0.0.1, as QEMU's `-chardev socket,server=on` offers the firmware's UART.

#![allow(dead_code)]

pub mod qemu;

use queueserver::{Builder, Config, IDict, ManualClock};
use queueserver_link::device::{line_len, Parts};
use queueserver_link::host::{Options, Value};
use queueserver_link::{Link, LinkStats, Storage};
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub const WAIT: Duration = Duration::from_secs(10);

/// What the simulated device publishes.
#[derive(Clone, Debug, PartialEq, IDict)]
pub struct State {
    pub step: u32,
    pub ch1: f32,
    pub ch2: f32,
}

impl State {
    pub fn at(step: u32) -> Self {
        Self {
            step,
            ch1: (step % 1000) as f32 * 0.5,
            ch2: (step.wrapping_mul(7) % 1000) as f32 * 0.25,
        }
    }

    pub fn value_of(step: u32, name: &str) -> Value {
        let s = Self::at(step);
        match name {
            "step" => Value::U64(s.step.into()),
            "ch1" => Value::F32(s.ch1),
            "ch2" => Value::F32(s.ch2),
            other => panic!("no key {other}"),
        }
    }
}

/// The link's frame buffer.
const F: usize = 64;
/// An answer buffer with room for one whole-snapshot answer and nothing more.
pub const ONE_ANSWER: usize = line_len(F);

/// What the test tells the simulated device.
#[derive(Default)]
pub struct Control {
    pub stop: AtomicBool,
    /// Send nothing (the line goes silent); still read, to see the host close.
    pub mute: AtomicBool,
    /// Bytes to put on the line before the next frame.
    pub garbage: Mutex<Vec<u8>>,
    /// Connections accepted.
    pub accepted: AtomicU64,
    /// Drop the next bytes received (the host's describe frame is lost).
    pub deaf: AtomicBool,
    /// Take gets, but answer none (the poller serves updates only) while set.
    pub hold: AtomicBool,
    pub stats: Mutex<LinkStats>,
}

/// A device side in a thread: publishes every 1 ms (updates at most every 5 ms, by the
/// server's rate limit), serves one TCP client at a time, as QEMU does.
pub struct Sim {
    pub port: u16,
    pub control: Arc<Control>,
    thread: Option<JoinHandle<()>>,
}

impl Sim {
    /// A device with room for several answers at once.
    pub fn start() -> Self {
        Self::start_with::<256>()
    }

    /// A device with an answer buffer of `A` bytes.
    pub fn start_with<const A: usize>() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let control = Arc::new(Control::default());
        let thread = {
            let control = Arc::clone(&control);
            std::thread::spawn(move || run::<A>(listener, &control))
        };
        Self {
            port,
            control,
            thread: Some(thread),
        }
    }

    pub fn address(&self) -> String {
        format!("tcp:127.0.0.1:{}", self.port)
    }

    pub fn stats(&self) -> LinkStats {
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

fn run<const A: usize>(listener: TcpListener, control: &Control) {
    let clock: &'static ManualClock = Box::leak(Box::new(ManualClock::new()));
    let storage = Box::leak(Box::new(Storage::<State, 4, 512>::new()));
    let Parts { link, mut tx, rx } = storage.split::<F, A>(&State::at(0)).unwrap();
    let (mut publisher, mut server) = Builder::new(State::at(0))
        .clock(clock)
        .config(Config::new().with_min_update_interval(Duration::from_millis(5)))
        .capacity::<16, 2>()
        .build::<Link<'static, State, 4, F, A>>()
        .unwrap();
    let id = server
        .add_connection(link)
        .unwrap_or_else(|_| panic!("a free slot"));
    let mut rx = rx.attach(server.requester(), id);
    let poll = |server: &mut queueserver::QueueServer<_, _, _, _, 16, 2>| {
        if control.hold.load(Ordering::Acquire) {
            server.process_updates();
        } else {
            server.poll();
        }
    };
    let mut client: Option<TcpStream> = None;
    let mut out: Vec<u8> = Vec::new();
    let mut step = 0;
    let started = Instant::now();
    while !control.stop.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(1));
        step += 1;
        clock.set(started.elapsed());
        publisher.put_update(&State::at(step));
        poll(&mut server);
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
                            poll(&mut server);
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

/// Short deadlines, so that a dead line is found in a test's time.
pub fn options() -> Options {
    Options {
        dead_after: Duration::from_millis(400),
        ping_after: Duration::from_millis(100),
        reopen_after: Duration::from_millis(50),
        ..Options::default()
    }
}

/// Waits up to [`WAIT`] for `done`.
pub fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "waited {WAIT:?} for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}
