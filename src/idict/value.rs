//! [`FieldValue`]: the types a field of a derived IDict may have, and [`ValueType`], the
//! shape of such a value, for transports that carry values without their Rust types.

use core::fmt;

/// A type whose values can travel in the value type `#[derive(IDict)]` generates: each
/// field's type must implement it (skipped fields excepted).
///
/// The crate implements it for `f32`, `f64`, every integer type, `bool`, `char`,
/// `heapless::String<N>`, and `Option` and arrays of such types. For a type of your own (a
/// nested value, say a `Vec3`), one line does it: `impl FieldValue for Vec3 {}`; add
/// [`VALUE_TYPE`](Self::VALUE_TYPE) to describe its shape to binary transports.
///
/// What it promises, besides its supertraits: `clone_from` does not allocate (it runs in
/// [`IDict::copy_from`](crate::IDict::copy_from) on the computation's thread), and with the
/// `serde` feature the type serializes as the plain value a reader expects (a number, a
/// boolean, a string, or an object for a nested value). `String` and `Vec` break the first
/// promise, so they are not provided; use `heapless::String` and arrays.
pub trait FieldValue: Clone + PartialEq + fmt::Debug + Send {
    /// The shape of the value as `serde` serializes it: what a binary transport (a
    /// serial link sending `postcard`) tells the other side so that it can decode values
    /// without the Rust type. [`ValueType::Other`] by default: such a value can still
    /// travel, as bytes the other side cannot read.
    ///
    /// ```
    /// use queueserver::idict::{FieldValue, ValueType};
    ///
    /// assert_eq!(f32::VALUE_TYPE, ValueType::F32);
    /// assert_eq!(<Option<u8>>::VALUE_TYPE, ValueType::Option(&ValueType::U8));
    /// assert_eq!(<[i16; 3]>::VALUE_TYPE, ValueType::Array { item: &ValueType::I16, len: 3 });
    /// assert_eq!(<heapless::String<8>>::VALUE_TYPE, ValueType::Str { capacity: 8 });
    ///
    /// #[derive(Clone, Debug, PartialEq, serde::Serialize)]
    /// struct Vec3 { x: f32, y: f32, z: f32 }
    /// impl FieldValue for Vec3 {
    ///     const VALUE_TYPE: ValueType =
    ///         ValueType::Struct(&[("x", ValueType::F32), ("y", ValueType::F32), ("z", ValueType::F32)]);
    /// }
    /// ```
    const VALUE_TYPE: ValueType = ValueType::Other;
}

/// The shape of a value as `serde` serializes it (its data model), described without the
/// Rust type: each key's entry in a self-describing wire's schema
/// ([`IDict::value_type`](crate::IDict::value_type)).
///
/// `usize` and `isize` serialize as `u64` and `i64` and are described so. `Copy`, built in
/// constants: a nested shape is a `&'static` reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ValueType {
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
    /// A string of at most `capacity` bytes (`heapless::String<capacity>`).
    Str {
        /// The most bytes it holds.
        capacity: usize,
    },
    /// `Option<T>`, `T`'s shape inside.
    Option(&'static ValueType),
    /// `[T; len]`: exactly `len` items (serialized as a tuple, without its length).
    Array {
        /// The shape of each item.
        item: &'static ValueType,
        /// How many.
        len: usize,
    },
    /// A struct with named fields, in order: `(name, shape)`.
    Struct(&'static [(&'static str, ValueType)]),
    /// A shape not described: the value travels, but its reader cannot decode it.
    Other,
}

/// Written by hand: the derive cannot see through the `&'static` nesting.
#[cfg(feature = "defmt")]
impl defmt::Format for ValueType {
    fn format(&self, f: defmt::Formatter<'_>) {
        let name = match self {
            Self::Bool => "bool",
            Self::U8 => "u8",
            Self::U16 => "u16",
            Self::U32 => "u32",
            Self::U64 => "u64",
            Self::U128 => "u128",
            Self::I8 => "i8",
            Self::I16 => "i16",
            Self::I32 => "i32",
            Self::I64 => "i64",
            Self::I128 => "i128",
            Self::F32 => "f32",
            Self::F64 => "f64",
            Self::Char => "char",
            Self::Other => "Other",
            Self::Str { capacity } => return defmt::write!(f, "Str({=usize})", capacity),
            Self::Option(inner) => return defmt::write!(f, "Option({})", inner),
            Self::Array { item, len } => {
                return defmt::write!(f, "[{}; {=usize}]", item, len);
            }
            Self::Struct(fields) => {
                defmt::write!(f, "Struct {{");
                for (name, shape) in fields.iter() {
                    defmt::write!(f, " {=str}: {}", name, shape);
                }
                return defmt::write!(f, " }}");
            }
        };
        defmt::write!(f, "{=str}", name);
    }
}

macro_rules! field_values {
    ($($t:ty => $shape:ident)*) => {$(
        impl FieldValue for $t {
            const VALUE_TYPE: ValueType = ValueType::$shape;
        }
    )*};
}

field_values!(
    f32 => F32 f64 => F64 bool => Bool char => Char
    u8 => U8 u16 => U16 u32 => U32 u64 => U64 u128 => U128 usize => U64
    i8 => I8 i16 => I16 i32 => I32 i64 => I64 i128 => I128 isize => I64
);

impl<const N: usize> FieldValue for heapless::String<N> {
    const VALUE_TYPE: ValueType = ValueType::Str { capacity: N };
}

impl<T: FieldValue> FieldValue for Option<T> {
    const VALUE_TYPE: ValueType = ValueType::Option(&T::VALUE_TYPE);
}

impl<T: FieldValue, const N: usize> FieldValue for [T; N] {
    const VALUE_TYPE: ValueType = ValueType::Array {
        item: &T::VALUE_TYPE,
        len: N,
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::IDict;

    #[test]
    fn provided_types_describe_themselves() {
        assert_eq!(u16::VALUE_TYPE, ValueType::U16);
        assert_eq!(i128::VALUE_TYPE, ValueType::I128);
        assert_eq!(usize::VALUE_TYPE, ValueType::U64);
        assert_eq!(isize::VALUE_TYPE, ValueType::I64);
        assert_eq!(char::VALUE_TYPE, ValueType::Char);
        assert_eq!(
            <heapless::String<5>>::VALUE_TYPE,
            ValueType::Str { capacity: 5 }
        );
        assert_eq!(
            <[Option<f64>; 4]>::VALUE_TYPE,
            ValueType::Array {
                item: &ValueType::Option(&ValueType::F64),
                len: 4
            }
        );
    }

    #[test]
    fn a_type_of_ones_own_is_other_unless_it_says() {
        #[derive(Clone, Debug, PartialEq)]
        struct Mine;
        impl FieldValue for Mine {}
        assert_eq!(Mine::VALUE_TYPE, ValueType::Other);
    }

    #[test]
    fn maps_do_not_describe_their_values() {
        type Map = alloc::collections::BTreeMap<&'static str, f64>;
        assert_eq!(<Map as IDict>::value_type(&"speed"), None);
        type Linear = heapless::LinearMap<u8, f32, 4>;
        assert_eq!(<Linear as IDict>::value_type(&3), None);
    }
}
