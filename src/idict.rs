//! [`IDict`]: the keyed snapshot a computation publishes.
//!
//! An IDict ("interface dictionary") is the part of the computation's state that others may
//! watch: named values. The server copies it into a triple buffer on every publish and reads
//! single keys from the copy when connections ask for them. The trait asks for two things:
//! look up a key, and copy a whole snapshot in place. Three more, with defaults, let
//! whatever talks to the outside work with any IDict by name: write a key's name
//! ([`IDict::write_name`]), parse a name back ([`IDict::parse_key`]), and visit every
//! key and value ([`IDict::visit`]); none of them allocates. A fourth,
//! [`IDict::value_type`], describes each key's values for binary wires. The [`name`] module has the
//! rules a name follows.
//!
//! `#[derive(IDict)]` (feature `derive`) writes all of it for a struct with named fields:
//! see the derive's documentation, `queueserver::IDict` in the macro namespace.
//!
//! # Real-time safety of the copy
//!
//! [`IDict::copy_from`] runs on the computation's thread inside
//! [`Publisher::put_update`](crate::Publisher::put_update). It must not allocate for the
//! publish path to be real-time safe. It does not for plain structs of `Copy` fields, for
//! `heapless` maps, and for the `BTreeMap` and `HashMap` impls below whose values clone
//! without allocating (numbers, `heapless` strings) as long as every snapshot published has
//! the keys of the IDict the server was built with. A `String` value allocates on every
//! change of length; use `heapless::String` instead.
//!
//! The server starts with three copies of the initial IDict (the triple buffer's), and a
//! publish copies into one of them: a `BTreeMap` or `HashMap` whose keys differ from the
//! copy's is rebuilt, which allocates. So when the keys change (or the server was built
//! from a map with other keys than those published), each copy is rebuilt once, at the
//! first publish that lands in it: the first two publishes after the change, and a third
//! whose place the poller decides: the third copy is the poller's, and reaches the
//! computation only after the poller has taken a newer snapshot, any number of publishes
//! later. Build the server from a map with the keys you will publish.
//!
//! # Implementing it by hand
//!
//! Deriving is simpler; by hand, `get` is the one method to write. An impl that does not
//! override the naming methods still works with the server, but has no names: transports
//! cannot show or ask for its values.
//!
//! ```
//! use queueserver::IDict;
//!
//! #[derive(Clone, Default)]
//! struct Motor {
//!     speed: f64,
//!     current: f64,
//!     faults: u32,
//! }
//!
//! impl IDict for Motor {
//!     type Key = &'static str;
//!     type Value = f64;
//!
//!     fn get(&self, key: &&'static str) -> Option<f64> {
//!         match *key {
//!             "speed" => Some(self.speed),
//!             "current" => Some(self.current),
//!             "faults" => Some(f64::from(self.faults)),
//!             _ => None,
//!         }
//!     }
//! }
//!
//! let motor = Motor { speed: 3.5, ..Motor::default() };
//! assert_eq!(motor.get(&"speed"), Some(3.5));
//! assert_eq!(motor.get(&"torque"), None);
//! ```
//!
//! To give it names, override the three naming methods; a key type with [`KeyName`] (here
//! `&'static str`) does most of the work:
//!
//! ```
//! # use queueserver::IDict;
//! use queueserver::idict::{KeyError, KeyName};
//! use core::fmt;
//! # #[derive(Clone, Default)]
//! # struct Motor { speed: f64, current: f64 }
//!
//! impl IDict for Motor {
//!     type Key = &'static str;
//!     type Value = f64;
//!
//!     fn get(&self, key: &&'static str) -> Option<f64> {
//!         match *key {
//!             "speed" => Some(self.speed),
//!             "current" => Some(self.current),
//!             _ => None,
//!         }
//!     }
//!
//!     fn write_name<W: fmt::Write + ?Sized>(key: &Self::Key, out: &mut W) -> Result<(), KeyError> {
//!         queueserver::idict::write_checked(key, out)
//!     }
//!
//!     fn parse_key(&self, name: &str) -> Result<Self::Key, KeyError> {
//!         queueserver::idict::parse_by_visit(self, name)
//!     }
//!
//!     fn visit<F: FnMut(&Self::Key, &Self::Value)>(&self, mut f: F) {
//!         f(&"speed", &self.speed);
//!         f(&"current", &self.current);
//!     }
//! }
//!
//! let motor = Motor { speed: 3.5, current: 0.25 };
//! assert_eq!(motor.parse_key("current"), Ok("current"));
//! assert_eq!(motor.parse_key("torque"), Err(KeyError::Unknown));
//! let mut listed = String::new();
//! motor.visit(|key, value| {
//!     Motor::write_name(key, &mut listed).unwrap();
//!     listed += &format!("={value} ");
//! });
//! assert_eq!(listed, "speed=3.5 current=0.25 ");
//! ```

