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

// ----- names, parsing, visiting -----

use queueserver::idict::{
    check_name, write_checked, DisplayFromStr, KeyError, KeyName, NameError, MAX_NAME_LEN,
};
use std::fmt::Debug;

/// The name `D` writes for `key`, or its error.
fn name<D: IDict>(key: &D::Key) -> Result<String, KeyError> {
    let mut out = String::new();
    D::write_name(key, &mut out).map(|()| out)
}

/// Every (name, value) the IDict visits, in order.
fn visited<D: IDict>(idict: &D) -> Vec<(String, D::Value)>
where
    D::Value: Clone,
{
    let mut out = Vec::new();
    idict.visit(|key, value| out.push((name::<D>(key).unwrap(), value.clone())));
    out
}

/// Every key the IDict visits has a name that parses back to it and reads its value.
fn names_round_trip<D>(idict: &D)
where
    D: IDict,
    D::Key: Debug,
    D::Value: PartialEq + Debug + Clone,
{
    let mut count = 0;
    idict.visit(|key, value| {
        count += 1;
        let name = name::<D>(key).unwrap();
        assert_eq!(check_name(&name), Ok(()), "{name}");
        assert_eq!(idict.parse_key(&name).as_ref(), Ok(key), "{name}");
        assert_eq!(idict.get(key).as_ref(), Some(value));
    });
    assert!(count > 0);
}

#[test]
fn the_name_rules() {
    for good in [
        "x",
        "motor/speed",
        "a.b",
        "-7",
        "0",
        "x_y-z",
        "a/.b/c..",
        "...",
        "A9",
    ] {
        assert_eq!(check_name(good), Ok(()), "{good}");
    }
    let long = "a".repeat(MAX_NAME_LEN);
    assert_eq!(check_name(&long), Ok(()));
    let bad = [
        ("", NameError::Empty),
        ("/x", NameError::EmptyChunk),
        ("x/", NameError::EmptyChunk),
        ("x//y", NameError::EmptyChunk),
        ("/", NameError::EmptyChunk),
        (".", NameError::DotChunk),
        ("a/../b", NameError::DotChunk),
        ("a/.", NameError::DotChunk),
        ("@snapshot", NameError::Reserved),
        ("x@y", NameError::Char('@')),
        ("a*", NameError::Char('*')),
        ("$x", NameError::Char('$')),
        ("a#b", NameError::Char('#')),
        ("a?b", NameError::Char('?')),
        ("a b", NameError::Char(' ')),
        ("a%20", NameError::Char('%')),
        ("größe", NameError::Char('ö')),
        ("x\u{1F600}", NameError::Char('\u{1F600}')),
    ];
    for (text, why) in bad {
        assert_eq!(check_name(text), Err(why), "{text:?}");
        assert!(!why.to_string().is_empty());
    }
    assert_eq!(check_name(&format!("{long}a")), Err(NameError::TooLong));
}

#[test]
fn write_checked_refuses_what_check_name_refuses() {
    // The streaming check and `check_name` agree, whatever pieces the text comes in.
    struct Pieces(&'static [&'static str]);
    impl KeyName for Pieces {
        fn write_name<W: std::fmt::Write + ?Sized>(&self, out: &mut W) -> std::fmt::Result {
            self.0.iter().try_for_each(|piece| out.write_str(piece))
        }
        fn from_name(_: &str) -> Result<Self, KeyError> {
            Err(KeyError::Unknown)
        }
    }
    let cases: [&[&str]; 9] = [
        &["mo", "tor/", "speed"],
        &["a", "/", "/b"],
        &[".", ".", "/x"],
        &["x/", ".", "."],
        &["x/", "..", "."],
        &["@", "x"],
        &["", ""],
        &["x", "/"],
        &["ok", "*"],
    ];
    for pieces in cases {
        let whole: String = pieces.concat();
        let mut out = String::new();
        let streamed = write_checked(&Pieces(pieces), &mut out);
        assert_eq!(
            streamed,
            check_name(&whole).map_err(KeyError::Invalid),
            "{whole:?}"
        );
        if streamed.is_ok() {
            assert_eq!(out, whole);
        }
    }
}

