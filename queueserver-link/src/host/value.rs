//! Values on the host: [`Shape`] (a key's value type, owned) and [`Value`] (a decoded
//! value), which serializes as the plain JSON value the device's `serde` would give.

use crate::wire::{tag, Reader, WireError};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};

/// A key's value type, as the device's schema gives it: the host-side, owned
/// [`ValueType`](queueserver::idict::ValueType).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Shape {
    /// `bool`.
    Bool,
    /// `u8`.
    U8,
    /// `u16`.
    U16,
    /// `u32`.
    U32,
    /// `u64` (and `usize`).
    U64,
    /// `u128`.
    U128,
    /// `i8`.
    I8,
    /// `i16`.
    I16,
    /// `i32`.
    I32,
    /// `i64` (and `isize`).
    I64,
    /// `i128`.
    I128,
    /// `f32`.
    F32,
    /// `f64`.
    F64,
    /// `char`.
    Char,
    /// A string of at most `capacity` bytes.
    Str {
        /// The most bytes it holds.
        capacity: usize,
    },
    /// An `Option` of the inner shape.
    Option(Box<Shape>),
    /// `len` items of one shape.
    Array {
        /// Each item's shape.
        item: Box<Shape>,
        /// How many.
        len: usize,
    },
    /// Named fields, in order.
    Struct(Vec<(String, Shape)>),
    /// Not described: the value comes as its postcard bytes.
    Other,
}

/// Nesting deeper than this in a schema is refused (a guard against hostile input).
const MAX_DEPTH: usize = 16;
/// Arrays longer than this in a schema are refused (a frame could not carry them).
const MAX_ITEMS: usize = 1 << 16;

impl Shape {
    /// Reads a shape as a [`KEY`](crate::wire::KEY) frame gives it.
    pub fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Self::read_at(r, 0)
    }

    fn read_at(r: &mut Reader<'_>, depth: usize) -> Result<Self, WireError> {
        if depth > MAX_DEPTH {
            return Err(WireError);
        }
        let len = |r: &mut Reader<'_>| usize::try_from(r.varint()?).map_err(|_| WireError);
        Ok(match r.u8()? {
            tag::BOOL => Self::Bool,
            tag::U8 => Self::U8,
            tag::U16 => Self::U16,
            tag::U32 => Self::U32,
            tag::U64 => Self::U64,
            tag::U128 => Self::U128,
            tag::I8 => Self::I8,
            tag::I16 => Self::I16,
            tag::I32 => Self::I32,
            tag::I64 => Self::I64,
            tag::I128 => Self::I128,
            tag::F32 => Self::F32,
            tag::F64 => Self::F64,
            tag::CHAR => Self::Char,
            tag::STR => Self::Str { capacity: len(r)? },
            tag::OPTION => Self::Option(Box::new(Self::read_at(r, depth + 1)?)),
            tag::ARRAY => {
                let n = len(r)?;
                if n > MAX_ITEMS {
                    return Err(WireError);
                }
                Self::Array {
                    item: Box::new(Self::read_at(r, depth + 1)?),
                    len: n,
                }
            }
            tag::STRUCT => {
                let n = len(r)?;
                if n > r.rest().len() {
                    return Err(WireError);
                }
                let mut fields = Vec::with_capacity(n);
                for _ in 0..n {
                    let name = r.str()?.to_owned();
                    fields.push((name, Self::read_at(r, depth + 1)?));
                }
                Self::Struct(fields)
            }
            tag::OTHER => Self::Other,
            _ => return Err(WireError),
        })
    }

    /// Decodes one value of this shape (postcard).
    pub fn decode(&self, r: &mut Reader<'_>) -> Result<Value, WireError> {
        let zigzag = |v: u64| ((v >> 1) as i64) ^ -((v & 1) as i64);
        Ok(match self {
            Self::Bool => match r.u8()? {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                _ => return Err(WireError),
            },
            Self::U8 => Value::U64(u64::from(r.u8()?)),
            Self::U16 => Value::U64(bounded(r.varint()?, u64::from(u16::MAX))?),
            Self::U32 => Value::U64(bounded(r.varint()?, u64::from(u32::MAX))?),
            Self::U64 => Value::U64(r.varint()?),
            Self::U128 => Value::U128(varint_u128(r)?),
            Self::I8 => Value::I64(i64::from(r.u8()? as i8)),
            Self::I16 | Self::I32 | Self::I64 => Value::I64(zigzag(r.varint()?)),
            Self::I128 => {
                let v = varint_u128(r)?;
                Value::I128(((v >> 1) as i128) ^ -((v & 1) as i128))
            }
            Self::F32 => Value::F32(f32::from_le_bytes(array(r)?)),
            Self::F64 => Value::F64(f64::from_le_bytes(array(r)?)),
            Self::Char => {
                let text = r.str()?;
                let mut chars = text.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) => Value::Char(c),
                    _ => return Err(WireError),
                }
            }
            Self::Str { .. } => Value::Str(r.str()?.to_owned()),
            Self::Option(inner) => match r.u8()? {
                0 => Value::Option(None),
                1 => Value::Option(Some(Box::new(inner.decode(r)?))),
                _ => return Err(WireError),
            },
            Self::Array { item, len } => {
                let mut items = Vec::with_capacity((*len).min(r.rest().len()));
                for _ in 0..*len {
                    items.push(item.decode(r)?);
                }
                Value::Array(items)
            }
            Self::Struct(fields) => {
                let mut values = Vec::with_capacity(fields.len());
                for (name, shape) in fields {
                    values.push((name.clone(), shape.decode(r)?));
                }
                Value::Struct(values)
            }
            Self::Other => {
                let len = usize::try_from(r.varint()?).map_err(|_| WireError)?;
                Value::Bytes(r.take(len)?.to_vec())
            }
        })
    }
}