#[cfg(feature = "serde")]
mod by_name;
pub(crate) mod generated;
pub mod name;
mod value;

#[cfg(feature = "serde")]
pub use by_name::ByName;
pub use name::{check_name, DisplayFromStr, KeyError, KeyName, NameError, MAX_NAME_LEN};
pub use value::{FieldValue, ValueType};

use core::fmt;
use core::hash::{BuildHasher, Hash};
use name::{Checked, Matches};

/// A snapshot of named values that a computation publishes.
///
/// `Key` must be `Ord`: the poller sorts a batch of requests to consolidate duplicates
/// without allocating. `copy_from` defaults to [`Clone::clone_from`]; override it when a
/// cheaper in-place copy exists.
///
/// The naming methods ([`write_name`](Self::write_name), [`parse_key`](Self::parse_key),
/// [`visit`](Self::visit)) have defaults for impls written without them: no names, nothing
/// visited. The provided impls and `#[derive(IDict)]` override all three.
pub trait IDict: Clone + Send {
    /// The name of a value. Requests carry it, so keep it small and cheap to clone.
    type Key: Clone + Ord + Send;
    /// What a read of one key returns.
    type Value;

    /// Reads one value, or `None` when the key does not exist.
    ///
    /// Runs on the poller, once per distinct key per batch of requests.
    fn get(&self, key: &Self::Key) -> Option<Self::Value>;

    /// Makes `self` equal to `source`, reusing `self`'s memory where it can.
    ///
    /// Runs on the computation's thread in `put_update`: it should neither allocate nor
    /// free for the publish path to be real-time safe.
    fn copy_from(&mut self, source: &Self) {
        self.clone_from(source);
    }

    /// Writes the name of `key` into `out`: a valid name (see [`name`]), or an error.
    ///
    /// Runs anywhere; allocates nothing (for the provided key types: `DisplayFromStr`
    /// allocates if its `Display` does). On an error `out` may hold part of the name.
    /// [`KeyError::Invalid`]: the key's text is no valid name (a map key `"a b"`);
    /// [`KeyError::Write`]: `out` refused the text; [`KeyError::Unnamed`]: the default, for
    /// an impl that does not name its keys.
    fn write_name<W: fmt::Write + ?Sized>(key: &Self::Key, out: &mut W) -> Result<(), KeyError> {
        let _ = (key, out);
        Err(KeyError::Unnamed)
    }

    /// The key of this snapshot named `name`.
    ///
    /// Runs anywhere; allocates nothing (a `String` key allocates itself). Takes `&self`
    /// because some key types can only be found among the snapshot's own keys (a
    /// `&'static str`). [`KeyError::Invalid`]: `name` breaks the name rules;
    /// [`KeyError::Malformed`]: the key type cannot hold it (`x` for an integer key);
    /// [`KeyError::Unknown`]: this snapshot has no key of that name; [`KeyError::Unnamed`]:
    /// the default, for an impl that does not name its keys.
    fn parse_key(&self, name: &str) -> Result<Self::Key, KeyError> {
        check_name(name)?;
        Err(KeyError::Unnamed)
    }

    /// Calls `f` with every key of the snapshot and its value, once each.
    ///
    /// Runs anywhere (typically the poller or a connection); allocates nothing unless a
    /// value's clone does (derived IDicts build each value as `get` does). Map impls visit
    /// in the map's order; derived ones in field order. The default visits nothing.
    fn visit<F: FnMut(&Self::Key, &Self::Value)>(&self, f: F) {
        let _ = f;
    }

    /// The shape of the values `key` holds, as `serde` serializes them: what a
    /// self-describing binary wire (a serial link sending `postcard`) tells its reader.
    ///
    /// Runs anywhere; a constant per key, allocates nothing. `None`, the default, for an
    /// impl that does not describe its values (the provided map impls: their value type
    /// need not be a [`FieldValue`]); `#[derive(IDict)]` gives each field's
    /// [`FieldValue::VALUE_TYPE`].
    fn value_type(key: &Self::Key) -> Option<ValueType> {
        let _ = key;
        None
    }
}

/// Writes `key`'s [`KeyName`] into `out` and checks it against the name rules as it goes:
/// what [`IDict::write_name`] does for the provided impls, for hand-written ones to call.
///
/// Allocates nothing; the check holds no buffer.
pub fn write_checked<K: KeyName, W: fmt::Write + ?Sized>(
    key: &K,
    out: &mut W,
) -> Result<(), KeyError> {
    let mut checked = Checked::new(out);
    let written = key.write_name(&mut checked);
    checked.result(written)
}

