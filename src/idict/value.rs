//! [`FieldValue`]: the types a field of a derived IDict may have.

use core::fmt;

/// A type whose values can travel in the value type `#[derive(IDict)]` generates: each
/// field's type must implement it (skipped fields excepted).
///
/// The crate implements it for `f32`, `f64`, every integer type, `bool`, `char`,
/// `heapless::String<N>`, and `Option` and arrays of such types. For a type of your own (a
/// nested value, say a `Vec3`), one line does it: `impl FieldValue for Vec3 {}`.
///
/// What it promises, besides its supertraits: `clone_from` does not allocate (it runs in
/// [`IDict::copy_from`](crate::IDict::copy_from) on the computation's thread), and with the
/// `serde` feature the type serializes as the plain value a reader expects (a number, a
/// boolean, a string, or an object for a nested value). `String` and `Vec` break the first
/// promise, so they are not provided; use `heapless::String` and arrays.
pub trait FieldValue: Clone + PartialEq + fmt::Debug + Send {}

macro_rules! field_values {
    ($($t:ty)*) => {$( impl FieldValue for $t {} )*};
}

field_values!(f32 f64 u8 u16 u32 u64 u128 usize i8 i16 i32 i64 i128 isize bool char);

impl<const N: usize> FieldValue for heapless::String<N> {}

impl<T: FieldValue> FieldValue for Option<T> {}

impl<T: FieldValue, const N: usize> FieldValue for [T; N] {}
