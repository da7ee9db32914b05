//! Frames on the host: [`Deframer`] cuts the received bytes into checked payloads,
//! [`Message::decode`] reads one, and the `encode_*` functions build the host's frames.

use super::value::{Shape, Value};
use crate::device::LinkStats;
use crate::wire::{self, ErrorCode, Reader, WireError, Writer};

/// One key of a device's schema.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyInfo {
    /// Its name.
    pub name: String,
    /// Its value type.
    pub shape: Shape,
}

/// What a device says of itself: its keys, their names and value types, in the order
/// its snapshots carry them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schema {
    /// The protocol version the device speaks.
    pub version: u8,
    /// The keys, by index.
    pub keys: Vec<KeyInfo>,
    /// The device's frame buffer: its largest frame, before COBS.
    pub max_frame: usize,
}

impl Schema {
    /// The index of the key named `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.keys.iter().position(|key| key.name == name)
    }

    /// The name of key `index`.
    pub fn name(&self, index: usize) -> Option<&str> {
        self.keys.get(index).map(|key| key.name.as_str())
    }
}

/// A decoded device frame.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    /// The start of the schema.
    Hello {
        /// Protocol version.
        version: u8,
        /// How many key frames follow.
        keys: usize,
        /// The newest sequence number the device's link has seen.
        seq: u64,
        /// The device's largest frame.
        max_frame: usize,
    },
    /// One key of the schema.
    Key {
        /// Its index.
        index: usize,
        /// Its name and value type.
        info: KeyInfo,
    },
    /// A snapshot: pushed ([`answer`](Self::Snapshot::answer) false) or answering a get of
    /// `@snapshot`.
    Snapshot {
        /// Its sequence number.
        seq: u64,
        /// Every value, in schema order.
        values: Vec<Value>,
        /// Whether it answers a get.
        answer: bool,
    },
    /// The answer to a get of one key.
    Value {
        /// The snapshot it was read from.
        seq: u64,
        /// The key.
        index: usize,
        /// Its value.
        value: Value,
    },
    /// A get of one key found no value.
    NotFound {
        /// The snapshot searched.
        seq: u64,
        /// The key.
        index: usize,
    },
    /// A get refused.
    Error {
        /// The get's tag.
        tag: u32,
        /// Why.
        code: ErrorCode,
    },
    /// Gets of a key (or of the whole snapshot: index = key count) will not be answered.
    Abandoned {
        /// The key.
        index: usize,
    },
    /// The device's counters, answering a ping.
    Status {
        /// The ping's nonce.
        nonce: u32,
        /// The counters.
        stats: LinkStats,
    },
}

/// Why a checked frame could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Its fields are malformed, or do not fit the schema.
    Malformed,
    /// A frame kind this host does not know.
    UnknownKind(u8),
    /// A snapshot or answer before the schema is known.
    NoSchema,
}

impl From<WireError> for DecodeError {
    fn from(_: WireError) -> Self {
        Self::Malformed
    }
}

impl Message {
    /// Decodes a checked payload ([`Deframer`] gives them). Snapshots and values need the
    /// schema.
    pub fn decode(payload: &[u8], schema: Option<&Schema>) -> Result<Self, DecodeError> {
        let mut r = Reader::new(payload);
        let kind = r.u8()?;
        let usize_of = |r: &mut Reader<'_>| -> Result<usize, DecodeError> {
            usize::try_from(r.varint()?).map_err(|_| DecodeError::Malformed)
        };
        let need = || schema.ok_or(DecodeError::NoSchema);
        Ok(match kind {
            wire::HELLO => Self::Hello {
                version: r.u8()?,
                keys: usize_of(&mut r)?,
                seq: r.varint()?,
                max_frame: usize_of(&mut r)?,
            },
            wire::KEY => {
                let index = usize_of(&mut r)?;
                let name = r.str()?.to_owned();
                let shape = Shape::read(&mut r)?;
                Self::Key {
                    index,
                    info: KeyInfo { name, shape },
                }
            }
            wire::SNAPSHOT | wire::SNAPSHOT_ANSWER => {
                let schema = need()?;
                let seq = r.varint()?;
                let mut values = Vec::with_capacity(schema.keys.len());
                for key in &schema.keys {
                    values.push(key.shape.decode(&mut r)?);
                }
                Self::Snapshot {
                    seq,
                    values,
                    answer: kind == wire::SNAPSHOT_ANSWER,
                }
            }
            wire::VALUE => {
                let schema = need()?;
                let seq = r.varint()?;
                let index = usize_of(&mut r)?;
                let key = schema.keys.get(index).ok_or(DecodeError::Malformed)?;
                let value = key.shape.decode(&mut r)?;
                Self::Value { seq, index, value }
            }
            wire::NOT_FOUND => Self::NotFound {
                seq: r.varint()?,
                index: usize_of(&mut r)?,
            },
            wire::ERROR => Self::Error {
                tag: r.varint_u32()?,
                code: ErrorCode::from_byte(r.u8()?),
            },
            wire::ABANDONED => Self::Abandoned {
                index: usize_of(&mut r)?,
            },
            wire::STATUS => {
                let nonce = r.varint_u32()?;
                let n = usize_of(&mut r)?;
                let mut counters = Vec::with_capacity(n.min(64));
                for _ in 0..n {
                    counters.push(r.varint_u32()?);
                }
                Self::Status {
                    nonce,
                    stats: LinkStats::from_slice(&counters),
                }
            }
            other => return Err(DecodeError::UnknownKind(other)),
        })
    }
}

