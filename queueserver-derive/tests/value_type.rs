//! `IDict::value_type` of a derived IDict: each key's `FieldValue::VALUE_TYPE`, in field
//! order, for the value enum and for the single value type alike.

use queueserver::idict::{FieldValue, ValueType};
use queueserver::IDict;

/// A nested value that describes its shape.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
struct Vec3 {
    x: f32,
    y: f32,
    z: f32,
}

impl FieldValue for Vec3 {
    const VALUE_TYPE: ValueType = ValueType::Struct(&[
        ("x", ValueType::F32),
        ("y", ValueType::F32),
        ("z", ValueType::F32),
    ]);
}

/// A nested value that does not.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
struct Opaque(u8);

impl FieldValue for Opaque {}

#[derive(Clone, IDict)]
struct Mixed {
    position: f64,
    steps: u64,
    #[idict(rename = "motor/on")]
    motor_on: bool,
    label: heapless::String<12>,
    limit: Option<i16>,
    gains: [f32; 3],
    index: usize,
    offset: isize,
    heading: Vec3,
    raw: Opaque,
    #[idict(skip)]
    #[allow(dead_code)]
    scratch: [u8; 4],
}

#[derive(Clone, IDict)]
struct Single {
    a: u32,
    b: u32,
}

#[test]
fn each_key_has_its_field_types_shape() {
    let expected = [
        (MixedKey::Position, ValueType::F64),
        (MixedKey::Steps, ValueType::U64),
        (MixedKey::MotorOn, ValueType::Bool),
        (MixedKey::Label, ValueType::Str { capacity: 12 }),
        (MixedKey::Limit, ValueType::Option(&ValueType::I16)),
        (
            MixedKey::Gains,
            ValueType::Array {
                item: &ValueType::F32,
                len: 3,
            },
        ),
        (MixedKey::Index, ValueType::U64),
        (MixedKey::Offset, ValueType::I64),
        (MixedKey::Heading, Vec3::VALUE_TYPE),
        (MixedKey::Raw, ValueType::Other),
    ];
    assert_eq!(expected.len(), MixedKey::ALL.len(), "every key is listed");
    for (key, shape) in expected {
        assert_eq!(Mixed::value_type(&key), Some(shape), "{key}");
    }
}

#[test]
fn a_single_value_type_is_described_per_key_too() {
    assert_eq!(Single::value_type(&SingleKey::A), Some(ValueType::U32));
    assert_eq!(Single::value_type(&SingleKey::B), Some(ValueType::U32));
}

#[test]
fn nested_shapes_are_reachable_from_the_constant() {
    let ValueType::Struct(fields) = Mixed::value_type(&MixedKey::Heading).unwrap() else {
        panic!("a struct");
    };
    let names: Vec<&str> = fields.iter().map(|(name, _)| *name).collect();
    assert_eq!(names, ["x", "y", "z"]);
    assert!(fields.iter().all(|(_, shape)| *shape == ValueType::F32));
    assert_eq!(
        <Option<[Option<u8>; 2]>>::VALUE_TYPE,
        ValueType::Option(&ValueType::Array {
            item: &ValueType::Option(&ValueType::U8),
            len: 2
        })
    );
}
