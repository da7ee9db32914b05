//! From a get's key expression to the requests it stands for.
//!
//! A get on `K` asks for every name `n` of the IDict whose key `P/n` intersects `K`, by
//! Zenoh's own key-expression intersection, and for the whole snapshot when `P/@snapshot`
//! intersects `K`. The names are those of the snapshot at hand (its [`IDict::visit`]), so
//! a map whose keys change is asked for the keys it has now. Names are concrete (the name
//! rules refuse `*`, `$`, `?`, `#` and a leading `@`), so "intersects" is "includes" here.

use crate::wire::SNAPSHOT_CHUNK;
use queueserver::idict::MAX_NAME_LEN;
use queueserver::IDict;
use zenoh::key_expr::{keyexpr, OwnedKeyExpr};

/// What one get asks for: keys with the concrete key expression each is replied on, and
/// whether the whole snapshot is asked for too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection<K> {
    /// The keys named by the get, in [`IDict::visit`] order, each with `P/<name>`.
    pub keys: Vec<(K, OwnedKeyExpr)>,
    /// Whether the get names `P/@snapshot`.
    pub snapshot: bool,
}

impl<K> Selection<K> {
    /// How many requests the get stands for (one per key, one for the snapshot).
    pub fn len(&self) -> usize {
        self.keys.len() + usize::from(self.snapshot)
    }

    /// Whether the get names nothing this IDict has.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a get on `query` asks of an IDict published under `prefix`.
///
/// **Any thread.** Allocates (the selection, and one key expression per name, which the
/// replies go out on); O(names). Keys without a valid name are skipped (the connection
/// checks when it is attached that the IDict names its keys).
///
/// ```
/// use queueserver_zenoh::select::select;
/// use std::collections::BTreeMap;
/// use zenoh::key_expr::keyexpr;
///
/// let plant = BTreeMap::from([("position", 0.5), ("motor/speed", 2.0), ("motor/current", 0.1)]);
/// let prefix = keyexpr::new("lab/plant").unwrap();
/// let names = |query: &str| {
///     let selection = select(prefix, keyexpr::new(query).unwrap(), &plant);
///     let keys: Vec<String> = selection.keys.iter().map(|(_, k)| k.to_string()).collect();
///     (keys, selection.snapshot)
/// };
/// assert_eq!(names("lab/plant/position"), (vec!["lab/plant/position".into()], false));
/// assert_eq!(names("lab/plant/motor/*").0, ["lab/plant/motor/current", "lab/plant/motor/speed"]);
/// assert_eq!(names("lab/plant/*").0, ["lab/plant/position"]);
/// assert_eq!(names("lab/plant/**").0.len(), 3);
/// assert_eq!(names("lab/plant/@snapshot"), (vec![], true));
/// assert_eq!(names("lab/plant/torque"), (vec![], false));
/// assert_eq!(names("lab/**/speed").0, ["lab/plant/motor/speed"]);
/// ```
pub fn select<D: IDict>(prefix: &keyexpr, query: &keyexpr, idict: &D) -> Selection<D::Key> {
    let mut keys = Vec::new();
    idict.visit(|key, _| {
        let mut name = heapless::String::<MAX_NAME_LEN>::new();
        if D::write_name(key, &mut name).is_err() {
            return;
        }
        let Ok(full) = prefix.join(name.as_str()) else {
            return;
        };
        if query.intersects(&full) {
            keys.push((key.clone(), full));
        }
    });
    let snapshot = query.intersects(&snapshot_key(prefix));
    Selection { keys, snapshot }
}

/// `P/@snapshot`.
pub fn snapshot_key(prefix: &keyexpr) -> OwnedKeyExpr {
    // A valid prefix and a valid verbatim chunk make a valid key expression.
    prefix
        .join(SNAPSHOT_CHUNK)
        .expect("a prefix joined with @snapshot is a key expression")
}

/// `P/**`: every name under the prefix.
pub fn prefix_children(prefix: &keyexpr) -> OwnedKeyExpr {
    prefix
        .join("**")
        .expect("a prefix joined with ** is a key expression")
}
