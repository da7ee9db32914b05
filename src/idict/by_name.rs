//! [`ByName`]: any IDict serialized as an object of names and values (feature `serde`).

use super::{IDict, KeyError, MAX_NAME_LEN};
use serde::ser::{Error as _, Serialize, SerializeMap, Serializer};

/// A view of an IDict that serializes as a map from each key's name to its value, in
/// [`IDict::visit`] order: `{"position": 0.5, "mode": 3}` in JSON.
///
/// Names are written into a stack buffer of [`MAX_NAME_LEN`] bytes, so serializing
/// allocates nothing of its own. A key without a name (see [`IDict::write_name`]) fails the
/// serialization with that [`KeyError`].
///
/// ```
/// use queueserver::idict::ByName;
/// use std::collections::BTreeMap;
///
/// let state = BTreeMap::from([("speed", 1.5), ("current", 0.25)]);
/// assert_eq!(
///     serde_json::to_string(&ByName(&state)).unwrap(),
///     r#"{"current":0.25,"speed":1.5}"#
/// );
/// ```
#[derive(Debug)]
pub struct ByName<'a, D>(pub &'a D);

impl<D> Serialize for ByName<'_, D>
where
    D: IDict,
    D::Value: Serialize,
{
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut len = 0;
        self.0.visit(|_, _| len += 1);
        let mut map = serializer.serialize_map(Some(len))?;
        let mut failed: Option<Result<(), S::Error>> = None;
        self.0.visit(|key, value| {
            if failed.is_some() {
                return;
            }
            let mut name = heapless::String::<MAX_NAME_LEN>::new();
            let entry = match D::write_name(key, &mut name) {
                Ok(()) => map.serialize_entry(name.as_str(), value),
                Err(KeyError::Write) => Err(S::Error::custom(KeyError::Invalid(
                    super::NameError::TooLong,
                ))),
                Err(why) => Err(S::Error::custom(why)),
            };
            if entry.is_err() {
                failed = Some(entry);
            }
        });
        match failed {
            Some(Err(error)) => Err(error),
            _ => map.end(),
        }
    }
}
