//! The device side: a [`Link`] connection of the firmware's server, the [`LinkTx`] that the
//! UART drains, and the [`LinkRx`] that turns the host's frames into requests.
//!
//! ```text
//!  poller ── on_update / on_response ──▶ Link ── whole frames ──▶ [TX ring] ──▶ LinkTx ──▶ UART
//!                                         ▲ errors, describe, ping       (next_byte / fill)
//!                                         │ [notice queue]
//!  UART ──▶ LinkRx::receive(byte) ── get ──▶ put_request ──▶ the server's request queue
//! ```
//!
//! All memory is in a [`Storage`] (a `static`, or a local that outlives the parts) and in
//! the parts themselves; nothing allocates. [`Storage::split`] builds the three parts:
//!
//! - [`Link`] is a [`Connection`]: the server owns it and calls it on the poller. It
//!   encodes each update (the server's `min_update_interval` rate-limits them) and each
//!   answer into frames and writes them whole into the TX ring. An answer always has room:
//!   [`LinkRx`] reserves it when it accepts a get, in the link's answer buffer (`A` bytes),
//!   and refuses the get with an error frame when there is none. An update waits in the
//!   link while the ring is full; a newer one replaces it, and the replaced one is counted
//!   dropped ([`LinkStats::updates_dropped`]). Nothing the poller calls waits for the line.
//!   [`Link::flush`] moves what waits into the ring: call it when the ring has drained.
//! - [`LinkTx`] drains the ring, from the UART's interrupt or the main loop:
//!   [`next_byte`](LinkTx::next_byte) or [`fill`](LinkTx::fill).
//! - [`LinkRx`] takes the bytes the UART receives, from its interrupt or the main loop,
//!   resynchronises on the next `0x00` after garbage, and puts a request for each get it
//!   accepts. A second get of a key whose answer is still due joins it (the device sends
//!   one answer per key in flight). It is built in two steps
//!   ([`RxParts::attach`]) because the server gives the link's id only once it owns the
//!   link.
//!
//! The computation's side, `put_update`, does not change at all.

use crate::wire::{self, ErrorCode, Reader, WireError, Writer};
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use heapless::spsc::{Consumer, Producer, Queue};
use queueserver::idict::{check_name, KeyError, ValueType, MAX_NAME_LEN};
use queueserver::notify::Notify;
use queueserver::request::Query;
use queueserver::{Abandoned, Connection, ConnectionError, ConnectionId, IDict, Request};
use queueserver::{RequestError, Requester, Response, Snapshot};
use serde::Serialize;

/// Notices from [`LinkRx`] to [`Link`]: at most this many wait at once (one fewer than the
/// queue's 8 slots); more are counted in [`LinkStats::notices_dropped`].
pub const NOTICES: usize = 8;

/// The longest frame [`LinkRx`] takes from the host, decoded: a get with a tag and a
/// name of [`MAX_NAME_LEN`] bytes, and its CRC.
pub const RX_FRAME: usize = 1 + 5 + 1 + MAX_NAME_LEN + 2;

/// Bytes of the largest frame of `len` bytes on the line: COBS and the delimiter.
pub const fn line_len(len: usize) -> usize {
    wire::cobs_max(len) + 1
}

/// What [`LinkRx`] asks [`Link`] to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Notice {
    Error { tag: u32, code: ErrorCode },
    Describe,
    Ping { nonce: u32 },
}

/// What the link knows of one key, from the IDict it was split with.
#[derive(Clone, Copy, Debug)]
struct KeyInfo {
    /// Line bytes reserved for an answer of this key.
    room: u16,
    /// The value is [`ValueType::Other`]: it travels with its length.
    sized: bool,
}

/// Counters of one link; each written by one part, readable from any.
///
/// [`LinkStats`] is a copy of them.
#[derive(Debug)]
struct Counters([AtomicU32; COUNTERS]);

/// How many counters a [`STATUS`](wire::STATUS) frame carries, in [`LinkStats`] order.
const COUNTERS: usize = 15;

/// Indices into [`Counters`].
mod at {
    pub const RX_BYTES: usize = 0;
    pub const RX_FRAMES: usize = 1;
    pub const RX_GARBAGE: usize = 2;
    pub const RX_BAD: usize = 3;
    pub const GETS_ACCEPTED: usize = 4;
    pub const GETS_JOINED: usize = 5;
    pub const GETS_REFUSED: usize = 6;
    pub const NOTICES_DROPPED: usize = 7;
    pub const UPDATES_SENT: usize = 8;
    pub const UPDATES_DROPPED: usize = 9;
    pub const ANSWERS_SENT: usize = 10;
    pub const FRAMES_SENT: usize = 11;
    pub const FRAMES_FAILED: usize = 12;
    pub const TX_BYTES: usize = 13;
    pub const SCHEMAS_SENT: usize = 14;
}

impl Counters {
    const fn new() -> Self {
        Self([const { AtomicU32::new(0) }; COUNTERS])
    }