/// [`IDict::parse_key`] for an IDict whose keys have a [`KeyName`] and whose
/// [`IDict::visit`] lists them: checks the name, builds the key with
/// [`KeyName::from_name`], and checks that the snapshot has it; when the key type cannot
/// be built from text (a `&'static str`), finds it by comparing names with the snapshot's
/// keys, through `visit`.
///
/// Allocates nothing (a `String` key allocates itself); O(keys).
pub fn parse_by_visit<D>(idict: &D, name: &str) -> Result<D::Key, KeyError>
where
    D: IDict,
    D::Key: KeyName,
{
    parse_with(
        name,
        |key| {
            let mut found = false;
            idict.visit(|k, _| found |= k == key);
            found
        },
        |found| {
            idict.visit(|key, _| {
                if found.is_none() && names_equal(key, name) {
                    *found = Some(key.clone());
                }
            });
        },
    )
}

/// Whether `key`'s name is `name`.
fn names_equal<K: KeyName>(key: &K, name: &str) -> bool {
    let mut matches = Matches::new(name);
    key.write_name(&mut matches).is_ok() && matches.is_match()
}

/// The shared steps of parsing a name for a keyed collection: check it, build the key (or
/// let `find` look for it by name), check `has` it.
fn parse_with<K: KeyName>(
    name: &str,
    has: impl FnOnce(&K) -> bool,
    find: impl FnOnce(&mut Option<K>),
) -> Result<K, KeyError> {
    check_name(name)?;
    match K::from_name(name) {
        Ok(key) if has(&key) => Ok(key),
        Ok(_) => Err(KeyError::Unknown),
        Err(KeyError::Unknown) => {
            let mut found = None;
            find(&mut found);
            found.ok_or(KeyError::Unknown)
        }
        Err(other) => Err(other),
    }
}

/// The naming methods of a map: keys named by their [`KeyName`], found by lookup (or by
/// name among the map's keys), visited in the map's own order.
macro_rules! map_names {
    ($contains:path) => {
        fn write_name<W: fmt::Write + ?Sized>(key: &K, out: &mut W) -> Result<(), KeyError> {
            write_checked(key, out)
        }

        fn parse_key(&self, name: &str) -> Result<K, KeyError> {
            parse_with(
                name,
                |key| $contains(self, key),
                |found| *found = self.keys().find(|key| names_equal(*key, name)).cloned(),
            )
        }

        fn visit<F: FnMut(&K, &V)>(&self, mut f: F) {
            for (key, value) in self.iter() {
                f(key, value);
            }
        }
    };
}

impl<K, V, S, const N: usize> IDict for heapless::IndexMap<K, V, S, N>
where
    K: Clone + Ord + Hash + Send + KeyName,
    V: Clone + Send,
    S: BuildHasher + Clone + Send,
{
    type Key = K;
    type Value = V;

    fn get(&self, key: &K) -> Option<V> {
        heapless::IndexMap::get(self, key).cloned()
    }

    map_names!(heapless::IndexMap::contains_key);
}

impl<K, V, const N: usize> IDict for heapless::LinearMap<K, V, N>
where
    K: Clone + Ord + Send + KeyName,
    V: Clone + Send,
{
    type Key = K;
    type Value = V;

    fn get(&self, key: &K) -> Option<V> {
        heapless::LinearMap::get(self, key).cloned()
    }

    map_names!(heapless::LinearMap::contains_key);
}

impl<K, V> IDict for alloc::collections::BTreeMap<K, V>
where
    K: Clone + Ord + Send + KeyName,
    V: Clone + Send,
{
    type Key = K;
    type Value = V;

    fn get(&self, key: &K) -> Option<V> {
        alloc::collections::BTreeMap::get(self, key).cloned()
    }

    /// Copies value by value when both maps hold the same keys (no allocation for values
    /// that clone without allocating); rebuilds the map otherwise.
    fn copy_from(&mut self, source: &Self) {
        if self.len() == source.len() && self.keys().eq(source.keys()) {
            for (dst, src) in self.values_mut().zip(source.values()) {
                dst.clone_from(src);
            }
        } else {
            self.clone_from(source);
        }
    }

    map_names!(alloc::collections::BTreeMap::contains_key);
}

#[cfg(feature = "std")]
impl<K, V, S> IDict for std::collections::HashMap<K, V, S>
where
    K: Clone + Ord + Hash + Send + KeyName,
    V: Clone + Send,
    S: BuildHasher + Clone + Send,
{
    type Key = K;
    type Value = V;

    fn get(&self, key: &K) -> Option<V> {
        std::collections::HashMap::get(self, key).cloned()
    }

    /// Copies value by value when both maps hold the same keys (no allocation for values
    /// that clone without allocating); rebuilds the map otherwise.
    fn copy_from(&mut self, source: &Self) {
        if self.len() == source.len() && self.keys().all(|k| source.contains_key(k)) {
            for (key, dst) in self.iter_mut() {
                if let Some(src) = source.get(key) {
                    dst.clone_from(src);
                }
            }
        } else {
            self.clone_from(source);
        }
    }

    map_names!(std::collections::HashMap::contains_key);
}
