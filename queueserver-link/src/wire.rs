//! The wire: frame kinds, their fields, and the framing (COBS, CRC-16), shared by the
//! device and the host. The crate's README describes the same bytes for other languages.
//!
//! A frame on the line is `COBS(payload ‖ crc) ‖ 0x00`: the payload is a kind byte and its
//! fields, `crc` the CRC-16/IBM-3740 of the payload, little endian. Integers are LEB128
//! varints (postcard's encoding: unsigned, and zigzag for signed), strings a varint length
//! and UTF-8 bytes, and values are `postcard` as `serde` serializes them.
//!
//! Everything here works on caller-provided slices: no allocation, no panic on any input.

use queueserver::idict::ValueType;

/// The protocol version a device announces in its [`HELLO`] frame. Readers ignore frame
/// kinds and trailing fields they do not know; a change that breaks a reader bumps it.
pub const VERSION: u8 = 1;

/// Device → host: the start of the schema (version, key count, newest sequence number).
pub const HELLO: u8 = 0x01;
/// Device → host: one key of the schema (index, name, value type).
pub const KEY: u8 = 0x02;
/// Device → host: a snapshot, pushed (sequence number, every value in schema order).
pub const SNAPSHOT: u8 = 0x03;
/// Device → host: the answer to a get of one key (sequence number, index, value).
pub const VALUE: u8 = 0x04;
/// Device → host: a get of one key found no value (sequence number, index).
pub const NOT_FOUND: u8 = 0x05;
/// Device → host: the answer to a get of `@snapshot` (the fields of [`SNAPSHOT`]).
pub const SNAPSHOT_ANSWER: u8 = 0x06;
/// Device → host: a get refused (tag, [`ErrorCode`]).
pub const ERROR: u8 = 0x07;
/// Device → host: gets of a key accepted and never to be answered (index).
pub const ABANDONED: u8 = 0x08;
/// Device → host: the device's counters, answering a [`PING`] (nonce, counters).
pub const STATUS: u8 = 0x09;

/// Host → device: send the schema.
pub const DESCRIBE: u8 = 0x81;
/// Host → device: get one key by name, or the whole snapshot as `@snapshot` (tag, name).
pub const GET: u8 = 0x82;
/// Host → device: answer with a [`STATUS`] (nonce).
pub const PING: u8 = 0x83;

/// The name a [`GET`] uses for the whole snapshot.
pub const SNAPSHOT_NAME: &str = "@snapshot";

/// The index an [`ABANDONED`] frame gives for the whole snapshot: one past the last key.
/// (The key count, which the [`HELLO`] frame gives.)
pub const fn all_index(keys: usize) -> usize {
    keys
}

/// Why a device refused a get, in an [`ERROR`] frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum ErrorCode {
    /// No key has this name (or the name is no valid name).
    UnknownName,
    /// No room for the answer, or the request queue is full or over the link's share:
    /// ask again later.
    Busy,
    /// The server has shut its request side down.
    Closed,
    /// A code this reader does not know.
    Unknown(u8),
}

impl ErrorCode {
    /// Its byte on the wire.
    pub const fn to_byte(self) -> u8 {
        match self {
            Self::UnknownName => 1,
            Self::Busy => 2,
            Self::Closed => 3,
            Self::Unknown(code) => code,
        }
    }

    /// The code of a byte.
    pub const fn from_byte(byte: u8) -> Self {
        match byte {
            1 => Self::UnknownName,
            2 => Self::Busy,
            3 => Self::Closed,
            other => Self::Unknown(other),
        }
    }
}

impl core::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::UnknownName => f.write_str("no key has this name"),
            Self::Busy => f.write_str("the device is busy: ask again later"),
            Self::Closed => f.write_str("the device's server is closed"),
            Self::Unknown(code) => write!(f, "unknown error code {code}"),
        }
    }
}