    /// Adds `n` to a counter. Each counter has one writer (one part, in one context), so
    /// a load and a store suffice, on targets without read-modify-write too.
    fn add(&self, which: usize, n: u32) {
        let counter = &self.0[which];
        counter.store(
            counter.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }

    fn get(&self, which: usize) -> u32 {
        self.0[which].load(Ordering::Relaxed)
    }

    fn stats(&self) -> LinkStats {
        LinkStats {
            rx_bytes: self.get(at::RX_BYTES),
            rx_frames: self.get(at::RX_FRAMES),
            rx_garbage_bytes: self.get(at::RX_GARBAGE),
            rx_bad_frames: self.get(at::RX_BAD),
            gets_accepted: self.get(at::GETS_ACCEPTED),
            gets_joined: self.get(at::GETS_JOINED),
            gets_refused: self.get(at::GETS_REFUSED),
            notices_dropped: self.get(at::NOTICES_DROPPED),
            updates_sent: self.get(at::UPDATES_SENT),
            updates_dropped: self.get(at::UPDATES_DROPPED),
            answers_sent: self.get(at::ANSWERS_SENT),
            frames_sent: self.get(at::FRAMES_SENT),
            frames_failed: self.get(at::FRAMES_FAILED),
            tx_bytes: self.get(at::TX_BYTES),
            schemas_sent: self.get(at::SCHEMAS_SENT),
        }
    }
}

/// What a link has done, counted since it was split; wrapping `u32`s. The host reads the
/// same counters in a [`STATUS`](wire::STATUS) frame, in this order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct LinkStats {
    /// Bytes received from the host.
    pub rx_bytes: u32,
    /// Frames received that were whole and checked (CRC), of any kind.
    pub rx_frames: u32,
    /// Bytes received that belonged to no good frame: garbage, and frames cut or damaged.
    pub rx_garbage_bytes: u32,
    /// Frames received that were damaged (COBS, CRC), too long, or not understood.
    pub rx_bad_frames: u32,
    /// Gets accepted: a request put for each.
    pub gets_accepted: u32,
    /// Gets of a key whose answer was already due: answered by that answer.
    pub gets_joined: u32,
    /// Gets refused with an error frame (unknown name, busy, closed).
    pub gets_refused: u32,
    /// Notices (errors to send, describe, ping) dropped because 7 were already waiting.
    pub notices_dropped: u32,
    /// Updates written to the TX ring.
    pub updates_sent: u32,
    /// Updates replaced by a newer one before there was room for them in the TX ring.
    pub updates_dropped: u32,
    /// Answers (values, not found, whole snapshots, abandoned) written for the host.
    pub answers_sent: u32,
    /// Frames written to the TX ring, of every kind.
    pub frames_sent: u32,
    /// Frames that could not be encoded: larger than the link's frame buffer, or a
    /// snapshot whose keys differ from the schema's.
    pub frames_failed: u32,
    /// Bytes taken from the TX ring by [`LinkTx`].
    pub tx_bytes: u32,
    /// Schemas sent (at start, and for each describe frame).
    pub schemas_sent: u32,
}

impl LinkStats {
    /// The counters in [`STATUS`](wire::STATUS) order.
    pub const fn to_array(&self) -> [u32; COUNTERS] {
        [
            self.rx_bytes,
            self.rx_frames,
            self.rx_garbage_bytes,
            self.rx_bad_frames,
            self.gets_accepted,
            self.gets_joined,
            self.gets_refused,
            self.notices_dropped,
            self.updates_sent,
            self.updates_dropped,
            self.answers_sent,
            self.frames_sent,
            self.frames_failed,
            self.tx_bytes,
            self.schemas_sent,
        ]
    }

    /// Counters from [`STATUS`](wire::STATUS) order; missing ones are 0.
    pub fn from_slice(counters: &[u32]) -> Self {
        let at = |i: usize| counters.get(i).copied().unwrap_or(0);
        Self {
            rx_bytes: at(at::RX_BYTES),
            rx_frames: at(at::RX_FRAMES),
            rx_garbage_bytes: at(at::RX_GARBAGE),
            rx_bad_frames: at(at::RX_BAD),
            gets_accepted: at(at::GETS_ACCEPTED),
            gets_joined: at(at::GETS_JOINED),
            gets_refused: at(at::GETS_REFUSED),
            notices_dropped: at(at::NOTICES_DROPPED),
            updates_sent: at(at::UPDATES_SENT),
            updates_dropped: at(at::UPDATES_DROPPED),
            answers_sent: at(at::ANSWERS_SENT),
            frames_sent: at(at::FRAMES_SENT),
            frames_failed: at(at::FRAMES_FAILED),
            tx_bytes: at(at::TX_BYTES),
            schemas_sent: at(at::SCHEMAS_SENT),
        }
    }
}