/// Cuts received bytes into frames at each `0x00`, decodes their COBS and checks their
/// CRC; counts the bytes of everything that was not a good frame.
#[derive(Debug)]
pub struct Deframer {
    buf: Vec<u8>,
    max: usize,
    overflow: bool,
    /// Bytes that belonged to no good frame.
    pub garbage_bytes: u64,
    /// Frames that were damaged or too long.
    pub bad_frames: u64,
    /// Good frames.
    pub frames: u64,
}

impl Deframer {
    /// A deframer of frames up to `max` bytes on the line.
    pub fn new(max: usize) -> Self {
        Self {
            buf: Vec::with_capacity(max),
            max,
            overflow: false,
            garbage_bytes: 0,
            bad_frames: 0,
            frames: 0,
        }
    }

    /// Forgets a frame in progress (after a reconnection): its bytes count as garbage.
    pub fn reset(&mut self) {
        if !self.buf.is_empty() || self.overflow {
            self.garbage_bytes += self.buf.len() as u64;
            self.bad_frames += 1;
        }
        self.buf.clear();
        self.overflow = false;
    }

    /// Takes received bytes; calls `on_frame` with each good frame's payload.
    pub fn feed(&mut self, bytes: &[u8], mut on_frame: impl FnMut(&[u8])) {
        for &byte in bytes {
            if byte != 0 {
                if self.buf.len() < self.max {
                    self.buf.push(byte);
                } else {
                    self.overflow = true;
                    self.garbage_bytes += 1;
                }
                continue;
            }
            let len = self.buf.len();
            if std::mem::take(&mut self.overflow) {
                self.garbage_bytes += len as u64;
                self.bad_frames += 1;
            } else if len > 0 {
                let checked = wire::cobs_decode_in_place(&mut self.buf)
                    .and_then(|n| wire::check_frame(&self.buf[..n]));
                match checked {
                    Ok(payload) => {
                        self.frames += 1;
                        on_frame(payload);
                    }
                    Err(WireError) => {
                        self.garbage_bytes += len as u64;
                        self.bad_frames += 1;
                    }
                }
            }
            self.buf.clear();
        }
    }
}

/// A frame ready to write: a leading `0x00` (which ends any garbage the device holds),
/// the COBS-encoded payload and CRC, and the delimiter.
fn frame(write: impl FnOnce(&mut Writer<'_>) -> Result<(), WireError>) -> Vec<u8> {
    let mut raw = [0u8; crate::device::RX_FRAME];
    let mut w = Writer::new(&mut raw);
    let len = write(&mut w).and_then(|()| w.finish());
    // The host's frames are built from checked names: they always fit.
    let len = len.unwrap_or(0);
    let mut out = Vec::with_capacity(wire::cobs_max(len) + 2);
    out.push(0);
    wire::cobs_encode(&raw[..len], |byte| out.push(byte));
    out
}

/// A [`DESCRIBE`](wire::DESCRIBE) frame.
pub fn encode_describe() -> Vec<u8> {
    frame(|w| w.u8(wire::DESCRIBE))
}

/// A [`PING`](wire::PING) frame.
pub fn encode_ping(nonce: u32) -> Vec<u8> {
    frame(|w| {
        w.u8(wire::PING)?;
        w.varint(u64::from(nonce))
    })
}

/// A [`GET`](wire::GET) frame for `name` (at most
/// [`MAX_NAME_LEN`](queueserver::idict::MAX_NAME_LEN) bytes, or `@snapshot`); `None`
/// for a longer name.
pub fn encode_get(tag: u32, name: &str) -> Option<Vec<u8>> {
    if name.len() > queueserver::idict::MAX_NAME_LEN {
        return None;
    }
    Some(frame(|w| {
        w.u8(wire::GET)?;
        w.varint(u64::from(tag))?;
        w.str(name)
    }))
}
