//! What the code `#[derive(IDict)]` generates calls in the core: the choice of copy, and
//! the `serde` impls. Not public API: only the derive uses it.
//!
//! **The copy.** A derived `copy_from` of a `Copy` struct is one assignment of the whole
//! struct, which compilers turn into a block copy; for any other struct it copies field by
//! field with `clone_from`. Both are in place and allocate nothing for `FieldValue` fields;
//! the first is what a hand-written `*self = *source` compiles to, where copying sixteen
//! `f32` fields one by one costs three times the instructions on a Cortex-M4. The derive
//! cannot see whether a struct is `Copy`, so the generated code asks the compiler: it calls
//! `copy_whole` on a `&CopyProbe<Self>`, which method resolution finds on `CopyProbe<T>`
//! when `T: Copy` (it copies, and says so) and otherwise, one auto-reference later, on
//! `&CopyProbe<T>` (it does nothing, and says so). The type is concrete where the call is
//! made, so the choice is made at compile time and costs nothing at run time.
//!
//! **The value types.** A derived `value_type` gives each field type's
//! [`FieldValue::VALUE_TYPE`](crate::idict::FieldValue::VALUE_TYPE) through the same kind of
//! probe, [`ShapeProbe`]: a field type that is no `FieldValue` is already a compile error
//! of its own (the derive checks every field), and the probe's fallback keeps it from
//! being reported a second time.
//!
//! **serde.** The generated code lives in the user's crate, where the core's features
//! cannot be seen, so it calls `__idict_serde!`, which this module defines once with the
//! `serde` feature (the impls) and once without (nothing).

use crate::idict::{FieldValue, ValueType};
use core::marker::PhantomData;

/// Resolves `copy_whole` to [`CopyWhole`] for a `Copy` type, else to [`CopyFields`].
pub struct CopyProbe<T>(PhantomData<fn() -> T>);

impl<T> CopyProbe<T> {
    /// A probe for `T`.
    #[inline(always)]
    pub const fn new() -> Self {
        Self(PhantomData)
    }
}

impl<T> Default for CopyProbe<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// The copy of a `Copy` type: one assignment.
pub trait CopyWhole<T> {
    /// Copies `src` into `dst` whole; returns `true`.
    fn copy_whole(&self, dst: &mut T, src: &T) -> bool;
}

impl<T: Copy> CopyWhole<T> for CopyProbe<T> {
    #[inline(always)]
    fn copy_whole(&self, dst: &mut T, src: &T) -> bool {
        *dst = *src;
        true
    }
}

/// The fallback for any other type: leaves the copy to the caller's field-by-field code.
pub trait CopyFields<T> {
    /// Copies nothing; returns `false`.
    fn copy_whole(&self, dst: &mut T, src: &T) -> bool;
}

impl<T> CopyFields<T> for &CopyProbe<T> {
    #[inline(always)]
    fn copy_whole(&self, _: &mut T, _: &T) -> bool {
        false
    }
}

/// Resolves `shape` to [`ShapeOf`] for a [`FieldValue`], else to [`NoShape`].
pub struct ShapeProbe<T>(PhantomData<fn() -> T>);

impl<T> ShapeProbe<T> {
    /// A probe for `T`.
    #[inline(always)]
    pub const fn new() -> Self {
        Self(PhantomData)
    }
}

impl<T> Default for ShapeProbe<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// The shape of a [`FieldValue`]: its `VALUE_TYPE`.
pub trait ShapeOf<T> {
    /// `T::VALUE_TYPE`.
    fn shape(&self) -> ValueType;
}

impl<T: FieldValue> ShapeOf<T> for ShapeProbe<T> {
    #[inline(always)]
    fn shape(&self) -> ValueType {
        T::VALUE_TYPE
    }
}

/// The fallback for a type that is no `FieldValue` (a compile error reported elsewhere).
pub trait NoShape<T> {
    /// [`ValueType::Other`].
    fn shape(&self) -> ValueType;
}

impl<T> NoShape<T> for &ShapeProbe<T> {
    #[inline(always)]
    fn shape(&self) -> ValueType {
        ValueType::Other
    }
}

