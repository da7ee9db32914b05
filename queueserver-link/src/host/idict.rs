//! [`DeviceValues`]: a device's snapshot as an [`IDict`], so that a
//! [relay](queueserver::runtime::relay) and everything built on one (Zenoh, the web view)
//! serve the firmware as they serve a computation on the host.

use super::{DeviceSnapshot, Schema, Value};
use queueserver::idict::{check_name, write_checked, KeyError};
use queueserver::IDict;
use std::fmt;
use std::sync::Arc;

/// A device's snapshot as an IDict: its keys are the schema's names (`String`s), its values
/// the decoded [`Value`]s, visited in the schema's order (the firmware's own). It shares
/// the [`DeviceSnapshot`] it wraps: cloning it is a reference count.
///
/// ```
/// use queueserver::IDict;
/// use queueserver_link::host::{DeviceSnapshot, DeviceValues, KeyInfo, Schema, Shape, Value};
/// use std::sync::Arc;
///
/// let key = |name: &str| KeyInfo { name: name.into(), shape: Shape::F32 };
/// let schema = Arc::new(Schema { version: 1, keys: vec![key("ch2"), key("ch1")], max_frame: 64 });
/// let values = vec![Value::F32(2.0), Value::F32(1.0)];
/// let device = DeviceValues::new(Arc::new(DeviceSnapshot { seq: 7, values, schema }));
///
/// assert_eq!(device.get(&"ch1".to_owned()), Some(Value::F32(1.0)));
/// assert_eq!(device.parse_key("ch2"), Ok("ch2".to_owned()));
/// assert!(device.parse_key("ch3").is_err());
/// let mut names = Vec::new();
/// device.visit(|name, _| names.push(name.clone()));
/// assert_eq!(names, ["ch2", "ch1"]); // the firmware's order
/// ```
#[derive(Clone, PartialEq)]
pub struct DeviceValues(Arc<DeviceSnapshot>);

impl DeviceValues {
    /// The values of `snapshot`.
    pub fn new(snapshot: Arc<DeviceSnapshot>) -> Self {
        Self(snapshot)
    }

    /// No values: a device whose schema is not known yet.
    pub fn empty() -> Self {
        Self(Arc::new(DeviceSnapshot {
            seq: 0,
            values: Vec::new(),
            schema: Arc::new(Schema {
                version: 0,
                keys: Vec::new(),
                max_frame: 0,
            }),
        }))
    }

    /// The device's snapshot.
    pub fn snapshot(&self) -> &Arc<DeviceSnapshot> {
        &self.0
    }

    /// The schema the values follow.
    pub fn schema(&self) -> &Schema {
        &self.0.schema
    }
}

impl fmt::Debug for DeviceValues {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.0.iter()).finish()
    }
}

impl IDict for DeviceValues {
    type Key = String;
    type Value = Value;

    /// The value named `key`: O(keys), a clone of the value.
    fn get(&self, key: &String) -> Option<Value> {
        self.0.get(key).cloned()
    }

    fn write_name<W: fmt::Write + ?Sized>(key: &String, out: &mut W) -> Result<(), KeyError> {
        write_checked(key, out)
    }

    /// `name`, if it is a valid name and the schema has it. Allocates the key.
    fn parse_key(&self, name: &str) -> Result<String, KeyError> {
        check_name(name)?;
        match self.0.schema.index_of(name) {
            Some(_) => Ok(name.to_owned()),
            None => Err(KeyError::Unknown),
        }
    }

    /// Every name and value, in the schema's order.
    fn visit<F: FnMut(&String, &Value)>(&self, mut f: F) {
        for (key, value) in self.0.schema.keys.iter().zip(&self.0.values) {
            f(&key.name, value);
        }
    }
}
