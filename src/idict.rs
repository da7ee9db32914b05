//! [`IDict`]: the keyed snapshot a computation publishes.
//!
//! An IDict ("interface dictionary") is the part of the computation's state that others may
//! watch: named values. The server copies it into a triple buffer on every publish and reads
//! single keys from the copy when connections ask for them. The trait asks for two things:
//! look up a key, and copy a whole snapshot in place.
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
//! # Implementing it for your own struct
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

use core::hash::{BuildHasher, Hash};

/// A snapshot of named values that a computation publishes.
///
/// `Key` must be `Ord`: the poller sorts a batch of requests to consolidate duplicates
/// without allocating. `copy_from` defaults to [`Clone::clone_from`]; override it when a
/// cheaper in-place copy exists.
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
}

impl<K, V, S, const N: usize> IDict for heapless::IndexMap<K, V, S, N>
where
    K: Clone + Ord + Hash + Send,
    V: Clone + Send,
    S: BuildHasher + Clone + Send,
{
    type Key = K;
    type Value = V;

    fn get(&self, key: &K) -> Option<V> {
        heapless::IndexMap::get(self, key).cloned()
    }
}

impl<K, V, const N: usize> IDict for heapless::LinearMap<K, V, N>
where
    K: Clone + Ord + Send,
    V: Clone + Send,
{
    type Key = K;
    type Value = V;

    fn get(&self, key: &K) -> Option<V> {
        heapless::LinearMap::get(self, key).cloned()
    }
}

impl<K, V> IDict for alloc::collections::BTreeMap<K, V>
where
    K: Clone + Ord + Send,
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
}

#[cfg(feature = "std")]
impl<K, V, S> IDict for std::collections::HashMap<K, V, S>
where
    K: Clone + Ord + Hash + Send,
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
}