/// Expands to the `serde` impls of a derived IDict: its key enum as its name, its value
/// enum as the plain value, and (unless `serde_struct: no`) the struct as an object of
/// names and values.
#[cfg(feature = "serde")]
#[doc(hidden)]
#[macro_export]
macro_rules! __idict_serde {
    (
        serde_struct: $serde_struct:ident,
        struct $name:ident { $( $field:ident : $ty:ty => $variant:ident ),* }
        skip { $( $skipped:ident ),* }
        key $key:ident;
        value $($value:tt)*
    ) => {
        const _: () = {
            use $crate::__private::serde;

            #[automatically_derived]
            impl serde::Serialize for $key {
                fn serialize<S: serde::Serializer>(&self, s: S) -> ::core::result::Result<S::Ok, S::Error> {
                    s.serialize_str(self.name())
                }
            }

            #[automatically_derived]
            impl<'de> serde::Deserialize<'de> for $key {
                fn deserialize<D: serde::Deserializer<'de>>(d: D) -> ::core::result::Result<Self, D::Error> {
                    struct Names;
                    impl<'de> serde::de::Visitor<'de> for Names {
                        type Value = $key;
                        fn expecting(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                            f.write_str(::core::concat!("the name of a key of `", ::core::stringify!($name), "`"))
                        }
                        fn visit_str<E: serde::de::Error>(self, name: &str) -> ::core::result::Result<$key, E> {
                            $key::from_name(name).map_err(|_| E::unknown_variant(name, &$key::NAMES))
                        }
                    }
                    d.deserialize_str(Names)
                }
            }

            $crate::__idict_serde!(@value $($value)*);
            $crate::__idict_serde!(@struct $serde_struct $name $key { $( $field : $ty => $variant ),* } { $( $skipped ),* });
        };
    };

    (@value single;) => {};
    (@value enum $value:ident { $( $variant:ident ),* };) => {
        #[automatically_derived]
        impl serde::Serialize for $value {
            fn serialize<S: serde::Serializer>(&self, s: S) -> ::core::result::Result<S::Ok, S::Error> {
                match self {
                    $( Self::$variant(value) => serde::Serialize::serialize(value, s), )*
                }
            }
        }
    };

    (@struct no $($rest:tt)*) => {};
    (@struct yes $name:ident $key:ident { $( $field:ident : $ty:ty => $variant:ident ),* } { $( $skipped:ident ),* }) => {
        #[automatically_derived]
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> ::core::result::Result<S::Ok, S::Error> {
                serde::Serialize::serialize(&$crate::idict::ByName(self), s)
            }
        }

        #[automatically_derived]
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> ::core::result::Result<Self, D::Error> {
                struct Values;
                impl<'de> serde::de::Visitor<'de> for Values {
                    type Value = $name;
                    fn expecting(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                        f.write_str(::core::concat!("an object of the values of `", ::core::stringify!($name), "`"))
                    }
                    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> ::core::result::Result<$name, A::Error> {
                        $( let mut $field: ::core::option::Option<$ty> = ::core::option::Option::None; )*
                        while let ::core::option::Option::Some(key) = map.next_key::<$key>()? {
                            match key {
                                $( $key::$variant => {
                                    if $field.is_some() {
                                        return ::core::result::Result::Err(
                                            <A::Error as serde::de::Error>::duplicate_field($key::$variant.name()),
                                        );
                                    }
                                    $field = ::core::option::Option::Some(map.next_value()?);
                                } )*
                            }
                        }
                        ::core::result::Result::Ok($name {
                            $( $field: match $field {
                                ::core::option::Option::Some(value) => value,
                                ::core::option::Option::None => return ::core::result::Result::Err(
                                    <A::Error as serde::de::Error>::missing_field($key::$variant.name()),
                                ),
                            }, )*
                            $( $skipped: ::core::default::Default::default(), )*
                        })
                    }
                }
                d.deserialize_map(Values)
            }
        }
    };
}

/// Without the `serde` feature, the derive's `serde` impls are nothing.
#[cfg(not(feature = "serde"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __idict_serde {
    ($($anything:tt)*) => {};
}
