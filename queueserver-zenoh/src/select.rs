//! From a get's key expression to the requests it stands for.
//!
//! A get on `K` asks for every name `n` of the IDict whose key `P/n` intersects `K`, by
//! Zenoh's own key-expression intersection, and for the whole snapshot when `P/@snapshot`
//! intersects `K`. The names are those of the snapshot at hand (its [`IDict::visit`]), so
//! a map whose keys change is asked for the keys it has now. Names are concrete (the name
//! rules refuse `*`, `$`, `?`, `#` and a leading `@`), so "intersects" is "includes" here.

use crate::wire::SNAPSHOT_CHUNK;
use queueserver::idict::{KeyError, MAX_NAME_LEN};
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
/// **Any thread.** For a concrete key (`P/position`), one lookup of the name
/// ([`IDict::parse_key`], when the IDict parses names) and one key expression; for a key
/// expression with wildcards, O(names): each name's key expression is checked against it,
/// and allocated only when it matches (the replies go out on it). Keys without a valid
/// name are skipped (the connection checks when it is attached that the IDict names its
/// keys).
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
    if !query.is_wild() {
        if let Some(selection) = select_concrete(prefix, query, idict) {
            return selection;
        }
    }
    let mut keys = Vec::new();
    let mut full = String::with_capacity(prefix.len() + 1 + MAX_NAME_LEN);
    idict.visit(|key, _| {
        full.clear();
        full.push_str(prefix);
        full.push('/');
        if D::write_name(key, &mut full).is_err() {
            return;
        }
        let Ok(candidate) = keyexpr::new(full.as_str()) else {
            return;
        };
        if query.intersects(candidate) {
            keys.push((key.clone(), candidate.to_owned()));
        }
    });
    let snapshot = query.intersects(&snapshot_key(prefix));
    Selection { keys, snapshot }
}

/// [`select`] for a concrete `query`, which only `P/@snapshot` or the one name it spells
/// can match; `None` when the IDict does not parse names (then every name is compared).
fn select_concrete<D: IDict>(
    prefix: &keyexpr,
    query: &keyexpr,
    idict: &D,
) -> Option<Selection<D::Key>> {
    let none = Selection {
        keys: Vec::new(),
        snapshot: false,
    };
    let Some(name) = query
        .as_str()
        .strip_prefix(prefix.as_str())
        .and_then(|rest| rest.strip_prefix('/'))
    else {
        return Some(none);
    };
    if name == SNAPSHOT_CHUNK {
        return Some(Selection {
            keys: Vec::new(),
            snapshot: true,
        });
    }
    let key = match idict.parse_key(name) {
        Ok(key) => key,
        Err(KeyError::Unnamed) => return None,
        Err(_) => return Some(none),
    };
    // The key parsed must be named `name` exactly (an integer key parses `007` as 7,
    // whose name is `7`).
    let mut written = heapless::String::<MAX_NAME_LEN>::new();
    if D::write_name(&key, &mut written).is_err() || written.as_str() != name {
        return Some(none);
    }
    Some(Selection {
        keys: vec![(key, query.to_owned())],
        snapshot: false,
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use queueserver::idict::{write_checked, DisplayFromStr};
    use std::collections::BTreeMap;

    fn keys<D: IDict>(query: &str, idict: &D) -> Vec<String> {
        let prefix = keyexpr::new("p").unwrap();
        let selection = select(prefix, keyexpr::new(query).unwrap(), idict);
        selection.keys.iter().map(|(_, k)| k.to_string()).collect()
    }

    /// Names its keys, but parses no name: a concrete get compares it with every name.
    #[derive(Clone)]
    struct Unparsed;

    impl IDict for Unparsed {
        type Key = &'static str;
        type Value = f64;

        fn get(&self, key: &&'static str) -> Option<f64> {
            (*key == "a/b").then_some(1.0)
        }

        fn write_name<W: std::fmt::Write + ?Sized>(
            key: &&'static str,
            out: &mut W,
        ) -> Result<(), KeyError> {
            write_checked(key, out)
        }

        fn visit<F: FnMut(&&'static str, &f64)>(&self, mut f: F) {
            f(&"a/b", &1.0);
        }
    }

    #[test]
    fn a_concrete_get_of_an_idict_that_parses_no_name_finds_it_among_the_names() {
        assert_eq!(keys("p/a/b", &Unparsed), ["p/a/b"]);
        assert!(keys("p/a/c", &Unparsed).is_empty());
        assert!(keys("p/a", &Unparsed).is_empty());
    }

    #[test]
    fn a_concrete_get_selects_a_key_only_under_its_own_name() {
        // `007` parses as 7, whose name is `7`: only `p/7` names it.
        let map = BTreeMap::from([(DisplayFromStr(7u32), 1.0)]);
        assert_eq!(keys("p/7", &map), ["p/7"]);
        assert!(keys("p/007", &map).is_empty());
        assert!(keys("q/7", &map).is_empty());
        assert!(keys("p/8", &map).is_empty());
    }
}