/// State the three parts share: which keys have an answer due, the room reserved for
/// answers, and the counters.
struct Shared<const K: usize> {
    /// Key `i` has a request put and its answer not yet written.
    in_flight: [AtomicBool; K],
    /// The same for the whole snapshot.
    all_in_flight: AtomicBool,
    /// Bytes of the answer buffer reserved: answers due, and answers written there and not
    /// yet moved into the TX ring.
    reserved: AtomicUsize,
    counters: Counters,
}

/// Everything a link keeps that its parts share: the keys, the TX ring of `TX` bytes
/// (`TX - 1` usable), the notice queue, the counters. `K` is the most keys the IDict may
/// have.
///
/// `const fn new`, for a `static`: in a firmware, cortex-m-rt's `#[entry]` turns a
/// `static mut` declared in `main` into a `&'static mut`, which [`split`](Self::split)
/// takes without `unsafe`.
pub struct Storage<D: IDict, const K: usize, const TX: usize> {
    keys: heapless::Vec<D::Key, K>,
    infos: heapless::Vec<KeyInfo, K>,
    tx: Queue<u8, TX>,
    notices: Queue<Notice, NOTICES>,
    shared: Shared<K>,
}

impl<D: IDict, const K: usize, const TX: usize> Default for Storage<D, K, TX> {
    fn default() -> Self {
        Self::new()
    }
}

/// Why [`Storage::split`] refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SplitError {
    /// The IDict has more keys than the storage's `K`.
    TooManyKeys,
    /// A key has no name ([`IDict::write_name`] failed): the host could not ask for it.
    Unnamed(KeyError),
    /// The frame buffer `F` cannot hold the schema's frames (a key's name and type), or
    /// is below 32 bytes.
    FrameTooSmall,
    /// The answer buffer `A` cannot hold the largest answer (a whole snapshot:
    /// [`line_len`]`(F)` bytes).
    AnswerBufferTooSmall,
    /// The TX ring cannot hold the largest frame ([`line_len`]`(F)` bytes, plus one).
    RingTooSmall,
    /// The storage was split before.
    AlreadySplit,
}

impl core::fmt::Display for SplitError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::TooManyKeys => f.write_str("the IDict has more keys than the link's K"),
            Self::Unnamed(why) => write!(f, "a key has no name: {why}"),
            Self::FrameTooSmall => f.write_str("the frame buffer F cannot hold the schema"),
            Self::AnswerBufferTooSmall => {
                f.write_str("the answer buffer A cannot hold a whole snapshot's frame")
            }
            Self::RingTooSmall => f.write_str("the TX ring cannot hold the largest frame"),
            Self::AlreadySplit => f.write_str("the storage was split before"),
        }
    }
}

/// The three parts of a split [`Storage`].
pub struct Parts<'a, D: IDict, const K: usize, const F: usize, const A: usize> {
    /// The connection: give it to the server.
    pub link: Link<'a, D, K, F, A>,
    /// The UART's transmit side.
    pub tx: LinkTx<'a, K>,
    /// The receive side, to attach once the server has given the link its id.
    pub rx: RxParts<'a, D, K>,
}

impl<D: IDict, const K: usize, const TX: usize> Storage<D, K, TX> {
    /// An empty storage. Allocates nothing.
    pub const fn new() -> Self {
        Self {
            keys: heapless::Vec::new(),
            infos: heapless::Vec::new(),
            tx: Queue::new(),
            notices: Queue::new(),
            shared: Shared {
                in_flight: [const { AtomicBool::new(false) }; K],
                all_in_flight: AtomicBool::new(false),
                reserved: AtomicUsize::new(0),
                counters: Counters::new(),
            },
        }
    }

    /// Splits the storage into a link for `idict`'s keys (listed by [`IDict::visit`],
    /// described by [`IDict::value_type`]; a key without a description travels as bytes)
    /// with a frame buffer of `F` bytes and an answer buffer of `A` bytes.
    ///
    /// Runs once, at start-up; allocates nothing. The link sends its schema first.
    ///
    /// # Errors
    ///
    /// [`SplitError`] when the IDict does not fit the sizes chosen, or a key has no name.
    pub fn split<const F: usize, const A: usize>(
        &mut self,
        idict: &D,
    ) -> Result<Parts<'_, D, K, F, A>, SplitError>
    where
        D::Value: Serialize,
    {
        if !self.keys.is_empty() {
            return Err(SplitError::AlreadySplit);
        }
        if F < 32 {
            return Err(SplitError::FrameTooSmall);
        }
        let largest = line_len(F);
        if A < largest {
            return Err(SplitError::AnswerBufferTooSmall);
        }
        if TX <= largest {
            return Err(SplitError::RingTooSmall);
        }
        let mut failure = None;
        let mut scratch = [0u8; F];
        idict.visit(|key, _| {
            if failure.is_some() {
                return;
            }
            let index = self.keys.len();
            let shape = D::value_type(key).unwrap_or(ValueType::Other);
            // The key's schema frame must fit the frame buffer.
            if let Err(why) = key_frame::<D>(&mut scratch, index, key, &shape) {
                failure = Some(why);
                return;
            }
            let value = wire::max_size(&shape).unwrap_or(F);
            // kind, seq, index, value, CRC
            let raw = (1 + 10 + wire::varint_len(index as u64) + value + 2).min(F);
            let info = KeyInfo {
                room: line_len(raw) as u16,
                sized: wire::max_size(&shape).is_none(),
            };
            if self.keys.push(key.clone()).is_err() || self.infos.push(info).is_err() {
                failure = Some(SplitError::TooManyKeys);
            }
        });
        if let Some(why) = failure {
            self.keys.clear();
            self.infos.clear();
            return Err(why);
        }
        let (producer, consumer) = self.tx.split();
        let (notice_in, notice_out) = self.notices.split();
        let shared = &self.shared;
        let keys = self.keys.as_slice();
        let infos = self.infos.as_slice();
        Ok(Parts {
            link: Link {
                keys,
                infos,
                shared,
                tx: producer,
                notices: notice_out,
                staging: heapless::Deque::new(),
                update: [0; F],
                update_len: 0,
                scratch: [0; F],
                schema_next: Some(0),
                newest_seq: 0,
            },
            tx: LinkTx {
                ring: consumer,
                shared,
            },
            rx: RxParts {
                keys,
                infos,
                shared,
                notices: notice_in,
                budget: A,
                snapshot_room: largest,
            },
        })
    }
}

