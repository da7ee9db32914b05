//! The provided `IDict` impls: lookups, and in-place copies that equal a clone whether or
//! not the key sets match.

use queueserver::IDict;
use std::collections::{BTreeMap, HashMap};

fn copies_like_a_clone<D: IDict + PartialEq + std::fmt::Debug>(mut dst: D, src: &D) {
    dst.copy_from(src);
    assert_eq!(&dst, src);
}

#[test]
fn btreemap_reads_keys_and_copies_in_place_or_rebuilds() {
    let a = BTreeMap::from([("x", 1.0), ("y", 2.0)]);
    assert_eq!(IDict::get(&a, &"x"), Some(1.0));
    assert_eq!(IDict::get(&a, &"z"), None);
    copies_like_a_clone(BTreeMap::from([("x", 9.0), ("y", 9.0)]), &a);
    copies_like_a_clone(BTreeMap::from([("x", 9.0), ("q", 9.0)]), &a);
    copies_like_a_clone(BTreeMap::from([("x", 9.0)]), &a);
    copies_like_a_clone(BTreeMap::new(), &a);
}

#[test]
fn hashmap_reads_keys_and_copies_in_place_or_rebuilds() {
    let a = HashMap::from([(1u8, "one".to_string()), (2, "two".to_string())]);
    assert_eq!(IDict::get(&a, &2), Some("two".to_string()));
    assert_eq!(IDict::get(&a, &3), None);
    copies_like_a_clone(HashMap::from([(2, String::new()), (1, String::new())]), &a);
    copies_like_a_clone(HashMap::from([(3, String::new()), (1, String::new())]), &a);
    copies_like_a_clone(HashMap::new(), &a);
}

#[test]
fn heapless_maps_read_keys_and_copy() {
    let mut index = heapless::index_map::FnvIndexMap::<u16, i32, 4>::new();
    index.insert(7, -7).unwrap();
    assert_eq!(IDict::get(&index, &7), Some(-7));
    assert_eq!(IDict::get(&index, &8), None);
    copies_like_a_clone(heapless::index_map::FnvIndexMap::new(), &index);

    let mut linear = heapless::LinearMap::<&str, bool, 2>::new();
    linear.insert("on", true).unwrap();
    assert_eq!(IDict::get(&linear, &"on"), Some(true));
    assert_eq!(IDict::get(&linear, &"off"), None);
    copies_like_a_clone(heapless::LinearMap::new(), &linear);
}
