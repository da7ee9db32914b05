//! What the code `#[derive(IDict)]` generates calls in the core: the `serde` impls.
//!
//! The generated code lives in the user's crate, where the core's features cannot be seen,
//! so it calls `__idict_serde!`, which this module defines once with the `serde` feature
//! (the impls) and once without (nothing). Not public API: only the derive calls it.

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