/// Writes the [`KEY`](wire::KEY) frame of key `index` into `buf`; returns its length.
fn key_frame<D: IDict>(
    buf: &mut [u8],
    index: usize,
    key: &D::Key,
    shape: &ValueType,
) -> Result<usize, SplitError> {
    let mut name = heapless::String::<MAX_NAME_LEN>::new();
    D::write_name(key, &mut name).map_err(SplitError::Unnamed)?;
    let mut w = Writer::new(buf);
    let written = (|| {
        w.u8(wire::KEY)?;
        w.varint(index as u64)?;
        w.str(&name)?;
        w.value_type(shape)
    })();
    written
        .and_then(|()| w.finish())
        .map_err(|_| SplitError::FrameTooSmall)
}

/// The link: a [`Connection`] of the firmware's server that writes frames for the host.
///
/// Every method runs on the poller (the server calls it, or the firmware through
/// [`QueueServer::connection_mut`](queueserver::QueueServer::connection_mut)); none
/// blocks or allocates. `F` is the frame buffer (the largest frame before COBS), `A` the
/// answer buffer.
pub struct Link<'a, D: IDict, const K: usize, const F: usize, const A: usize> {
    keys: &'a [D::Key],
    infos: &'a [KeyInfo],
    shared: &'a Shared<K>,
    tx: Producer<'a, u8>,
    notices: Consumer<'a, Notice>,
    /// Answers, encoded for the line, waiting for room in the TX ring.
    staging: heapless::Deque<u8, A>,
    /// The newest update, encoded but not yet written to the TX ring.
    update: [u8; F],
    /// Its length; 0 when there is none.
    update_len: usize,
    /// Where other frames are encoded.
    scratch: [u8; F],
    /// The next schema frame to send: 0 the hello, `i + 1` key `i`.
    schema_next: Option<usize>,
    /// The newest sequence number seen, for the hello frame.
    newest_seq: u64,
}

