//! `#[derive(IDict)]` on structs a user would write: mixed field types, renamed and skipped
//! fields, a nested value, one shared type; keys, names, parsing, visiting, in-place copies,
//! and the `serde` forms.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use queueserver::idict::{ByName, FieldValue, KeyError, KeyName, NameError};
use queueserver::{Connection, ConnectionError, IDict, QueueServer, Request, Response, Snapshot};
use std::fmt::Write as _;

/// A nested value: travels whole in its field's variant.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Vec3 {
    /// x
    pub x: f32,
    /// y
    pub y: f32,
    /// z
    pub z: f32,
}

impl FieldValue for Vec3 {}

/// Mixed field types, a rename, a skip, a nested value; serde for the struct asked for.
#[derive(Clone, Debug, Default, PartialEq, IDict)]
#[idict(serde)]
pub struct Plant {
    /// A float.
    pub position: f64,
    /// A counter beyond f64's exact integers.
    pub steps: u64,
    /// A signed integer.
    pub offset: i64,
    /// A flag.
    pub running: bool,
    /// Text, with a name of two chunks.
    #[idict(rename = "mode/name")]
    pub mode: heapless::String<16>,
    /// A nested value.
    pub accel: Vec3,
    /// An optional value.
    pub fault: Option<u16>,
    /// Not a key, still copied.
    #[idict(skip)]
    pub scratch: [u8; 8],
    /// A raw identifier.
    pub r#type: u8,
    /// A field whose variant would be the keyword `Self`.
    pub self_: bool,
}

/// Every keyed field an `f64`: the value type is `f64` itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, IDict)]
#[idict(key = "AxisName", serde)]
pub struct Axis {
    /// m
    pub position: f64,
    /// m/s
    pub velocity: f64,
    /// Skipped, of another type: does not make the struct mixed.
    #[idict(skip)]
    pub ticks: u32,
}

mod private {
    /// A derive in a private module with private items: nothing generated is `pub`.
    #[derive(Clone, queueserver::IDict)]
    struct Hidden {
        level: u8,
    }

    #[test]
    fn private_structs_get_private_keys() {
        assert_eq!(HiddenKey::ALL, [HiddenKey::Level]);
        let hidden = Hidden { level: 3 };
        assert_eq!(queueserver::IDict::get(&hidden, &HiddenKey::Level), Some(3));
    }
}

fn plant() -> Plant {
    Plant {
        position: -1.25,
        steps: u64::MAX - 1,
        offset: i64::MIN,
        running: true,
        mode: heapless::String::try_from("hold").unwrap(),
        accel: Vec3 {
            x: 0.5,
            y: -2.0,
            z: 9.75,
        },
        fault: Some(7),
        scratch: [1, 2, 3, 4, 5, 6, 7, 8],
        r#type: 4,
        self_: true,
    }
}

fn name_of<D: IDict>(key: &D::Key) -> String {
    let mut out = String::new();
    D::write_name(key, &mut out).expect("a derived key has a name");
    out
}

#[test]
fn keys_are_the_fields_in_order_with_their_names() {
    assert_eq!(
        PlantKey::ALL,
        [
            PlantKey::Position,
            PlantKey::Steps,
            PlantKey::Offset,
            PlantKey::Running,
            PlantKey::Mode,
            PlantKey::Accel,
            PlantKey::Fault,
            PlantKey::Type,
            PlantKey::Self_,
        ]
    );
    assert_eq!(
        PlantKey::NAMES,
        [
            "position",
            "steps",
            "offset",
            "running",
            "mode/name",
            "accel",
            "fault",
            "type",
            "self_",
        ]
    );
    for (key, name) in PlantKey::ALL.iter().zip(PlantKey::NAMES) {
        assert_eq!(key.name(), name);
        assert_eq!(key.to_string(), name);
        assert_eq!(name_of::<Plant>(key), name);
        let mut via_key_name = String::new();
        KeyName::write_name(key, &mut via_key_name).unwrap();
        assert_eq!(via_key_name, name);
        assert_eq!(name.parse::<PlantKey>(), Ok(*key));
        assert_eq!(plant().parse_key(name), Ok(*key));
        assert_eq!(<PlantKey as KeyName>::from_name(name), Ok(*key));
    }
    // Copy + Ord, in field order.
    let mut sorted = PlantKey::ALL;
    sorted.reverse();
    sorted.sort();
    assert_eq!(sorted, PlantKey::ALL);
}

