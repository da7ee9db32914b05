//! The contract on the wire: key expressions, payloads and attachments, written once for
//! the publishing side, the queryable and the `qs` tool. The crate's README states it for
//! other languages; [`CONTRACT_VERSION`] names the version described there.

use queueserver::idict::ByName;
use queueserver::{IDict, Snapshot};
use serde::ser::{Serialize, SerializeStruct, Serializer};
use zenoh::bytes::{Encoding, ZBytes};

/// The version of the wire contract this crate speaks. It changes only with a new version
/// of the crate, and the README says what changed.
pub const CONTRACT_VERSION: u32 = 1;

/// The chunk after the prefix that names the whole snapshot: `P/@snapshot`.
///
/// It is a *verbatim* chunk (it starts with `@`): `P/*` and `P/**` do not match it, so a
/// subscriber or a get on `P/**` sees the values once and never the snapshot, and key names
/// can never collide with it (a name may not start with `@`).
pub const SNAPSHOT_CHUNK: &str = "@snapshot";

/// The encoding of every value and snapshot: `application/json`.
pub const ENCODING: Encoding = Encoding::APPLICATION_JSON;

/// The encoding of every error reply: `text/plain`, a sentence in UTF-8 that says why.
pub const ERROR_ENCODING: Encoding = Encoding::TEXT_PLAIN;

/// The attachment carrying a snapshot's sequence number: its decimal digits in ASCII.
pub fn seq_attachment(seq: u64) -> ZBytes {
    ZBytes::from(seq.to_string())
}

/// Reads the sequence number from a sample's or reply's attachment; `None` when it is
/// missing or not decimal digits.
pub fn seq_of(attachment: Option<&ZBytes>) -> Option<u64> {
    let text = attachment?.try_to_string().ok()?;
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// A snapshot as it travels on `P/@snapshot`: `{"seq": 12, "values": {"position": 0.5}}`,
/// the values by name in [`IDict::visit`] order.
///
/// The values sit in an object of their own, so that a key named `seq` cannot collide with
/// the sequence number.
pub struct SnapshotJson<'a, D>(pub &'a Snapshot<D>);

impl<D> Serialize for SnapshotJson<'_, D>
where
    D: IDict,
    D::Value: Serialize,
{
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut object = serializer.serialize_struct("Snapshot", 2)?;
        object.serialize_field("seq", &self.0.seq())?;
        object.serialize_field("values", &ByName(self.0.data()))?;
        object.end()
    }
}

/// The JSON text of a snapshot, as put on `P/@snapshot`.
///
/// # Errors
///
/// When a key has no name or a value does not serialize (a map with non-text keys).
pub fn snapshot_json<D>(snapshot: &Snapshot<D>) -> serde_json::Result<Vec<u8>>
where
    D: IDict,
    D::Value: Serialize,
{
    serde_json::to_vec(&SnapshotJson(snapshot))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seq_goes_and_comes_back_as_decimal_text() {
        let attachment = seq_attachment(1234);
        assert_eq!(attachment.try_to_string().unwrap(), "1234");
        assert_eq!(seq_of(Some(&attachment)), Some(1234));
        assert_eq!(seq_of(Some(&ZBytes::from("12a"))), None);
        assert_eq!(seq_of(Some(&ZBytes::from("+1"))), None);
        assert_eq!(seq_of(Some(&ZBytes::from(""))), None);
        assert_eq!(seq_of(None), None);
    }
}