impl<D: IDict, const K: usize, const F: usize, const A: usize> Link<'_, D, K, F, A>
where
    D::Value: Serialize,
{
    /// The link's counters (and those of its other parts).
    pub fn stats(&self) -> LinkStats {
        self.shared.counters.stats()
    }

    /// Whether frames wait in the link for room in the TX ring (answers, notices, the
    /// schema, an update).
    pub fn has_waiting(&self) -> bool {
        !self.staging.is_empty()
            || self.notices.ready()
            || self.schema_next.is_some()
            || self.update_len > 0
    }

    /// Moves what waits into the TX ring, as far as there is room: answers first, then
    /// error and status frames, the schema, the newest update. Each frame goes whole.
    ///
    /// Poller; never blocks, allocates nothing. Called after every update and answer;
    /// call it too after the ring has drained ([`LinkTx::is_empty`]) and after
    /// [`LinkRx`] has received a frame, for its errors and status to go out.
    pub fn flush(&mut self) {
        let mut moved = 0;
        while let Some(&byte) = self.staging.front() {
            if self.tx.enqueue(byte).is_err() {
                break;
            }
            self.staging.pop_front();
            moved += 1;
        }
        if moved > 0 {
            self.release(moved);
        }
        if !self.staging.is_empty() {
            // The ring is in the middle of an answer: nothing else may start.
            return;
        }
        while let Some(&notice) = self.notices.peek() {
            if notice == Notice::Describe {
                self.notices.dequeue();
                self.schema_next = Some(0);
                continue;
            }
            let Ok(len) = self.notice_frame(notice) else {
                self.notices.dequeue();
                self.count(at::FRAMES_FAILED);
                continue;
            };
            if !self.write_scratch(len) {
                return;
            }
            self.notices.dequeue();
        }
        while let Some(next) = self.schema_next {
            let len = match self.schema_frame(next) {
                Ok(len) => len,
                Err(_) => {
                    // `split` checked that every schema frame fits.
                    self.count(at::FRAMES_FAILED);
                    self.schema_next = None;
                    break;
                }
            };
            if !self.write_scratch(len) {
                return;
            }
            self.schema_next = (next < self.keys.len()).then_some(next + 1);
            if next == 0 {
                self.count(at::SCHEMAS_SENT);
            }
        }
        if self.update_len > 0 && self.fits(self.update_len) {
            let len = core::mem::take(&mut self.update_len);
            write_frame(&mut self.tx, &self.update[..len]);
            self.count(at::UPDATES_SENT);
            self.count(at::FRAMES_SENT);
        }
    }

    fn count(&self, which: usize) {
        self.shared.counters.add(which, 1);
    }

    /// Whether a frame of `len` bytes fits the TX ring now.
    fn fits(&self, len: usize) -> bool {
        self.tx.capacity() - self.tx.len() >= line_len(len)
    }

    /// Writes the frame in `scratch` to the ring if it fits.
    fn write_scratch(&mut self, len: usize) -> bool {
        if !self.fits(len) {
            return false;
        }
        write_frame(&mut self.tx, &self.scratch[..len]);
        self.count(at::FRAMES_SENT);
        true
    }

    fn notice_frame(&mut self, notice: Notice) -> Result<usize, WireError> {
        let mut w = Writer::new(&mut self.scratch);
        match notice {
            Notice::Error { tag, code } => {
                w.u8(wire::ERROR)?;
                w.varint(u64::from(tag))?;
                w.u8(code.to_byte())?;
            }
            // Handled by `flush`: the schema follows.
            Notice::Describe => return Err(WireError),
            Notice::Ping { nonce } => {
                w.u8(wire::STATUS)?;
                w.varint(u64::from(nonce))?;
                w.varint(COUNTERS as u64)?;
                for counter in self.shared.counters.stats().to_array() {
                    w.varint(u64::from(counter))?;
                }
            }
        }
        w.finish()
    }

    fn schema_frame(&mut self, next: usize) -> Result<usize, SplitError> {
        if next == 0 {
            let mut w = Writer::new(&mut self.scratch);
            let written = (|| {
                w.u8(wire::HELLO)?;
                w.u8(wire::VERSION)?;
                w.varint(self.keys.len() as u64)?;
                w.varint(self.newest_seq)?;
                w.varint(F as u64)
            })();
            return written
                .and_then(|()| w.finish())
                .map_err(|_| SplitError::FrameTooSmall);
        }
        let index = next - 1;
        let key = &self.keys[index];
        let shape = D::value_type(key).unwrap_or(ValueType::Other);
        key_frame::<D>(&mut self.scratch, index, key, &shape)
    }

    /// Encodes a snapshot frame of `kind` into `buf`.
    fn snapshot_frame(
        keys: &[D::Key],
        infos: &[KeyInfo],
        buf: &mut [u8],
        kind: u8,
        snapshot: &Snapshot<D>,
    ) -> Result<usize, WireError> {
        let mut w = Writer::new(buf);
        w.u8(kind)?;
        w.varint(snapshot.seq())?;
        let mut result = Ok(());
        let mut index = 0;
        snapshot.visit(|key, value| {
            if result.is_err() {
                return;
            }
            result = match (keys.get(index), infos.get(index)) {
                (Some(expected), Some(info)) if expected == key => {
                    if info.sized {
                        w.postcard_sized(value)
                    } else {
                        w.postcard(value)
                    }
                }
                // Not the schema's keys: the IDict changed its keys.
                _ => Err(WireError),
            };
            index += 1;
        });
        result?;
        if index != keys.len() {
            return Err(WireError);
        }
        w.finish()
    }

    /// The index of `key` in the schema.
    fn index_of(&self, key: &D::Key) -> Option<usize> {
        self.keys.iter().position(|k| k == key)
    }

    /// Moves an answer encoded in `scratch` into the answer buffer; gives back the room
    /// reserved beyond its size.
    fn stage_answer(&mut self, encoded: Result<usize, WireError>, room: usize) {
        let mut used = 0;
        match encoded {
            // The room was reserved when the get was accepted; the check on the buffer
            // keeps a request the receiver did not put (the firmware asking with the
            // link's id itself) from ever writing half a frame.
            Ok(len) if line_len(len) <= room && line_len(len) <= A - self.staging.len() => {
                let staging = &mut self.staging;
                wire::cobs_encode(&self.scratch[..len], |byte| {
                    // Cannot fail: checked above.
                    let _ = staging.push_back(byte);
                    used += 1;
                });
                self.count(at::ANSWERS_SENT);
                self.count(at::FRAMES_SENT);
            }
            _ => self.count(at::FRAMES_FAILED),
        }
        self.release(room.saturating_sub(used));
    }

    /// Gives back `bytes` of the answer buffer's reservations; never below zero (an
    /// answer to a request the receiver did not put had none).
    fn release(&self, bytes: usize) {
        let _ = self
            .shared
            .reserved
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
                Some(now.saturating_sub(bytes))
            });
    }

    /// The room [`LinkRx`] reserved for an answer of key `index` (the whole snapshot for
    /// `None`).
    fn room(&self, index: Option<usize>) -> usize {
        match index.and_then(|i| self.infos.get(i)) {
            Some(info) => usize::from(info.room),
            None => line_len(F),
        }
    }

    /// Writes an answer frame `(kind, seq, index)` and, for a value, the value.
    fn answer_frame(
        &mut self,
        kind: u8,
        seq: u64,
        index: usize,
        value: Option<&D::Value>,
    ) -> Result<usize, WireError> {
        let sized = self.infos.get(index).is_some_and(|info| info.sized);
        let mut w = Writer::new(&mut self.scratch);
        w.u8(kind)?;
        if kind != wire::ABANDONED {
            w.varint(seq)?;
        }
        w.varint(index as u64)?;
        match value {
            Some(value) if sized => w.postcard_sized(value)?,
            Some(value) => w.postcard(value)?,
            None => {}
        }
        w.finish()
    }

    /// Clears the in-flight mark of key `index` (the whole snapshot for `None`).
    fn settle(&self, index: Option<usize>) {
        let flag = match index {
            Some(i) => &self.shared.in_flight[i],
            None => &self.shared.all_in_flight,
        };
        flag.store(false, Ordering::Release);
    }
}

