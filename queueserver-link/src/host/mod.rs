//! The host side (feature `host`): open a device, read its schema, keep its newest
//! snapshot, send gets, receive their answers, count what the line spoils, and reconnect
//! when the line dies, without resetting the device.
//!
//! ```no_run
//! use queueserver_link::host::{Device, Options};
//! use std::time::Duration;
//!
//! // A serial port (`/dev/ttyUSB0`, a pty), or QEMU's `-chardev socket` as `tcp:HOST:PORT`.
//! let device = Device::open("tcp:127.0.0.1:4444", Options::default())?;
//! let schema = device.wait_ready(Duration::from_secs(5))?;
//! println!("keys: {:?}", schema.keys.iter().map(|k| &k.name).collect::<Vec<_>>());
//! let snapshot = device.wait_newer(0, Duration::from_secs(1))?;
//! println!("#{}: {}", snapshot.seq, serde_json::to_string(&*snapshot)?);
//! let answer = device.ask("ch1", Duration::from_secs(1))?;
//! println!("ch1 = {:?} at #{}", answer.value, answer.seq);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! One thread per [`Device`] reads the line; [`Device::get`] and the other senders write
//! from the caller's thread. Snapshots are kept latest-wins ([`Device::latest`]); answers,
//! errors and connection changes are [`Event`]s, in a bounded queue
//! ([`Device::events`]) whose overflow is counted, and answers are also kept per key for
//! [`Device::ask`].
//!
//! A [`Bridge`] puts a device behind relays of the core
//! ([`queueserver::runtime::relay`]), one per kind of watcher (Zenoh, a web view) fed by
//! the one line: the device pushes, every relay shares each snapshot's `Arc` (latest wins,
//! drops counted by each relay), and a get of one name from any number of watchers is one
//! GET on the line.

mod bridge;
mod frame;
mod idict;
mod value;

pub use bridge::Bridge;

pub use frame::{
    encode_describe, encode_get, encode_ping, DecodeError, Deframer, KeyInfo, Message, Schema,
};
pub use idict::DeviceValues;
pub use value::{Shape, Value};

use crate::device::LinkStats;
use crate::wire::{self, ErrorCode};
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use std::collections::HashMap;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How a [`Device`] runs its line.
#[derive(Clone, Debug)]
pub struct Options {
    /// The line is dead when no good frame arrived for this long (pings included): the
    /// device is then reopened. Default 2 s.
    pub dead_after: Duration,
    /// A ping is sent when no good frame arrived for this long, so that an idle device
    /// still shows it is alive. Default 500 ms.
    pub ping_after: Duration,
    /// The wait before reopening a device that failed or died. Default 200 ms.
    pub reopen_after: Duration,
    /// Events kept for [`Device::events`] before the newest are dropped (and counted).
    /// Default 4096.
    pub events: usize,
    /// The baud rate of a serial port (ignored for TCP). Default 115 200.
    pub baud: u32,
    /// The largest frame accepted on the line, in bytes. Default 4096.
    pub max_frame: usize,
    /// For a [`Bridge`]: a get whose answer has not come this long after it was sent (a
    /// frame spoiled on the line) is sent again. Default 1 s.
    pub resend_after: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            dead_after: Duration::from_secs(2),
            ping_after: Duration::from_millis(500),
            reopen_after: Duration::from_millis(200),
            events: 4096,
            baud: 115_200,
            max_frame: 4096,
            resend_after: Duration::from_secs(1),
        }
    }
}

/// A snapshot of the device, decoded: its sequence number and every value, in schema
/// order. Serializes as an object of names and values, as the device's own `ByName`
/// would: `{"step": 12, "ch1": 6.0}` in JSON.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceSnapshot {
    /// Its sequence number on the device.
    pub seq: u64,
    /// Every value, in schema order.
    pub values: Vec<Value>,
    /// The schema the values follow.
    pub schema: Arc<Schema>,
}