fn bounded(value: u64, max: u64) -> Result<u64, WireError> {
    if value > max {
        Err(WireError)
    } else {
        Ok(value)
    }
}

fn array<const N: usize>(r: &mut Reader<'_>) -> Result<[u8; N], WireError> {
    r.take(N)?.try_into().map_err(|_| WireError)
}

fn varint_u128(r: &mut Reader<'_>) -> Result<u128, WireError> {
    let mut value = 0u128;
    for shift in (0..128).step_by(7) {
        let byte = r.u8()?;
        let bits = u128::from(byte & 0x7F);
        if shift == 126 && bits > 3 {
            return Err(WireError);
        }
        value |= bits << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(WireError)
}

/// A value decoded on the host. Serializes (JSON, …) as the plain value the device's
/// own `serde` gives: numbers, booleans, strings, `null` or the value for an `Option`,
/// arrays, objects for structs; the bytes of an undescribed value as an array of numbers.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A `bool`.
    Bool(bool),
    /// An unsigned integer of up to 64 bits.
    U64(u64),
    /// A signed integer of up to 64 bits.
    I64(i64),
    /// A `u128`.
    U128(u128),
    /// An `i128`.
    I128(i128),
    /// An `f32`.
    F32(f32),
    /// An `f64`.
    F64(f64),
    /// A `char`.
    Char(char),
    /// A string.
    Str(String),
    /// An `Option`.
    Option(Option<Box<Value>>),
    /// An array.
    Array(Vec<Value>),
    /// A struct's fields, in order.
    Struct(Vec<(String, Value)>),
    /// An undescribed value's postcard bytes.
    Bytes(Vec<u8>),
}

impl Value {
    /// The value as an `f64`, for any number (`None` for anything else).
    pub fn as_f64(&self) -> Option<f64> {
        Some(match *self {
            Self::U64(v) => v as f64,
            Self::I64(v) => v as f64,
            Self::U128(v) => v as f64,
            Self::I128(v) => v as f64,
            Self::F32(v) => f64::from(v),
            Self::F64(v) => v,
            _ => return None,
        })
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Bool(v) => s.serialize_bool(*v),
            Self::U64(v) => s.serialize_u64(*v),
            Self::I64(v) => s.serialize_i64(*v),
            Self::U128(v) => s.serialize_u128(*v),
            Self::I128(v) => s.serialize_i128(*v),
            Self::F32(v) => s.serialize_f32(*v),
            Self::F64(v) => s.serialize_f64(*v),
            Self::Char(v) => s.serialize_char(*v),
            Self::Str(v) => s.serialize_str(v),
            Self::Option(None) => s.serialize_none(),
            Self::Option(Some(v)) => s.serialize_some(v),
            Self::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Self::Struct(fields) => {
                let mut map = s.serialize_map(Some(fields.len()))?;
                for (name, value) in fields {
                    map.serialize_entry(name, value)?;
                }
                map.end()
            }
            Self::Bytes(bytes) => {
                let mut seq = s.serialize_seq(Some(bytes.len()))?;
                for byte in bytes {
                    seq.serialize_element(byte)?;
                }
                seq.end()
            }
        }
    }
}
