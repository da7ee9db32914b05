//! The framing against reference implementations: COBS against the `cobs` crate, the
//! CRC against its published check value, varints and values against `postcard`.

use queueserver::idict::ValueType;
use queueserver_link::host::{Shape, Value};
use queueserver_link::wire::{self, Reader, Writer};

/// A small deterministic generator (xorshift), so that every run checks the same cases.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn encode(frame: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    wire::cobs_encode(frame, |b| out.push(b));
    out
}

#[test]
fn cobs_matches_the_cobs_crate_both_ways() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut cases: Vec<Vec<u8>> = vec![
        vec![],
        vec![0],
        vec![0, 0],
        vec![1],
        (1..=254).collect(),
        (1..=255).collect(),
        (0..=255).collect(),
        vec![7; 253],
        vec![7; 254],
        vec![7; 255],
        vec![7; 508],
        [vec![7; 254], vec![0]].concat(),
        [vec![0], vec![9; 254], vec![0]].concat(),
    ];
    for _ in 0..2000 {
        let len = (rng.next() % 700) as usize;
        let zeros = rng.next() % 4;
        cases.push(
            (0..len)
                .map(|_| {
                    let r = rng.next();
                    if zeros > 0 && r.is_multiple_of(8 * zeros) {
                        0
                    } else {
                        (r >> 8) as u8 | 1
                    }
                })
                .collect(),
        );
    }
    for case in cases {
        let ours = encode(&case);
        let (delimiter, body) = ours.split_last().unwrap();
        assert_eq!(*delimiter, 0);
        assert!(!body.contains(&0), "no zero inside a frame");
        assert_eq!(body, &cobs::encode_vec(&case)[..], "encoding of {case:?}");
        assert!(body.len() <= wire::cobs_max(case.len()));
        let mut decoded = body.to_vec();
        let n = wire::cobs_decode_in_place(&mut decoded).unwrap();
        assert_eq!(&decoded[..n], &case[..]);
    }
}

#[test]
fn cobs_decoding_refuses_what_is_not_cobs() {
    assert!(
        wire::cobs_decode_in_place(&mut [3, 1]).is_err(),
        "runs past the end"
    );
    assert!(
        wire::cobs_decode_in_place(&mut [2, 0]).is_err(),
        "a zero inside"
    );
    assert!(wire::cobs_decode_in_place(&mut [0]).is_err(), "a zero code");
}

#[test]
fn crc_is_crc16_ibm_3740() {
    assert_eq!(wire::crc16(b"123456789"), 0x29B1);
    let mut buf = [0u8; 8];
    let mut w = Writer::new(&mut buf);
    w.bytes(b"ab").unwrap();
    let len = w.finish().unwrap();
    assert_eq!(len, 4);
    assert_eq!(wire::check_frame(&buf[..4]), Ok(&b"ab"[..]));
    buf[1] ^= 0x10;
    assert!(wire::check_frame(&buf[..4]).is_err(), "one bit flipped");
    assert!(wire::check_frame(&buf[..2]).is_err(), "too short");
}

#[test]
fn varints_and_values_are_postcards() {
    for value in [
        0u64,
        1,
        127,
        128,
        300,
        16_383,
        16_384,
        u32::MAX.into(),
        u64::MAX,
    ] {
        let mut buf = [0u8; 16];
        let mut w = Writer::new(&mut buf);
        w.varint(value).unwrap();
        let n = w.len();
        assert_eq!(&buf[..n], &postcard::to_stdvec(&value).unwrap()[..]);
        assert_eq!(n, wire::varint_len(value));
        assert_eq!(Reader::new(&buf[..n]).varint(), Ok(value));
    }
    let mut buf = [0u8; 32];
    let mut w = Writer::new(&mut buf);
    w.str("motor/speed").unwrap();
    let n = w.len();
    assert_eq!(&buf[..n], &postcard::to_stdvec("motor/speed").unwrap()[..]);
    // Too long a varint, and a varint past 64 bits, are refused.
    assert!(Reader::new(&[0x80; 11]).varint().is_err());
    assert!(
        Reader::new(&[0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x02])
            .varint()
            .is_err()
    );
}

#[test]
fn a_sized_value_carries_its_postcard_length_even_past_one_byte() {
    for len in [0usize, 5, 126, 127, 128, 300] {
        let value: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let mut buf = vec![0u8; len + 16];
        let mut w = Writer::new(&mut buf);
        w.u8(0xAA).unwrap();
        w.postcard_sized(&value).unwrap();
        let n = w.len();
        let body = postcard::to_stdvec(&value).unwrap();
        let mut r = Reader::new(&buf[1..n]);
        let got = Shape::Other.decode(&mut r).unwrap();
        assert_eq!(got, Value::Bytes(body));
        assert!(r.rest().is_empty());
    }
    // No room: an error, no panic.
    let mut small = [0u8; 4];
    assert!(Writer::new(&mut small).postcard_sized(&[1u8; 10]).is_err());
}