/// Value type tags of a [`KEY`] frame.
pub mod tag {
    /// `bool`: one byte, 0 or 1.
    pub const BOOL: u8 = 0;
    /// `u8`: one byte.
    pub const U8: u8 = 1;
    /// `u16`: varint.
    pub const U16: u8 = 2;
    /// `u32`: varint.
    pub const U32: u8 = 3;
    /// `u64`: varint.
    pub const U64: u8 = 4;
    /// `u128`: varint.
    pub const U128: u8 = 5;
    /// `i8`: one byte, two's complement.
    pub const I8: u8 = 6;
    /// `i16`: zigzag varint.
    pub const I16: u8 = 7;
    /// `i32`: zigzag varint.
    pub const I32: u8 = 8;
    /// `i64`: zigzag varint.
    pub const I64: u8 = 9;
    /// `i128`: zigzag varint.
    pub const I128: u8 = 10;
    /// `f32`: 4 bytes, little endian.
    pub const F32: u8 = 11;
    /// `f64`: 8 bytes, little endian.
    pub const F64: u8 = 12;
    /// `char`: varint length and UTF-8 bytes.
    pub const CHAR: u8 = 13;
    /// A string: varint length and UTF-8 bytes. Tag followed by a varint capacity.
    pub const STR: u8 = 14;
    /// `Option`: one byte 0 (none) or 1 then the value. Tag followed by the inner type.
    pub const OPTION: u8 = 15;
    /// An array: its items, no length. Tag followed by a varint length and the item type.
    pub const ARRAY: u8 = 16;
    /// A struct: its fields in order. Tag followed by a varint field count, then each
    /// field's name (string) and type.
    pub const STRUCT: u8 = 17;
    /// Not described: the value travels as a varint length and its postcard bytes.
    pub const OTHER: u8 = 18;
}

/// A buffer was too small, or bytes ended early or held what they must not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WireError;

impl core::fmt::Display for WireError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("malformed or oversized frame")
    }
}