#[test]
fn key_types_write_and_parse_their_names() {
    fn both<K: KeyName + PartialEq + Debug>(key: K, text: &str) {
        let mut out = String::new();
        key.write_name(&mut out).unwrap();
        assert_eq!(out, text);
        assert_eq!(K::from_name(text), Ok(key));
    }
    both(7u8, "7");
    both(-12i64, "-12");
    both(u128::MAX, &u128::MAX.to_string());
    both(0usize, "0");
    both('x', "x");
    both(true, "true");
    both(String::from("a/b"), "a/b");
    both(heapless::String::<4>::try_from("abcd").unwrap(), "abcd");
    both(DisplayFromStr(std::net::Ipv4Addr::LOCALHOST), "127.0.0.1");

    // One name per integer: no sign on positives, no leading zeros, no `-0`.
    for text in ["+7", "07", "-0", "00", "256", "x", "-"] {
        assert_eq!(u8::from_name(text), Err(KeyError::Malformed), "{text}");
    }
    assert_eq!(i8::from_name("-0"), Err(KeyError::Malformed));
    assert_eq!(i8::from_name("-128"), Ok(-128));
    assert_eq!(char::from_name("xy"), Err(KeyError::Malformed));
    assert_eq!(
        heapless::String::<4>::from_name("abcde"),
        Err(KeyError::Malformed)
    );
    assert_eq!(<&'static str>::from_name("x"), Err(KeyError::Unknown));
    assert_eq!(
        DisplayFromStr::<std::net::Ipv4Addr>::from_name("nope"),
        Err(KeyError::Malformed)
    );
}

#[test]
fn btreemap_names_parses_and_visits_its_keys() {
    let map = BTreeMap::from([("speed", 1.5), ("current", 0.25)]);
    names_round_trip(&map);
    assert_eq!(
        visited(&map),
        [("current".to_string(), 0.25), ("speed".to_string(), 1.5)]
    );
    // A &'static str key is found among the map's keys.
    assert_eq!(map.parse_key("speed"), Ok("speed"));
    assert_eq!(map.parse_key("torque"), Err(KeyError::Unknown));
    assert_eq!(
        map.parse_key("sp*ed"),
        Err(KeyError::Invalid(NameError::Char('*')))
    );

    let numbered = BTreeMap::from([(3u16, 'c'), (1, 'a')]);
    names_round_trip(&numbered);
    assert_eq!(numbered.parse_key("3"), Ok(3));
    assert_eq!(numbered.parse_key("2"), Err(KeyError::Unknown));
    assert_eq!(numbered.parse_key("x"), Err(KeyError::Malformed));
    assert_eq!(numbered.parse_key("03"), Err(KeyError::Malformed));
}

#[test]
fn a_map_key_that_is_no_valid_name_has_no_name() {
    let map = BTreeMap::from([(String::from("a b"), 1), (String::from("ok"), 2)]);
    assert_eq!(
        name::<BTreeMap<String, i32>>(&"a b".into()),
        Err(KeyError::Invalid(NameError::Char(' ')))
    );
    assert_eq!(
        name::<BTreeMap<String, i32>>(&"@x".into()),
        Err(KeyError::Invalid(NameError::Reserved))
    );
    // It cannot be asked for by name either: the name is refused before any lookup.
    assert_eq!(
        map.parse_key("a b"),
        Err(KeyError::Invalid(NameError::Char(' ')))
    );
    assert_eq!(map.parse_key("ok"), Ok(String::from("ok")));
}

#[test]
fn hashmap_names_parses_and_visits_its_keys() {
    let map = HashMap::from([('x', 1u64), ('y', u64::MAX)]);
    names_round_trip(&map);
    let mut seen = visited(&map);
    seen.sort();
    assert_eq!(seen, [("x".to_string(), 1), ("y".to_string(), u64::MAX)]);
    assert_eq!(map.parse_key("z"), Err(KeyError::Unknown));
    assert_eq!(map.parse_key("xy"), Err(KeyError::Malformed));
}

#[test]
fn heapless_maps_name_parse_and_visit_their_keys() {
    let mut index = heapless::index_map::FnvIndexMap::<&'static str, bool, 4>::new();
    index.insert("on", true).unwrap();
    index.insert("axis/2", false).unwrap();
    names_round_trip(&index);
    // Insertion order.
    assert_eq!(
        visited(&index),
        [("on".to_string(), true), ("axis/2".to_string(), false)]
    );
    assert_eq!(index.parse_key("off"), Err(KeyError::Unknown));

    let mut linear = heapless::LinearMap::<i8, f32, 4>::new();
    linear.insert(-1, 0.5).unwrap();
    linear.insert(4, 2.0).unwrap();
    names_round_trip(&linear);
    assert_eq!(
        visited(&linear),
        [("-1".to_string(), 0.5), ("4".to_string(), 2.0)]
    );
    assert_eq!(linear.parse_key("5"), Err(KeyError::Unknown));
}

#[test]
fn an_impl_without_names_says_so() {
    #[derive(Clone)]
    struct Plain(f64);
    impl IDict for Plain {
        type Key = u8;
        type Value = f64;
        fn get(&self, key: &u8) -> Option<f64> {
            (*key == 0).then_some(self.0)
        }
    }
    let plain = Plain(1.0);
    assert_eq!(name::<Plain>(&0), Err(KeyError::Unnamed));
    assert_eq!(plain.parse_key("0"), Err(KeyError::Unnamed));
    assert_eq!(
        plain.parse_key("a*"),
        Err(KeyError::Invalid(NameError::Char('*')))
    );
    assert!(visited(&plain).is_empty());
}

#[test]
fn by_name_serializes_any_idict_as_an_object_of_names() {
    use queueserver::idict::ByName;
    let map = BTreeMap::from([(2u8, -1.5), (10, 3.0)]);
    assert_eq!(
        serde_json::to_string(&ByName(&map)).unwrap(),
        r#"{"2":-1.5,"10":3.0}"#
    );
    let bad = BTreeMap::from([("a b", 1)]);
    let error = serde_json::to_string(&ByName(&bad)).unwrap_err();
    assert!(error.to_string().contains("invalid key name"), "{error}");
    // postcard needs the length up front: ByName counts before it writes.
    let bytes = postcard::to_allocvec(&ByName(&map)).unwrap();
    let back: BTreeMap<String, f64> = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(
        back,
        BTreeMap::from([("2".into(), -1.5), ("10".into(), 3.0)])
    );
}