/// COBS-encodes `frame` into the ring; the caller checked that it fits.
fn write_frame(ring: &mut Producer<'_, u8>, frame: &[u8]) {
    wire::cobs_encode(frame, |byte| {
        // Checked by the caller: `fits`.
        let _ = ring.enqueue(byte);
    });
}

impl<D: IDict, const K: usize, const F: usize, const A: usize> Connection<D>
    for Link<'_, D, K, F, A>
where
    D::Value: Serialize,
{
    /// Encodes the snapshot into the link's update buffer, replacing (and counting) one
    /// that had no room in the ring yet, then [`flush`](Self::flush)es. Never fails: a
    /// snapshot that cannot be encoded is counted in
    /// [`frames_failed`](LinkStats::frames_failed).
    fn on_update(&mut self, snapshot: &Snapshot<D>) -> Result<(), ConnectionError> {
        self.newest_seq = snapshot.seq();
        if self.update_len > 0 {
            self.count(at::UPDATES_DROPPED);
            self.update_len = 0;
        }
        match Self::snapshot_frame(
            self.keys,
            self.infos,
            &mut self.update,
            wire::SNAPSHOT,
            snapshot,
        ) {
            Ok(len) => self.update_len = len,
            Err(_) => self.count(at::FRAMES_FAILED),
        }
        self.flush();
        Ok(())
    }

    /// Encodes the answer into the answer buffer (its room was reserved when the get was
    /// accepted), marks its key settled, then [`flush`](Self::flush)es.
    fn on_response(&mut self, response: Response<'_, D>) -> Result<(), ConnectionError> {
        let (index, encoded) = match response {
            Response::Value { key, value, seq } => {
                let index = self.index_of(key);
                let encoded = match index {
                    Some(i) => self.answer_frame(wire::VALUE, seq, i, Some(value)),
                    None => Err(WireError),
                };
                (index, encoded)
            }
            Response::NotFound { key, seq } => {
                let index = self.index_of(key);
                let encoded = match index {
                    Some(i) => self.answer_frame(wire::NOT_FOUND, seq, i, None),
                    None => Err(WireError),
                };
                (index, encoded)
            }
            Response::Snapshot(snapshot) => {
                let encoded = Self::snapshot_frame(
                    self.keys,
                    self.infos,
                    &mut self.scratch,
                    wire::SNAPSHOT_ANSWER,
                    snapshot,
                );
                (None, encoded)
            }
        };
        let room = self.room(index);
        self.stage_answer(encoded, room);
        self.settle(index);
        self.flush();
        Ok(())
    }

    /// Tells the host that the gets of this key will not be answered (an
    /// [`ABANDONED`](wire::ABANDONED) frame), in the room reserved for the answer.
    fn on_abandoned(
        &mut self,
        query: &Query<D::Key>,
        _why: Abandoned,
    ) -> Result<(), ConnectionError> {
        let index = match query {
            Query::Key(key) => self.index_of(key),
            Query::All => None,
        };
        let wire_index = index.unwrap_or(wire::all_index(self.keys.len()));
        let encoded = self.answer_frame(wire::ABANDONED, 0, wire_index, None);
        let room = self.room(index);
        self.stage_answer(encoded, room);
        self.settle(index);
        self.flush();
        Ok(())
    }
}

