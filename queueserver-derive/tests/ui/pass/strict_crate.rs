//! A user crate as strict as the core: no `unsafe`, every public item documented, every
//! lint an error; the derive's output must pass.

#![forbid(unsafe_code)]
#![deny(missing_docs, warnings, clippy::all)]

use queueserver::idict::FieldValue;
use queueserver::IDict;

/// A nested value.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Vec3 {
    /// x
    pub x: f32,
    /// y
    pub y: f32,
}

impl FieldValue for Vec3 {}

/// Mixed types, public.
#[derive(Clone, Default, IDict)]
pub struct Drive {
    /// rad/s
    pub speed: f64,
    /// count
    pub faults: u64,
    /// on
    pub enabled: bool,
    /// text
    #[idict(rename = "mode/name")]
    pub mode: heapless::String<8>,
    /// nested
    pub accel: Vec3,
    /// not a key
    #[idict(skip)]
    pub scratch: u8,
}

/// One type, with the generated enums renamed.
#[derive(Clone, Copy, Default, IDict)]
#[idict(key = "Channel", value = "Unused")]
pub struct Levels {
    /// a
    pub a: i16,
    /// b
    pub b: i16,
}

fn main() {
    let drive = Drive::default();
    assert_eq!(drive.get(&DriveKey::Faults), Some(DriveValue::Faults(0)));
    assert_eq!(Levels::default().get(&Channel::B), Some(0));
    assert_eq!(drive.parse_key("mode/name"), Ok(DriveKey::Mode));
}