/// Writes fields into a slice. Allocates nothing; every method fails with [`WireError`]
/// when the slice is full.
pub struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl<'a> Writer<'a> {
    /// A writer at the start of `buf`.
    pub fn new(buf: &'a mut [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.pos
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.pos == 0
    }

    /// One byte.
    pub fn u8(&mut self, byte: u8) -> Result<(), WireError> {
        let slot = self.buf.get_mut(self.pos).ok_or(WireError)?;
        *slot = byte;
        self.pos += 1;
        Ok(())
    }

    /// An unsigned varint.
    pub fn varint(&mut self, mut value: u64) -> Result<(), WireError> {
        loop {
            let byte = (value & 0x7F) as u8;
            value >>= 7;
            if value == 0 {
                return self.u8(byte);
            }
            self.u8(byte | 0x80)?;
        }
    }

    /// Bytes as they are.
    pub fn bytes(&mut self, bytes: &[u8]) -> Result<(), WireError> {
        let end = self.pos.checked_add(bytes.len()).ok_or(WireError)?;
        self.buf
            .get_mut(self.pos..end)
            .ok_or(WireError)?
            .copy_from_slice(bytes);
        self.pos = end;
        Ok(())
    }

    /// A string: varint length, then its bytes.
    pub fn str(&mut self, text: &str) -> Result<(), WireError> {
        self.varint(text.len() as u64)?;
        self.bytes(text.as_bytes())
    }

    /// A value as postcard serializes it.
    pub fn postcard<T: serde::Serialize + ?Sized>(&mut self, value: &T) -> Result<(), WireError> {
        let rest = self.buf.get_mut(self.pos..).ok_or(WireError)?;
        let used = postcard::to_slice(value, rest)
            .map_err(|_| WireError)?
            .len();
        self.pos += used;
        Ok(())
    }

    /// A value as postcard serializes it, after a varint of its length (for values of
    /// [`ValueType::Other`]): serialized after one byte of room, moved when the length
    /// takes more.
    pub fn postcard_sized<T: serde::Serialize + ?Sized>(
        &mut self,
        value: &T,
    ) -> Result<(), WireError> {
        let start = self.pos;
        let body = start + 1;
        let rest = self.buf.get_mut(body..).ok_or(WireError)?;
        let len = postcard::to_slice(value, rest)
            .map_err(|_| WireError)?
            .len();
        let prefix = varint_len(len as u64);
        if prefix > 1 {
            let end = body + len + prefix - 1;
            if end > self.buf.len() {
                return Err(WireError);
            }
            self.buf.copy_within(body..body + len, body + prefix - 1);
        }
        self.pos = start;
        self.varint(len as u64)?;
        self.pos += len;
        Ok(())
    }

    /// A value type, as a [`KEY`] frame gives it (see [`tag`]).
    pub fn value_type(&mut self, shape: &ValueType) -> Result<(), WireError> {
        match *shape {
            ValueType::Bool => self.u8(tag::BOOL),
            ValueType::U8 => self.u8(tag::U8),
            ValueType::U16 => self.u8(tag::U16),
            ValueType::U32 => self.u8(tag::U32),
            ValueType::U64 => self.u8(tag::U64),
            ValueType::U128 => self.u8(tag::U128),
            ValueType::I8 => self.u8(tag::I8),
            ValueType::I16 => self.u8(tag::I16),
            ValueType::I32 => self.u8(tag::I32),
            ValueType::I64 => self.u8(tag::I64),
            ValueType::I128 => self.u8(tag::I128),
            ValueType::F32 => self.u8(tag::F32),
            ValueType::F64 => self.u8(tag::F64),
            ValueType::Char => self.u8(tag::CHAR),
            ValueType::Str { capacity } => {
                self.u8(tag::STR)?;
                self.varint(capacity as u64)
            }
            ValueType::Option(inner) => {
                self.u8(tag::OPTION)?;
                self.value_type(inner)
            }
            ValueType::Array { item, len } => {
                self.u8(tag::ARRAY)?;
                self.varint(len as u64)?;
                self.value_type(item)
            }
            ValueType::Struct(fields) => {
                self.u8(tag::STRUCT)?;
                self.varint(fields.len() as u64)?;
                for (name, shape) in fields {
                    self.str(name)?;
                    self.value_type(shape)?;
                }
                Ok(())
            }
            _ => self.u8(tag::OTHER),
        }
    }

    /// Appends the CRC of everything written: the payload becomes a frame, ready for
    /// [`cobs_encode`]. Returns its length.
    pub fn finish(mut self) -> Result<usize, WireError> {
        let crc = crc16(&self.buf[..self.pos]);
        self.bytes(&crc.to_le_bytes())?;
        Ok(self.pos)
    }
}

/// Reads fields from a slice. Every method fails with [`WireError`] when the bytes end
/// early or hold what they must not; nothing panics.
pub struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader of `bytes`.
    pub const fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    /// What is left.
    pub const fn rest(&self) -> &'a [u8] {
        self.bytes
    }

    /// One byte.
    pub fn u8(&mut self) -> Result<u8, WireError> {
        let (&first, rest) = self.bytes.split_first().ok_or(WireError)?;
        self.bytes = rest;
        Ok(first)
    }

    /// `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if n > self.bytes.len() {
            return Err(WireError);
        }
        let (taken, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(taken)
    }

    /// An unsigned varint of at most 64 bits.
    pub fn varint(&mut self) -> Result<u64, WireError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.u8()?;
            let bits = u64::from(byte & 0x7F);
            if shift == 63 && bits > 1 {
                return Err(WireError);
            }
            value |= bits << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(WireError)
    }

    /// An unsigned varint that fits a `u32`.
    pub fn varint_u32(&mut self) -> Result<u32, WireError> {
        u32::try_from(self.varint()?).map_err(|_| WireError)
    }

    /// A string: varint length, then UTF-8 bytes.
    pub fn str(&mut self) -> Result<&'a str, WireError> {
        let len = usize::try_from(self.varint()?).map_err(|_| WireError)?;
        core::str::from_utf8(self.take(len)?).map_err(|_| WireError)
    }
}

/// How many bytes the varint of `value` takes.
pub const fn varint_len(mut value: u64) -> usize {
    let mut len = 1;
    while value >= 0x80 {
        value >>= 7;
        len += 1;
    }
    len
}