/// The transmit side: the bytes the UART sends, taken from the TX ring.
///
/// Any one context (the UART's interrupt, or the main loop); never blocks, allocates
/// nothing. The ring only ever holds whole frames, written by the [`Link`].
pub struct LinkTx<'a, const K: usize> {
    ring: Consumer<'a, u8>,
    shared: &'a Shared<K>,
}

impl<const K: usize> LinkTx<'_, K> {
    /// The next byte to send, or `None` when the ring is empty.
    pub fn next_byte(&mut self) -> Option<u8> {
        let byte = self.ring.dequeue()?;
        self.shared.counters.add(at::TX_BYTES, 1);
        Some(byte)
    }

    /// Fills `buf` with the next bytes to send; returns how many.
    pub fn fill(&mut self, buf: &mut [u8]) -> usize {
        let mut n = 0;
        for slot in buf.iter_mut() {
            match self.ring.dequeue() {
                Some(byte) => *slot = byte,
                None => break,
            }
            n += 1;
        }
        self.shared.counters.add(at::TX_BYTES, n as u32);
        n
    }

    /// Whether the ring is empty: time for [`Link::flush`] if the link has frames
    /// waiting.
    pub fn is_empty(&self) -> bool {
        !self.ring.ready()
    }

    /// Bytes in the ring.
    pub fn len(&self) -> usize {
        self.ring.len()
    }

    /// The link's counters.
    pub fn stats(&self) -> LinkStats {
        self.shared.counters.stats()
    }
}

/// The receive side before it knows the link's id: [`attach`](Self::attach) it.
pub struct RxParts<'a, D: IDict, const K: usize> {
    keys: &'a [D::Key],
    infos: &'a [KeyInfo],
    shared: &'a Shared<K>,
    notices: Producer<'a, Notice>,
    budget: usize,
    snapshot_room: usize,
}

impl<'a, D: IDict, const K: usize> RxParts<'a, D, K> {
    /// The receive side of the link `id` (from
    /// [`QueueServer::add_connection`](queueserver::QueueServer::add_connection) or
    /// [`connection_ids`](queueserver::QueueServer::connection_ids)), putting requests
    /// through `requests` (the server's [`Requester`]).
    pub fn attach<R: PutRequest<D::Key>>(
        self,
        requests: R,
        id: ConnectionId,
    ) -> LinkRx<'a, D, R, K> {
        LinkRx {
            keys: self.keys,
            infos: self.infos,
            shared: self.shared,
            notices: self.notices,
            budget: self.budget,
            snapshot_room: self.snapshot_room,
            requests,
            id,
            buf: [0; RX_FRAME + 8],
            len: 0,
            overflow: false,
        }
    }
}

/// What [`LinkRx`] puts requests through: the server's [`Requester`] (any context).
pub trait PutRequest<K> {
    /// Puts `request`; hands it back when refused.
    fn put_request(&self, request: Request<K>) -> Result<(), RequestError<K>>;
}

impl<K, N: Notify, const Q: usize, const MAXC: usize> PutRequest<K> for Requester<K, N, Q, MAXC> {
    fn put_request(&self, request: Request<K>) -> Result<(), RequestError<K>> {
        Requester::put_request(self, request)
    }
}

/// A `fmt::Write` that compares what is written with a name, without storing it.
struct Matches<'n> {
    rest: &'n str,
    equal: bool,
}

impl core::fmt::Write for Matches<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        match self.rest.strip_prefix(s) {
            Some(rest) if self.equal => {
                self.rest = rest;
                Ok(())
            }
            _ => {
                self.equal = false;
                Err(core::fmt::Error)
            }
        }
    }
}

/// What [`LinkRx::receive`] made of a byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Received {
    /// The byte was part of a frame not yet complete.
    Partial,
    /// A frame was complete and handled: the [`Link`] may have a frame to send
    /// ([`Link::flush`]), and the server a request to serve.
    Frame,
    /// A frame was damaged, too long or not understood: counted, and skipped.
    Bad,
}

/// The receive side: turns the host's frames into requests (gets) and notices for the
/// [`Link`] (errors, describe, ping).
///
/// Any one context (the UART's receive interrupt, or the main loop); never blocks,
/// allocates nothing; a bounded number of steps per byte, and per frame one name lookup
/// (O(keys)) and one `put_request`.
pub struct LinkRx<'a, D: IDict, R, const K: usize> {
    keys: &'a [D::Key],
    infos: &'a [KeyInfo],
    shared: &'a Shared<K>,
    notices: Producer<'a, Notice>,
    /// The link's answer buffer: the most bytes reservations may take.
    budget: usize,
    /// The room a whole snapshot's answer takes.
    snapshot_room: usize,
    requests: R,
    id: ConnectionId,
    buf: [u8; RX_FRAME + 8],
    len: usize,
    /// The frame being received is longer than any frame the host sends: skip to the
    /// next delimiter.
    overflow: bool,
}