#[test]
fn every_value_type_survives_the_schema_and_the_values_round_trip() {
    static STRUCT: [(&str, ValueType); 2] = [("x", ValueType::F32), ("n", ValueType::I16)];
    let cases: Vec<(ValueType, Vec<u8>, Value)> = vec![
        (
            ValueType::Bool,
            postcard::to_stdvec(&true).unwrap(),
            Value::Bool(true),
        ),
        (
            ValueType::U8,
            postcard::to_stdvec(&200u8).unwrap(),
            Value::U64(200),
        ),
        (
            ValueType::U16,
            postcard::to_stdvec(&60_000u16).unwrap(),
            Value::U64(60_000),
        ),
        (
            ValueType::U32,
            postcard::to_stdvec(&u32::MAX).unwrap(),
            Value::U64(u32::MAX.into()),
        ),
        (
            ValueType::U64,
            postcard::to_stdvec(&u64::MAX).unwrap(),
            Value::U64(u64::MAX),
        ),
        (
            ValueType::U128,
            postcard::to_stdvec(&u128::MAX).unwrap(),
            Value::U128(u128::MAX),
        ),
        (
            ValueType::I8,
            postcard::to_stdvec(&-100i8).unwrap(),
            Value::I64(-100),
        ),
        (
            ValueType::I16,
            postcard::to_stdvec(&-30_000i16).unwrap(),
            Value::I64(-30_000),
        ),
        (
            ValueType::I32,
            postcard::to_stdvec(&i32::MIN).unwrap(),
            Value::I64(i32::MIN.into()),
        ),
        (
            ValueType::I64,
            postcard::to_stdvec(&i64::MIN).unwrap(),
            Value::I64(i64::MIN),
        ),
        (
            ValueType::I128,
            postcard::to_stdvec(&i128::MIN).unwrap(),
            Value::I128(i128::MIN),
        ),
        (
            ValueType::F32,
            postcard::to_stdvec(&1.5f32).unwrap(),
            Value::F32(1.5),
        ),
        (
            ValueType::F64,
            postcard::to_stdvec(&-2.25f64).unwrap(),
            Value::F64(-2.25),
        ),
        (
            ValueType::Char,
            postcard::to_stdvec(&'é').unwrap(),
            Value::Char('é'),
        ),
        (
            ValueType::Str { capacity: 8 },
            postcard::to_stdvec("abc").unwrap(),
            Value::Str("abc".into()),
        ),
        (
            ValueType::Option(&ValueType::U8),
            postcard::to_stdvec(&Some(3u8)).unwrap(),
            Value::Option(Some(Box::new(Value::U64(3)))),
        ),
        (
            ValueType::Option(&ValueType::U8),
            postcard::to_stdvec(&None::<u8>).unwrap(),
            Value::Option(None),
        ),
        (
            ValueType::Array {
                item: &ValueType::I16,
                len: 3,
            },
            postcard::to_stdvec(&[1i16, -2, 3]).unwrap(),
            Value::Array(vec![Value::I64(1), Value::I64(-2), Value::I64(3)]),
        ),
        (
            ValueType::Struct(&STRUCT),
            postcard::to_stdvec(&(0.5f32, -7i16)).unwrap(),
            Value::Struct(vec![
                ("x".into(), Value::F32(0.5)),
                ("n".into(), Value::I64(-7)),
            ]),
        ),
    ];
    for (shape, bytes, expected) in cases {
        let mut buf = [0u8; 64];
        let mut w = Writer::new(&mut buf);
        w.value_type(&shape).unwrap();
        let n = w.len();
        let mut r = Reader::new(&buf[..n]);
        let host = Shape::read(&mut r).unwrap();
        assert!(r.rest().is_empty(), "{shape:?}");
        let mut r = Reader::new(&bytes);
        assert_eq!(host.decode(&mut r).unwrap(), expected, "{shape:?}");
        assert!(r.rest().is_empty(), "{shape:?}: every byte read");
        if let Some(max) = wire::max_size(&shape) {
            assert!(bytes.len() <= max, "{shape:?}: {} > max {max}", bytes.len());
        }
    }
    // The JSON a reader sees.
    let v = Value::Struct(vec![
        ("x".into(), Value::F32(0.1)),
        ("o".into(), Value::Option(None)),
    ]);
    assert_eq!(serde_json::to_string(&v).unwrap(), r#"{"x":0.1,"o":null}"#);
}

#[test]
fn malformed_schemas_and_values_are_errors_not_panics() {
    let mut rng = Rng(42);
    for _ in 0..20_000 {
        let len = (rng.next() % 24) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let mut r = Reader::new(&bytes);
        if let Ok(shape) = Shape::read(&mut r) {
            let _ = shape.decode(&mut r);
        }
        let _ = queueserver_link::host::Message::decode(&bytes, None);
    }
}