impl DeviceSnapshot {
    /// The value of the key named `name`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.values.get(self.schema.index_of(name)?)
    }

    /// Names and values, in schema order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.schema
            .keys
            .iter()
            .map(|key| key.name.as_str())
            .zip(&self.values)
    }
}

impl Serialize for DeviceSnapshot {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.values.len()))?;
        for (name, value) in self.iter() {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

/// The answer to a get of one key.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    /// The key's name.
    pub name: String,
    /// The snapshot it was read from.
    pub seq: u64,
    /// The value; `None` when the device found none (not found).
    pub value: Option<Value>,
}

/// What happened on the line, in order. Snapshots are not events: see
/// [`Device::latest`].
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// The device answered the handshake: its schema is known (again).
    Connected(Arc<Schema>),
    /// The line failed or died; the device is reopened after
    /// [`Options::reopen_after`].
    Disconnected(String),
    /// The answer to a get of one key.
    Answer(Answer),
    /// The answer to a get of `@snapshot`.
    SnapshotAnswer(Arc<DeviceSnapshot>),
    /// The device refused the get tagged `tag`.
    Refused {
        /// The tag [`Device::get`] returned.
        tag: u32,
        /// Why.
        code: ErrorCode,
    },
    /// Gets of this key (`None`: of `@snapshot`) will not be answered.
    Abandoned(Option<String>),
    /// The device's counters, answering a ping.
    Status {
        /// The ping's nonce.
        nonce: u32,
        /// The counters.
        stats: LinkStats,
    },
}

/// What the host has counted; see [`Device::counters`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Bytes read from the line.
    pub bytes_in: u64,
    /// Bytes written to the line.
    pub bytes_out: u64,
    /// Good frames (COBS and CRC) read.
    pub frames: u64,
    /// Bytes that belonged to no good frame.
    pub garbage_bytes: u64,
    /// Frames damaged or too long.
    pub bad_frames: u64,
    /// Good frames that could not be used (malformed fields, unknown kind, before the
    /// schema).
    pub unusable_frames: u64,
    /// Snapshots received (pushed).
    pub snapshots: u64,
    /// Snapshots the host never saw: gaps in the pushed sequence numbers (the device's
    /// rate limit and latest-wins drops make them; they are no loss of data).
    pub seq_skipped: u64,
    /// Times the line was opened and the handshake done.
    pub connects: u64,
    /// Times the line failed or died.
    pub disconnects: u64,
    /// Events dropped because the event queue was full.
    pub events_dropped: u64,
    /// Gets sent.
    pub gets_sent: u64,
}

/// Why [`Device::open`] failed.
#[derive(Debug)]
pub enum OpenError {
    /// The address is neither `tcp:HOST:PORT` nor a path.
    BadAddress(String),
    /// Opening it failed.
    Io(io::Error),
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadAddress(a) => write!(
                f,
                "not a device address: {a:?} (a serial port path, or tcp:HOST:PORT)"
            ),
            Self::Io(e) => write!(f, "cannot open the device: {e}"),
        }
    }
}

impl std::error::Error for OpenError {}

/// Why a wait or a get failed.
#[derive(Debug, Clone, PartialEq)]
pub enum GetError {
    /// No answer in time.
    Timeout,
    /// The schema has no key of this name (and it is not `@snapshot`).
    UnknownName(String),
    /// The device refused the get.
    Refused(ErrorCode),
    /// The device will not answer this get.
    Abandoned,
    /// The line is not open now.
    NotConnected,
    /// Writing to the line failed.
    Io(String),
    /// The device handle is closed.
    Closed,
}

impl fmt::Display for GetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout => f.write_str("no answer in time"),
            Self::UnknownName(n) => write!(f, "the device has no key named {n:?}"),
            Self::Refused(code) => write!(f, "the device refused: {code}"),
            Self::Abandoned => f.write_str("the device will not answer"),
            Self::NotConnected => f.write_str("the line is not open"),
            Self::Io(e) => write!(f, "writing to the line failed: {e}"),
            Self::Closed => f.write_str("the device handle is closed"),
        }
    }
}