#[test]
fn names_that_are_no_key_give_typed_errors() {
    let plant = plant();
    assert_eq!(plant.parse_key("scratch"), Err(KeyError::Unknown));
    assert_eq!(plant.parse_key("mode"), Err(KeyError::Unknown));
    assert_eq!(plant.parse_key("Position"), Err(KeyError::Unknown));
    assert_eq!(
        plant.parse_key("r#type"),
        Err(KeyError::Invalid(NameError::Char('#')))
    );
    assert_eq!(
        plant.parse_key("pos*"),
        Err(KeyError::Invalid(NameError::Char('*')))
    );
    assert_eq!(
        plant.parse_key(""),
        Err(KeyError::Invalid(NameError::Empty))
    );
    assert_eq!(
        plant.parse_key("mode/"),
        Err(KeyError::Invalid(NameError::EmptyChunk))
    );
    assert_eq!(
        plant.parse_key("@snapshot"),
        Err(KeyError::Invalid(NameError::Reserved))
    );
    assert_eq!("nope".parse::<PlantKey>(), Err(KeyError::Unknown));
}

#[test]
fn values_carry_each_field_exactly() {
    let plant = plant();
    assert_eq!(
        plant.get(&PlantKey::Position),
        Some(PlantValue::Position(-1.25))
    );
    // Beyond 2^53: an f64 would have lost it.
    assert_eq!(
        plant.get(&PlantKey::Steps),
        Some(PlantValue::Steps(u64::MAX - 1))
    );
    assert_eq!(
        plant.get(&PlantKey::Offset),
        Some(PlantValue::Offset(i64::MIN))
    );
    assert_eq!(
        plant.get(&PlantKey::Running),
        Some(PlantValue::Running(true))
    );
    assert_eq!(
        plant.get(&PlantKey::Mode),
        Some(PlantValue::Mode(plant.mode.clone()))
    );
    assert_eq!(
        plant.get(&PlantKey::Accel),
        Some(PlantValue::Accel(plant.accel))
    );
    assert_eq!(
        plant.get(&PlantKey::Fault),
        Some(PlantValue::Fault(Some(7)))
    );
    assert_eq!(plant.get(&PlantKey::Type), Some(PlantValue::Type(4)));
    assert_eq!(plant.get(&PlantKey::Self_), Some(PlantValue::Self_(true)));
    for key in PlantKey::ALL {
        assert_eq!(plant.get(&key).unwrap().key(), key);
    }
}

#[test]
fn visit_lists_every_key_once_in_field_order_with_get_s_value() {
    let plant = plant();
    let mut seen = Vec::new();
    plant.visit(|key, value| {
        assert_eq!(plant.get(key).as_ref(), Some(value));
        seen.push(*key);
    });
    assert_eq!(seen, PlantKey::ALL);
}

#[test]
fn copy_from_copies_every_field_skipped_ones_too() {
    let mut copy = Plant::default();
    copy.copy_from(&plant());
    assert_eq!(copy, plant());
}

#[test]
fn one_shared_type_is_the_value_type() {
    let axis = Axis {
        position: 1.5,
        velocity: -0.5,
        ticks: 9,
    };
    let value: Option<f64> = axis.get(&AxisName::Velocity);
    assert_eq!(value, Some(-0.5));
    let mut listed = String::new();
    axis.visit(|key, value| write!(listed, "{key}={value};").unwrap());
    assert_eq!(listed, "position=1.5;velocity=-0.5;");
    let mut copy = Axis::default();
    copy.copy_from(&axis);
    assert_eq!(copy, axis);
}

#[test]
fn write_name_reports_a_full_writer() {
    let mut small = heapless::String::<4>::new();
    assert_eq!(
        Plant::write_name(&PlantKey::Position, &mut small),
        Err(KeyError::Write)
    );
}

#[test]
fn serde_keys_are_names_values_are_plain_snapshots_are_objects() {
    assert_eq!(
        serde_json::to_string(&PlantKey::Mode).unwrap(),
        r#""mode/name""#
    );
    assert_eq!(
        serde_json::from_str::<PlantKey>(r#""accel""#).unwrap(),
        PlantKey::Accel
    );
    assert!(serde_json::from_str::<PlantKey>(r#""scratch""#).is_err());
    assert_eq!(
        serde_json::to_string(&PlantValue::Steps(u64::MAX)).unwrap(),
        u64::MAX.to_string()
    );
    assert_eq!(
        serde_json::to_string(&PlantValue::Running(false)).unwrap(),
        "false"
    );
    assert_eq!(
        serde_json::to_string(&PlantValue::Mode("run".try_into().unwrap())).unwrap(),
        r#""run""#
    );
    assert_eq!(
        serde_json::to_string(&PlantValue::Fault(None)).unwrap(),
        "null"
    );

    let json = serde_json::to_value(plant()).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "position": -1.25,
            "steps": u64::MAX - 1,
            "offset": i64::MIN,
            "running": true,
            "mode/name": "hold",
            "accel": {"x": 0.5, "y": -2.0, "z": 9.75},
            "fault": 7,
            "type": 4,
            "self_": true,
        })
    );
    // `ByName` gives the same object for any IDict.
    assert_eq!(serde_json::to_value(ByName(&plant())).unwrap(), json);
}