/// The most bytes a value of this type takes in postcard, or `None` when it has no bound
/// ([`ValueType::Other`]).
pub const fn max_size(shape: &ValueType) -> Option<usize> {
    Some(match *shape {
        ValueType::Bool | ValueType::U8 | ValueType::I8 => 1,
        ValueType::U16 | ValueType::I16 => 3,
        ValueType::U32 | ValueType::I32 => 5,
        ValueType::U64 | ValueType::I64 => 10,
        ValueType::U128 | ValueType::I128 => 19,
        ValueType::F32 => 4,
        ValueType::F64 => 8,
        ValueType::Char => 5,
        ValueType::Str { capacity } => varint_len(capacity as u64) + capacity,
        ValueType::Option(inner) => match max_size(inner) {
            Some(size) => 1 + size,
            None => return None,
        },
        ValueType::Array { item, len } => match max_size(item) {
            Some(size) => size * len,
            None => return None,
        },
        ValueType::Struct(fields) => {
            let mut total = 0;
            let mut i = 0;
            while i < fields.len() {
                match max_size(&fields[i].1) {
                    Some(size) => total += size,
                    None => return None,
                }
                i += 1;
            }
            total
        }
        _ => return None,
    })
}

/// The CRC-16/IBM-3740 parameters (also called CRC-16/CCITT-FALSE): polynomial 0x1021,
/// initial value 0xFFFF, no reflection, no final XOR; check value 0x29B1.
const CRC: crc::Crc<u16> = crc::Crc::<u16>::new(&crc::CRC_16_IBM_3740);

/// The CRC-16/IBM-3740 of `bytes`.
pub fn crc16(bytes: &[u8]) -> u16 {
    CRC.checksum(bytes)
}

/// The most bytes the COBS encoding of `len` bytes takes, without the delimiter.
pub const fn cobs_max(len: usize) -> usize {
    len + len / 254 + 1
}

/// COBS-encodes `frame` and hands each encoded byte to `out`, then the `0x00` delimiter:
/// exactly the bytes of one frame on the line. Allocates nothing.
pub fn cobs_encode(frame: &[u8], mut out: impl FnMut(u8)) {
    let mut start = 0;
    loop {
        // The next block: up to 254 bytes that are not zero.
        let limit = frame.len().min(start + 254);
        let block = &frame[start..limit];
        let run = block.iter().position(|&b| b == 0).unwrap_or(block.len());
        out(run as u8 + 1);
        for &byte in &block[..run] {
            out(byte);
        }
        start += run;
        if start == frame.len() {
            // The last block: its code stands for the end of the frame (a block of 254
            // implies no zero anyway).
            break;
        }
        if run < 254 {
            // The zero the block's code stands for.
            start += 1;
            if start == frame.len() {
                out(1);
                break;
            }
        }
    }
    out(0);
}

/// Decodes one COBS frame (without its delimiter) in place; returns the decoded length.
/// Fails on a zero byte inside or a code that runs past the end.
pub fn cobs_decode_in_place(buf: &mut [u8]) -> Result<usize, WireError> {
    let mut read = 0;
    let mut write = 0;
    while read < buf.len() {
        let code = buf[read];
        if code == 0 {
            return Err(WireError);
        }
        let run = usize::from(code) - 1;
        read += 1;
        if read + run > buf.len() {
            return Err(WireError);
        }
        for i in 0..run {
            let byte = buf[read + i];
            if byte == 0 {
                return Err(WireError);
            }
            buf[write + i] = byte;
        }
        read += run;
        write += run;
        if code != 0xFF && read < buf.len() {
            buf[write] = 0;
            write += 1;
        }
    }
    Ok(write)
}

/// Checks a decoded frame's CRC; returns its payload (kind byte and fields).
pub fn check_frame(frame: &[u8]) -> Result<&[u8], WireError> {
    if frame.len() < 3 {
        return Err(WireError);
    }
    let (payload, crc) = frame.split_at(frame.len() - 2);
    if crc16(payload).to_le_bytes() == [crc[0], crc[1]] {
        Ok(payload)
    } else {
        Err(WireError)
    }
}