impl std::error::Error for GetError {}

/// Where a device is.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Address {
    Tcp(String),
    Serial(String),
}

impl Address {
    fn parse(address: &str) -> Result<Self, OpenError> {
        if let Some(rest) = address.strip_prefix("tcp:") {
            if rest
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
            {
                return Ok(Self::Tcp(rest.to_owned()));
            }
            return Err(OpenError::BadAddress(address.to_owned()));
        }
        if address.is_empty() {
            return Err(OpenError::BadAddress(address.to_owned()));
        }
        Ok(Self::Serial(address.to_owned()))
    }

    /// Opens the line: a reader with a short timeout, and a writer.
    fn open(&self, options: &Options) -> io::Result<(Box<dyn Read + Send>, Box<dyn Write + Send>)> {
        const READ_TIMEOUT: Duration = Duration::from_millis(20);
        match self {
            Self::Tcp(addr) => {
                let stream = TcpStream::connect(addr)?;
                stream.set_nodelay(true)?;
                stream.set_read_timeout(Some(READ_TIMEOUT))?;
                let writer = stream.try_clone()?;
                Ok((Box::new(stream), Box::new(writer)))
            }
            Self::Serial(path) => {
                let port = serialport::new(path, options.baud)
                    .timeout(READ_TIMEOUT)
                    .open()
                    .map_err(io::Error::other)?;
                let writer = port.try_clone().map_err(io::Error::other)?;
                Ok((Box::new(port), Box::new(writer)))
            }
        }
    }
}

/// The newest snapshot and the answers kept per key, with the condition that signals them.
#[derive(Default)]
struct State {
    schema: Option<Arc<Schema>>,
    latest: Option<Arc<DeviceSnapshot>>,
    /// Per key index (the key count for `@snapshot`): how many answers came, and the last.
    answers: HashMap<usize, (u64, Result<Answer, GetError>)>,
    /// Refusals by tag.
    refused: HashMap<u32, ErrorCode>,
    status: Option<(u32, LinkStats)>,
    connected: bool,
}

struct Inner {
    address: Address,
    options: Options,
    state: Mutex<State>,
    changed: Condvar,
    writer: Mutex<Option<Box<dyn Write + Send>>>,
    closed: AtomicBool,
    next_tag: AtomicU32,
    counters: Mutex<Counters>,
    bytes_out: AtomicU64,
    events: SyncSender<Event>,
    /// A [`Bridge`]'s: takes every snapshot and event in place of the event queue.
    tap: Option<Mutex<Box<dyn Tap>>>,
}

/// What a [`Bridge`] takes from a device's reading thread: every snapshot and every event,
/// in the order they are decoded, in place of the event queue.
///
/// **The device's reading thread.** Must not block: it holds up the line.
pub(crate) trait Tap: Send {
    /// A snapshot pushed by the device, once it is [`Device::latest`].
    fn snapshot(&mut self, snapshot: &Arc<DeviceSnapshot>);

