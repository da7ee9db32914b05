//! The mapping from a get's key expression to requests, against a reference matcher
//! written from the key-expression rules: for any names and any query, the keys selected
//! are exactly the names whose `P/<name>` the query matches, and the snapshot is selected
//! exactly when the query matches `P/@snapshot`.

use proptest::prelude::*;
use queueserver_zenoh::select::select;
use std::collections::BTreeMap;
use zenoh::key_expr::{keyexpr, OwnedKeyExpr};

/// Whether the chunk pattern `pattern` (literal text, `*`, or text with `$*` globs) matches
/// the concrete chunk `chunk`. Wildcards never match a verbatim chunk (one starting `@`).
fn chunk_matches(pattern: &str, chunk: &str) -> bool {
    if pattern == "*" {
        return !chunk.starts_with('@');
    }
    if !pattern.contains("$*") {
        return pattern == chunk;
    }
    if chunk.starts_with('@') {
        return false;
    }
    let parts: Vec<&str> = pattern.split("$*").collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !chunk.starts_with(first) || chunk.len() < first.len() + last.len() || !chunk.ends_with(last)
    {
        return false;
    }
    // The middle parts in order, in what is left between the first and the last.
    let mut rest = &chunk[first.len()..chunk.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

/// Whether the pattern's chunks match the key's chunks (`**`: any number of chunks, none
/// of them verbatim).
fn matches(pattern: &[&str], key: &[&str]) -> bool {
    match pattern.split_first() {
        None => key.is_empty(),
        Some((&"**", rest)) => {
            matches(rest, key)
                || key
                    .split_first()
                    .is_some_and(|(first, tail)| !first.starts_with('@') && matches(pattern, tail))
        }
        Some((first, rest)) => key
            .split_first()
            .is_some_and(|(chunk, tail)| chunk_matches(first, chunk) && matches(rest, tail)),
    }
}

fn reference(query: &str, key: &str) -> bool {
    let pattern: Vec<&str> = query.split('/').collect();
    let key: Vec<&str> = key.split('/').collect();
    matches(&pattern, &key)
}

fn name_chunk() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("a".to_owned()),
        Just("b".to_owned()),
        Just("ab".to_owned()),
        Just("ba".to_owned()),
        Just("a-1".to_owned()),
        Just("x.y".to_owned()),
        Just("p".to_owned()),
    ]
}

fn name() -> impl Strategy<Value = String> {
    prop::collection::vec(name_chunk(), 1..4).prop_map(|chunks| chunks.join("/"))
}

fn query_chunk() -> impl Strategy<Value = String> {
    prop_oneof![
        name_chunk(),
        Just("*".to_owned()),
        Just("**".to_owned()),
        Just("a$*".to_owned()),
        Just("$*b".to_owned()),
        Just("a$*b".to_owned()),
        Just("@snapshot".to_owned()),
        Just("q".to_owned()),
    ]
}

/// A query, canonized by Zenoh (the reference reads the canonical form).
fn query() -> impl Strategy<Value = OwnedKeyExpr> {
    prop::collection::vec(query_chunk(), 1..6).prop_filter_map("not a key expression", |chunks| {
        OwnedKeyExpr::autocanonize(chunks.join("/")).ok()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

    #[test]
    fn a_get_selects_exactly_the_names_and_the_snapshot_it_matches(
        names in prop::collection::btree_set(name(), 0..8),
        prefix in prop_oneof![Just("p"), Just("p/q"), Just("a/b")],
        query in query(),
    ) {
        let idict: BTreeMap<String, f64> = names.iter().map(|n| (n.clone(), 1.0)).collect();
        let prefix = keyexpr::new(prefix).unwrap();
        let selection = select(prefix, &query, &idict);

        let selected: Vec<String> = selection.keys.iter().map(|(key, _)| key.clone()).collect();
        let expected: Vec<String> = names
            .iter()
            .filter(|n| reference(&query, &format!("{prefix}/{n}")))
            .cloned()
            .collect();
        prop_assert_eq!(&selected, &expected, "query {}", query);
        for (name, key) in &selection.keys {
            // Replies go on the concrete key of the name.
            prop_assert_eq!(key.as_str(), format!("{prefix}/{name}"));
        }
        prop_assert_eq!(
            selection.snapshot,
            reference(&query, &format!("{prefix}/@snapshot")),
            "query {}", query
        );
    }
}

#[test]
fn the_reference_matcher_follows_the_rules() {
    assert!(reference("p/**", "p/a/b"));
    assert!(reference("p/**", "p"));
    assert!(!reference("p/**", "p/@snapshot"));
    assert!(reference("p/@snapshot", "p/@snapshot"));
    assert!(!reference("p/*", "p/@snapshot"));
    assert!(reference("p/a$*", "p/ab"));
    assert!(reference("p/a$*", "p/a"));
    assert!(!reference("p/a$*", "p/ba"));
    assert!(reference("**/b", "p/a/b"));
    assert!(!reference("p/*", "p/a/b"));
}