impl<D: IDict, R: PutRequest<D::Key>, const K: usize> LinkRx<'_, D, R, K> {
    /// Takes one received byte.
    pub fn receive(&mut self, byte: u8) -> Received {
        let counters = &self.shared.counters;
        counters.add(at::RX_BYTES, 1);
        if byte != 0 {
            if let Some(slot) = self.buf.get_mut(self.len) {
                *slot = byte;
                self.len += 1;
            } else {
                self.overflow = true;
                counters.add(at::RX_GARBAGE, 1);
            }
            return Received::Partial;
        }
        let len = core::mem::take(&mut self.len);
        if core::mem::take(&mut self.overflow) {
            counters.add(at::RX_GARBAGE, len as u32);
            counters.add(at::RX_BAD, 1);
            return Received::Bad;
        }
        if len == 0 {
            // An empty frame: a delimiter the host sends to end any garbage before it.
            return Received::Partial;
        }
        match self.handle(len) {
            Ok(()) => {
                counters.add(at::RX_FRAMES, 1);
                Received::Frame
            }
            Err(WireError) => {
                counters.add(at::RX_GARBAGE, len as u32);
                counters.add(at::RX_BAD, 1);
                Received::Bad
            }
        }
    }

    /// Takes received bytes; returns whether a frame was handled among them.
    pub fn receive_all(&mut self, bytes: &[u8]) -> bool {
        let mut any = false;
        for &byte in bytes {
            any |= self.receive(byte) == Received::Frame;
        }
        any
    }

    /// The link's counters.
    pub fn stats(&self) -> LinkStats {
        self.shared.counters.stats()
    }

    fn handle(&mut self, len: usize) -> Result<(), WireError> {
        let decoded = wire::cobs_decode_in_place(&mut self.buf[..len])?;
        let payload = wire::check_frame(&self.buf[..decoded])?;
        let mut r = Reader::new(payload);
        match r.u8()? {
            wire::DESCRIBE => {
                self.notify(Notice::Describe);
                Ok(())
            }
            wire::PING => {
                let nonce = r.varint_u32()?;
                self.notify(Notice::Ping { nonce });
                Ok(())
            }
            wire::GET => {
                let tag = r.varint_u32()?;
                let name = r.str()?;
                let query = self.query(name);
                self.get(tag, query);
                Ok(())
            }
            _ => Err(WireError),
        }
    }

    /// The key index a name names (`Some(None)` for the whole snapshot).
    fn query(&self, name: &str) -> Option<Option<usize>> {
        if name == wire::SNAPSHOT_NAME {
            return Some(None);
        }
        check_name(name).ok()?;
        self.keys
            .iter()
            .position(|key| {
                let mut matches = Matches {
                    rest: name,
                    equal: true,
                };
                D::write_name(key, &mut matches).is_ok() && matches.equal && matches.rest.is_empty()
            })
            .map(Some)
    }

    fn notify(&mut self, notice: Notice) {
        if self.notices.enqueue(notice).is_err() {
            self.shared.counters.add(at::NOTICES_DROPPED, 1);
        }
    }

    fn refuse(&mut self, tag: u32, code: ErrorCode) {
        self.shared.counters.add(at::GETS_REFUSED, 1);
        self.notify(Notice::Error { tag, code });
    }

    /// Accepts a get (puts its request), joins one in flight, or refuses it.
    fn get(&mut self, tag: u32, query: Option<Option<usize>>) {
        let Some(index) = query else {
            return self.refuse(tag, ErrorCode::UnknownName);
        };
        let shared = self.shared;
        let flag = match index {
            Some(i) => &shared.in_flight[i],
            None => &shared.all_in_flight,
        };
        // Acquire: pairs with the link's Release when it settles the key, after which its
        // reservation is given back.
        if flag.swap(true, Ordering::Acquire) {
            shared.counters.add(at::GETS_JOINED, 1);
            return;
        }
        let room = match index.and_then(|i| self.infos.get(i)) {
            Some(info) => usize::from(info.room),
            None => self.snapshot_room,
        };
        let budget = self.budget;
        let reserved = shared
            .reserved
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
                (now + room <= budget).then_some(now + room)
            });
        if reserved.is_err() {
            flag.store(false, Ordering::Release);
            return self.refuse(tag, ErrorCode::Busy);
        }
        let request = match index {
            Some(i) => Request::key(self.id, self.keys[i].clone()),
            None => Request::snapshot(self.id),
        };
        match self.requests.put_request(request) {
            Ok(()) => shared.counters.add(at::GETS_ACCEPTED, 1),
            Err(refused) => {
                shared.reserved.fetch_sub(room, Ordering::AcqRel);
                flag.store(false, Ordering::Release);
                let code = match refused {
                    RequestError::Closed(_) | RequestError::UnknownConnection(_) => {
                        ErrorCode::Closed
                    }
                    RequestError::Full(_) | RequestError::OverQuota(_) => ErrorCode::Busy,
                };
                self.refuse(tag, code);
            }
        }
    }
}