    /// An event, which the event queue then does not get.
    fn event(&mut self, event: Event);
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn counters(&self) -> MutexGuard<'_, Counters> {
        self.counters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn emit(&self, event: Event) {
        if let Some(tap) = &self.tap {
            tap.lock().unwrap_or_else(|p| p.into_inner()).event(event);
            return;
        }
        match self.events.try_send(event) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(_)) => self.counters().events_dropped += 1,
        }
    }

    fn tap_snapshot(&self, snapshot: &Arc<DeviceSnapshot>) {
        if let Some(tap) = &self.tap {
            tap.lock()
                .unwrap_or_else(|p| p.into_inner())
                .snapshot(snapshot);
        }
    }

    /// Writes a get of `name` tagged `tag`.
    fn send_get(&self, tag: u32, name: &str) -> Result<(), GetError> {
        let frame = encode_get(tag, name).ok_or_else(|| GetError::UnknownName(name.to_owned()))?;
        self.write(&frame)?;
        self.counters().gets_sent += 1;
        Ok(())
    }

    /// Writes bytes to the line.
    fn write(&self, bytes: &[u8]) -> Result<(), GetError> {
        let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let line = writer.as_mut().ok_or(GetError::NotConnected)?;
        line.write_all(bytes)
            .and_then(|()| line.flush())
            .map_err(|e| GetError::Io(e.to_string()))?;
        self.bytes_out
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

/// An open device: a blocking handle, `Send + Sync`, that any thread may use.
///
/// Dropping it (or [`close`](Self::close)) stops its thread and closes the line; the
/// device itself goes on.
pub struct Device {
    inner: Arc<Inner>,
    events: Mutex<Receiver<Event>>,
    thread: Option<JoinHandle<()>>,
}

impl Device {
    /// Opens the device at `address` (a serial port path, a pty, or `tcp:HOST:PORT`) and
    /// starts its thread, which asks for the schema. Returns once the line is open (not
    /// yet the schema: see [`wait_ready`](Self::wait_ready)).
    ///
    /// Blocks for the opening only; allocates.
    ///
    /// # Errors
    ///
    /// A malformed address, or the first opening failing (later failures reopen it).
    pub fn open(address: &str, options: Options) -> Result<Self, OpenError> {
        Self::open_tapped(address, options, None)
    }

    /// [`open`](Self::open), with every snapshot and event handed to `tap` (a bridge's)
    /// on the reading thread, and the event queue left empty.
    pub(crate) fn open_tapped(
        address: &str,
        options: Options,
        tap: Option<Box<dyn Tap>>,
    ) -> Result<Self, OpenError> {
        let address = Address::parse(address)?;
        let line = address.open(&options).map_err(OpenError::Io)?;
        let (events_in, events_out) = std::sync::mpsc::sync_channel(options.events.max(1));
        let inner = Arc::new(Inner {
            address,
            options,
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            writer: Mutex::new(None),
            closed: AtomicBool::new(false),
            next_tag: AtomicU32::new(1),
            counters: Mutex::new(Counters::default()),
            bytes_out: AtomicU64::new(0),
            events: events_in,
            tap: tap.map(Mutex::new),
        });
        let thread = {
            let inner = Arc::clone(&inner);
            std::thread::Builder::new()
                .name("queueserver-link".into())
                .spawn(move || run(&inner, Some(line)))
                .map_err(OpenError::Io)?
        };
        Ok(Self {
            inner,
            events: Mutex::new(events_out),
            thread: Some(thread),
        })
    }

    /// Waits until the handshake is done and returns the schema.
    ///
    /// # Errors
    ///
    /// [`GetError::Timeout`], or [`GetError::Closed`].
    pub fn wait_ready(&self, timeout: Duration) -> Result<Arc<Schema>, GetError> {
        self.wait(timeout, |state| {
            state.connected.then(|| state.schema.clone()).flatten()
        })
    }

    /// The schema, once the handshake is done.
    pub fn schema(&self) -> Option<Arc<Schema>> {
        self.inner.state().schema.clone()
    }

    /// Whether the line is open and the handshake done.
    pub fn is_connected(&self) -> bool {
        self.inner.state().connected
    }

    /// Waits until [`is_connected`](Self::is_connected) is `connected`: for the line to
    /// come up (the handshake done) or to go down (failed, or silent for
    /// [`Options::dead_after`]).
    ///
    /// **Any thread.** Blocks up to `timeout`.
    ///
    /// # Errors
    ///
    /// [`GetError::Timeout`], or [`GetError::Closed`].
    pub fn wait_connection(&self, connected: bool, timeout: Duration) -> Result<(), GetError> {
        self.wait(timeout, |state| {
            (state.connected == connected).then_some(())
        })
    }

    /// The newest snapshot received (latest wins). Never blocks beyond a short lock.
    pub fn latest(&self) -> Option<Arc<DeviceSnapshot>> {
        self.inner.state().latest.clone()
    }

    /// Waits for a snapshot numbered above `seq`.
    ///
    /// # Errors
    ///
    /// [`GetError::Timeout`], or [`GetError::Closed`].
    pub fn wait_newer(&self, seq: u64, timeout: Duration) -> Result<Arc<DeviceSnapshot>, GetError> {
        self.wait(timeout, |state| {
            state.latest.as_ref().filter(|s| s.seq > seq).cloned()
        })
    }

    /// Sends a get of the key `name` (or `@snapshot`): the answer comes as an
    /// [`Event::Answer`] (or [`Event::SnapshotAnswer`]), a refusal as an
    /// [`Event::Refused`] with the tag this returns. The device sends one answer per key
    /// in flight: gets of a key already asked for join that answer.
    ///
    /// Blocks while it writes the frame; allocates.
    ///
    /// # Errors
    ///
    /// [`GetError::UnknownName`] when the schema is known and has no such key (the device
    /// would refuse it too), [`GetError::NotConnected`], [`GetError::Io`].
    pub fn get(&self, name: &str) -> Result<u32, GetError> {
        if let Some(schema) = self.schema() {
            if name != wire::SNAPSHOT_NAME && schema.index_of(name).is_none() {
                return Err(GetError::UnknownName(name.to_owned()));
            }
        }
        self.get_unchecked(name)
    }

    /// Sends a get of `name` without checking it against the schema (the device checks).
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get), without [`GetError::UnknownName`] for a name of valid length.
    pub fn get_unchecked(&self, name: &str) -> Result<u32, GetError> {
        let tag = self.inner.next_tag.fetch_add(1, Ordering::Relaxed);
        self.inner.send_get(tag, name)?;
        Ok(tag)
    }

    /// The line's sending half, for a bridge's writer thread.
    pub(crate) fn line(&self) -> Line {
        Line(Arc::clone(&self.inner))
    }

    /// Gets the value of `name` and waits for the first answer of that key to arrive
    /// after the get was sent. The device reads the value when it serves the get; a get
    /// of a key already in flight there joins that read, which may have been made just
    /// before this get arrived. Allocates; blocks up to `timeout`.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get), and [`GetError::Timeout`], [`GetError::Refused`],
    /// [`GetError::Abandoned`].
    pub fn ask(&self, name: &str, timeout: Duration) -> Result<Answer, GetError> {
        let schema = self.schema().ok_or(GetError::NotConnected)?;
        let index = schema
            .index_of(name)
            .ok_or_else(|| GetError::UnknownName(name.to_owned()))?;
        let before = self
            .inner
            .state()
            .answers
            .get(&index)
            .map_or(0, |(n, _)| *n);
        let tag = self.get(name)?;
        self.wait(timeout, |state| {
            if let Some(code) = state.refused.get(&tag) {
                return Some(Err(GetError::Refused(*code)));
            }
            match state.answers.get(&index) {
                Some((n, answer)) if *n > before => Some(answer.clone()),
                _ => None,
            }
        })?
    }

    /// Sends a ping: the device answers with its counters, as an [`Event::Status`] and in
    /// [`device_stats`](Self::device_stats). Returns the nonce.
    ///
    /// # Errors
    ///
    /// [`GetError::NotConnected`], [`GetError::Io`].
    pub fn ping(&self) -> Result<u32, GetError> {
        let nonce = self.inner.next_tag.fetch_add(1, Ordering::Relaxed);
        self.inner.write(&encode_ping(nonce))?;
        Ok(nonce)
    }

    /// Pings the device and waits for its counters.
    ///
    /// # Errors
    ///
    /// As [`ping`](Self::ping), and [`GetError::Timeout`].
    pub fn device_stats(&self, timeout: Duration) -> Result<LinkStats, GetError> {
        let nonce = self.ping()?;
        self.wait(timeout, |state| {
            state
                .status
                .filter(|(n, _)| *n == nonce)
                .map(|(_, stats)| stats)
        })
    }

    /// Writes raw bytes to the line, as they are (for tests: garbage toward the device).
    ///
    /// # Errors
    ///
    /// [`GetError::NotConnected`], [`GetError::Io`].
    pub fn write_raw(&self, bytes: &[u8]) -> Result<(), GetError> {
        self.inner.write(bytes)
    }

    /// The events: answers, refusals, connections. One receiver, shared: lock it to read.
    pub fn events(&self) -> MutexGuard<'_, Receiver<Event>> {
        self.events
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// What the host has counted so far.
    pub fn counters(&self) -> Counters {
        let mut counters = *self.inner.counters();
        counters.bytes_out = self.inner.bytes_out.load(Ordering::Relaxed);
        counters
    }

    /// Stops the thread and closes the line. The device goes on.
    pub fn close(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.inner.closed.store(true, Ordering::Release);
        self.inner.changed.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        *self.inner.writer.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Waits until `ready` gives a value, or the timeout.
    fn wait<T>(
        &self,
        timeout: Duration,
        mut ready: impl FnMut(&State) -> Option<T>,
    ) -> Result<T, GetError> {
        let deadline = Instant::now() + timeout;
        let mut state = self.inner.state();
        loop {
            if let Some(value) = ready(&state) {
                return Ok(value);
            }
            if self.inner.closed.load(Ordering::Acquire) {
                return Err(GetError::Closed);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(GetError::Timeout);
            }
            state = self
                .inner
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        self.stop();
    }
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Device")
            .field("address", &self.inner.address)
            .field("connected", &self.is_connected())
            .finish_non_exhaustive()
    }
}

/// The sending half of a device's line: gets with tags chosen before they are written.
#[derive(Clone)]
pub(crate) struct Line(Arc<Inner>);

impl Line {
    /// A fresh tag.
    pub(crate) fn next_tag(&self) -> u32 {
        self.0.next_tag.fetch_add(1, Ordering::Relaxed)
    }

    /// Writes a get of `name` tagged `tag`. Blocks while it writes.
    pub(crate) fn send_get(&self, tag: u32, name: &str) -> Result<(), GetError> {
        self.0.send_get(tag, name)
    }
}

/// The device's thread: opens the line (again), reads it, and decodes what comes.
fn run(inner: &Inner, mut first: Option<(Box<dyn Read + Send>, Box<dyn Write + Send>)>) {
    let mut session = Session::new(inner.options.max_frame);
    while !inner.closed.load(Ordering::Acquire) {
        let line = match first.take() {
            Some(line) => Ok(line),
            None => inner.address.open(&inner.options),
        };
        let why = match line {
            Ok((reader, writer)) => {
                *inner.writer.lock().unwrap_or_else(|p| p.into_inner()) = Some(writer);
                let why = session.serve(inner, reader);
                *inner.writer.lock().unwrap_or_else(|p| p.into_inner()) = None;
                why
            }
            Err(e) => format!("cannot open the device: {e}"),
        };
        let was_connected = std::mem::replace(&mut inner.state().connected, false);
        inner.changed.notify_all();
        if inner.closed.load(Ordering::Acquire) {
            break;
        }
        if was_connected {
            inner.counters().disconnects += 1;
            inner.emit(Event::Disconnected(why));
        }
        std::thread::sleep(inner.options.reopen_after);
    }
}

/// What one reading thread keeps across reconnections.
struct Session {
    deframer: Deframer,
    /// The schema being received: its hello, and the keys so far.
    pending: Option<(u8, usize, usize, Vec<Option<KeyInfo>>)>,
    last_seq: Option<u64>,
    /// When the last describe frame was sent.
    last_describe: Instant,
}

impl Session {
    fn new(max_frame: usize) -> Self {
        Self {
            deframer: Deframer::new(max_frame),
            pending: None,
            last_seq: None,
            last_describe: Instant::now(),
        }
    }

    /// Reads one open line until it fails, dies or the handle closes; returns why it
    /// ended.
    fn serve(&mut self, inner: &Inner, mut reader: Box<dyn Read + Send>) -> String {
        self.deframer.reset();
        self.pending = None;
        self.last_describe = Instant::now();
        if let Err(e) = inner.write(&encode_describe()) {
            return format!("cannot write the handshake: {e}");
        }
        let mut last_frame = Instant::now();
        let mut last_ping = Instant::now();
        let mut buf = [0u8; 4096];
        while !inner.closed.load(Ordering::Acquire) {
            match reader.read(&mut buf) {
                Ok(0) => return "the line was closed".into(),
                Ok(n) => {
                    let before = self.deframer.frames;
                    let mut messages = Vec::new();
                    self.deframer
                        .feed(&buf[..n], |payload| messages.push(payload.to_vec()));
                    for payload in messages {
                        self.handle(inner, &payload);
                    }
                    let mut counters = inner.counters();
                    counters.bytes_in += n as u64;
                    counters.frames = self.deframer.frames;
                    counters.garbage_bytes = self.deframer.garbage_bytes;
                    counters.bad_frames = self.deframer.bad_frames;
                    drop(counters);
                    if self.deframer.frames > before {
                        last_frame = Instant::now();
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return format!("reading the line failed: {e}"),
            }
            let quiet = last_frame.elapsed();
            if quiet >= inner.options.dead_after {
                return format!("no frame for {quiet:?}: the line is dead");
            }
            if quiet >= inner.options.ping_after && last_ping.elapsed() >= inner.options.ping_after
            {
                last_ping = Instant::now();
                let nonce = inner.next_tag.fetch_add(1, Ordering::Relaxed);
                if let Err(e) = inner.write(&encode_ping(nonce)) {
                    return format!("writing to the line failed: {e}");
                }
            }
            // Frames come, yet no schema on this line: the schema's frames were lost (to
            // garbage, or sent while the line dropped what the device sent). Snapshots may
            // still decode with the schema of an earlier line, so this is the one sign.
            if self.last_describe.elapsed() >= inner.options.ping_after && !inner.state().connected
            {
                self.last_describe = Instant::now();
                if let Err(e) = inner.write(&encode_describe()) {
                    return format!("writing to the line failed: {e}");
                }
            }
        }
        "closed".into()
    }

    fn handle(&mut self, inner: &Inner, payload: &[u8]) {
        let schema = inner
            .state()
            .schema
            .clone()
            .filter(|_| self.pending.is_none());
        let message = match Message::decode(payload, schema.as_deref()) {
            Ok(message) => message,
            Err(DecodeError::NoSchema) => {
                inner.counters().unusable_frames += 1;
                // The describe frame, or a frame of the schema, may have been lost
                // (garbage, a busy device): ask again, not more often than pings.
                if self.last_describe.elapsed() >= inner.options.ping_after {
                    self.last_describe = Instant::now();
                    let _ = inner.write(&encode_describe());
                }
                return;
            }
            Err(_) => {
                inner.counters().unusable_frames += 1;
                return;
            }
        };
        match message {
            Message::Hello {
                version,
                keys,
                seq,
                max_frame,
            } => {
                if keys > 1 << 16 {
                    inner.counters().unusable_frames += 1;
                    return;
                }
                if self.last_seq.is_some_and(|last| seq < last) {
                    // The device restarted: its sequence numbers begin again.
                    self.last_seq = None;
                }
                self.pending = Some((version, keys, max_frame, vec![None; keys]));
                self.try_complete(inner);
            }
            Message::Key { index, info } => {
                if let Some((_, _, _, keys)) = self.pending.as_mut() {
                    if let Some(slot) = keys.get_mut(index) {
                        *slot = Some(info);
                    }
                }
                self.try_complete(inner);
            }
            Message::Snapshot {
                seq,
                values,
                answer,
            } => {
                let Some(schema) = schema else { return };
                let snapshot = Arc::new(DeviceSnapshot {
                    seq,
                    values,
                    schema,
                });
                if answer {
                    let index = snapshot.schema.keys.len();
                    let mut state = inner.state();
                    let n = state.answers.get(&index).map_or(0, |(n, _)| *n);
                    state.answers.insert(
                        index,
                        (
                            n + 1,
                            Ok(Answer {
                                name: wire::SNAPSHOT_NAME.into(),
                                seq,
                                value: None,
                            }),
                        ),
                    );
                    drop(state);
                    inner.changed.notify_all();
                    inner.emit(Event::SnapshotAnswer(snapshot));
                    return;
                }
                {
                    let mut counters = inner.counters();
                    counters.snapshots += 1;
                    if let Some(last) = self.last_seq {
                        counters.seq_skipped += seq.saturating_sub(last + 1);
                    }
                }
                self.last_seq = Some(seq);
                inner.state().latest = Some(Arc::clone(&snapshot));
                inner.changed.notify_all();
                inner.tap_snapshot(&snapshot);
            }
            Message::Value { seq, index, value } => {
                self.answer(inner, schema.as_deref(), index, seq, Some(value));
            }
            Message::NotFound { seq, index } => {
                self.answer(inner, schema.as_deref(), index, seq, None);
            }
            Message::Error { tag, code } => {
                inner.state().refused.insert(tag, code);
                inner.changed.notify_all();
                inner.emit(Event::Refused { tag, code });
            }
            Message::Abandoned { index } => {
                let name = schema
                    .as_deref()
                    .and_then(|s| s.name(index))
                    .map(str::to_owned);
                let mut state = inner.state();
                let n = state.answers.get(&index).map_or(0, |(n, _)| *n);
                state
                    .answers
                    .insert(index, (n + 1, Err(GetError::Abandoned)));
                drop(state);
                inner.changed.notify_all();
                inner.emit(Event::Abandoned(name));
            }
            Message::Status { nonce, stats } => {
                inner.state().status = Some((nonce, stats));
                inner.changed.notify_all();
                inner.emit(Event::Status { nonce, stats });
            }
        }
    }

    fn answer(
        &mut self,
        inner: &Inner,
        schema: Option<&Schema>,
        index: usize,
        seq: u64,
        value: Option<Value>,
    ) {
        let Some(name) = schema.and_then(|s| s.name(index)) else {
            inner.counters().unusable_frames += 1;
            return;
        };
        let answer = Answer {
            name: name.to_owned(),
            seq,
            value,
        };
        let mut state = inner.state();
        let n = state.answers.get(&index).map_or(0, |(n, _)| *n);
        state.answers.insert(index, (n + 1, Ok(answer.clone())));
        drop(state);
        inner.changed.notify_all();
        inner.emit(Event::Answer(answer));
    }

    /// Publishes the schema once its hello and every key have come.
    fn try_complete(&mut self, inner: &Inner) {
        let complete = self
            .pending
            .as_ref()
            .is_some_and(|(_, _, _, keys)| keys.iter().all(Option::is_some));
        if !complete {
            return;
        }
        let Some((version, _, max_frame, keys)) = self.pending.take() else {
            return;
        };
        let schema = Arc::new(Schema {
            version,
            keys: keys.into_iter().flatten().collect(),
            max_frame,
        });
        {
            let mut state = inner.state();
            if state.schema.as_deref() != Some(&*schema) {
                state.latest = None;
                state.answers.clear();
            }
            state.schema = Some(Arc::clone(&schema));
            state.connected = true;
        }
        inner.counters().connects += 1;
        inner.changed.notify_all();
        inner.emit(Event::Connected(schema));
    }
}