#[test]
fn serde_round_trips_snapshots_through_json_and_postcard() {
    let (mut publisher, mut server) = QueueServer::<Plant, Keep>::new(Plant::default());
    let id = server.add_connection(Keep::default()).unwrap();
    publisher.put_update(&plant());
    server.poll();
    let snapshot = server.connection(id).unwrap().last.clone().unwrap();
    assert_eq!(snapshot.seq(), 1);

    let text = serde_json::to_string(&snapshot).unwrap();
    assert!(
        text.starts_with(r#"{"seq":1,"data":{"position":-1.25,"#),
        "{text}"
    );
    let back: Snapshot<Plant> = serde_json::from_str(&text).unwrap();
    // The skipped field comes back as its default.
    let expected = Plant {
        scratch: [0; 8],
        ..plant()
    };
    assert_eq!((back.seq(), back.data()), (1, &expected));

    let bytes = postcard::to_allocvec(&snapshot).unwrap();
    let back: Snapshot<Plant> = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(back.data(), &expected);

    let axis: Axis = serde_json::from_str(r#"{"velocity": 2.0, "position": 1.0}"#).unwrap();
    assert_eq!((axis.position, axis.velocity, axis.ticks), (1.0, 2.0, 0));
}

#[test]
fn serde_refuses_unknown_missing_and_repeated_names() {
    let error = |text: &str| serde_json::from_str::<Axis>(text).unwrap_err().to_string();
    assert!(error(r#"{"position": 1.0}"#).contains("missing field `velocity`"));
    assert!(error(r#"{"position": 1.0, "velocity": 1.0, "ticks": 3}"#)
        .contains("unknown variant `ticks`"));
    assert!(
        error(r#"{"position": 1.0, "position": 2.0, "velocity": 1.0}"#)
            .contains("duplicate field `position`")
    );
    assert!(error(r#"{"position": "fast", "velocity": 1.0}"#).contains("invalid type"));
}

/// Keeps the last snapshot and answers.
#[derive(Default)]
struct Keep {
    last: Option<Snapshot<Plant>>,
    answers: Vec<(String, Option<PlantValue>)>,
}

impl Connection<Plant> for Keep {
    fn on_update(&mut self, snapshot: &Snapshot<Plant>) -> Result<(), ConnectionError> {
        self.last = Some(snapshot.clone());
        Ok(())
    }

    fn on_response(&mut self, response: Response<'_, Plant>) -> Result<(), ConnectionError> {
        match response {
            Response::Value { key, value, .. } => {
                self.answers
                    .push((name_of::<Plant>(key), Some(value.clone())));
            }
            Response::NotFound { key, .. } => self.answers.push((name_of::<Plant>(key), None)),
            Response::Snapshot(_) => {}
        }
        Ok(())
    }
}

#[test]
fn a_name_from_outside_becomes_a_request_and_its_answer_is_named() {
    let (mut publisher, mut server) = QueueServer::<Plant, Keep>::new(Plant::default());
    let id = server.add_connection(Keep::default()).unwrap();
    publisher.put_update(&plant());
    for name in ["steps", "mode/name", "steps"] {
        let key = server.snapshot().parse_key(name).unwrap();
        server.put_request(Request::key(id, key)).unwrap();
    }
    server.poll();
    let answers = &server.connection(id).unwrap().answers;
    assert_eq!(
        answers,
        &[
            ("steps".to_string(), Some(PlantValue::Steps(u64::MAX - 1))),
            (
                "mode/name".to_string(),
                Some(PlantValue::Mode("hold".try_into().unwrap()))
            ),
        ]
    );
}

/// A struct that implements `serde` itself, as many do: without `#[idict(serde)]` the
/// derive adds no second impl, whichever crate turns the core's `serde` feature on.
#[derive(Clone, Default, IDict, serde::Serialize)]
struct OwnSerde {
    #[serde(rename = "x_in_its_own_format")]
    x: f64,
    count: u32,
}

#[test]
fn a_struct_with_its_own_serde_impl_keeps_it() {
    let own = OwnSerde { x: 0.5, count: 3 };
    assert_eq!(
        serde_json::to_value(&own).unwrap(),
        serde_json::json!({ "x_in_its_own_format": 0.5, "count": 3 })
    );
    // The object by IDict name is still there, through `ByName`.
    assert_eq!(
        serde_json::to_value(ByName(&own)).unwrap(),
        serde_json::json!({ "x": 0.5, "count": 3 })
    );
}
