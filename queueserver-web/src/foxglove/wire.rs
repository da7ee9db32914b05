//! Foxglove's `foxglove.websocket.v1` messages, as this server writes and reads them: JSON
//! text messages, each an object with an `"op"`, and binary `messageData` frames (opcode
//! `0x01`, a `u32` subscription id, a `u64` time in nanoseconds, the payload; little
//! endian). The crate README lists what is sent and what is understood.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// The WebSocket subprotocol that selects Foxglove's protocol.
pub const SUBPROTOCOL: &str = "foxglove.websocket.v1";

/// The topic of the whole snapshot. No value's name starts with `@` (the name rules
/// reserve it), so it never clashes with a value's topic.
pub(crate) const SNAPSHOT_TOPIC: &str = "@snapshot";

/// The channel id of the whole snapshot; values' channels are numbered from 1.
pub(crate) const SNAPSHOT_CHANNEL: u32 = 0;

/// The bytes of a `messageData` frame before its payload.
pub(crate) const DATA_HEADER: usize = 1 + 4 + 8;

/// A `status` message's level (the protocol's `0`, info, is not used).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Level {
    Warning = 1,
    Error = 2,
}

/// `{"op":"serverInfo",..}`: the server's name, its capabilities (`parameters` only: reads
/// of parameters are answered, writes refused), a session id, and how messages are
/// stamped.
pub(crate) fn server_info(name: &str, session: &str) -> String {
    json!({
        "op": "serverInfo",
        "name": name,
        "capabilities": ["parameters"],
        "metadata": {
            "timestamps": "receive time: the wall clock (ns since the Unix epoch) when the \
                           server's poller handed the snapshot to the view",
            "snapshotTopic": SNAPSHOT_TOPIC,
        },
        "sessionId": session,
    })
    .to_string()
}

/// One advertised channel.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Channel {
    pub id: u32,
    pub topic: String,
    pub encoding: &'static str,
    pub schema_name: String,
    pub schema: String,
    pub schema_encoding: &'static str,
}

impl Channel {
    /// A JSON channel of `topic` whose messages follow `schema`.
    pub(crate) fn json(id: u32, topic: &str, schema: &Value) -> Self {
        Self {
            id,
            topic: topic.to_owned(),
            encoding: "json",
            schema_name: format!("queueserver/{topic}"),
            schema: schema.to_string(),
            schema_encoding: "jsonschema",
        }
    }
}

/// `{"op":"advertise","channels":[..]}`.
pub(crate) fn advertise<'a>(channels: impl IntoIterator<Item = &'a Channel>) -> String {
    let channels: Vec<&Channel> = channels.into_iter().collect();
    json!({ "op": "advertise", "channels": channels }).to_string()
}

/// `{"op":"unadvertise","channelIds":[..]}`.
pub(crate) fn unadvertise(ids: &[u32]) -> String {
    json!({ "op": "unadvertise", "channelIds": ids }).to_string()
}

/// `{"op":"status","level":..,"message":..}`.
pub(crate) fn status(level: Level, message: &str) -> String {
    json!({ "op": "status", "level": level as u8, "message": message }).to_string()
}

/// The status that tells a receiver its count of dropped updates.
pub(crate) fn dropped(updates: u64) -> String {
    status(
        Level::Warning,
        &format!(
            "{updates} updates dropped so far: this client read too slowly and its outbox \
             was full (the oldest update goes first)"
        ),
    )
}

/// One parameter of a `parameterValues` reply: a value's name and its value as JSON.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct Parameter {
    pub name: String,
    pub value: Value,
    /// `"float64"` for a number that is a float (`1.0` reads as an integer in JSON).
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'static str>,
}

impl Parameter {
    pub(crate) fn new(name: String, value: Value) -> Self {
        let kind = value.as_number().filter(|n| n.is_f64()).map(|_| "float64");
        Self { name, value, kind }
    }
}

/// `{"op":"parameterValues","parameters":[..],"id":..}`.
pub(crate) fn parameter_values(parameters: &[Parameter], id: Option<&str>) -> String {
    match id {
        Some(id) => json!({ "op": "parameterValues", "parameters": parameters, "id": id }),
        None => json!({ "op": "parameterValues", "parameters": parameters }),
    }
    .to_string()
}

/// A `messageData` frame: opcode `0x01`, the subscription id, the time, the payload.
pub(crate) fn message_data(subscription: u32, time: u64, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(DATA_HEADER + payload.len());
    frame.push(0x01);
    frame.extend_from_slice(&subscription.to_le_bytes());
    frame.extend_from_slice(&time.to_le_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// The payload of a value's channel: `{"seq":N,"value":V}`.
pub(crate) fn value_payload<V: Serialize>(seq: u64, value: &V) -> serde_json::Result<Vec<u8>> {
    #[derive(Serialize)]
    struct Payload<'a, V> {
        seq: u64,
        value: &'a V,
    }
    serde_json::to_vec(&Payload { seq, value })
}

/// The payload of the snapshot's channel: `{"seq":N,"values":{..}}`.
pub(crate) fn snapshot_payload<V: Serialize>(seq: u64, values: &V) -> serde_json::Result<Vec<u8>> {
    #[derive(Serialize)]
    struct Payload<'a, V> {
        seq: u64,
        values: &'a V,
    }
    serde_json::to_vec(&Payload { seq, values })
}

/// A JSON Schema of `sample`'s JSON type: `number` for a float, `integer` for an
/// integer, `boolean`, `string`, an `array` of its first item's type, an `object` of its
/// members' types; `null` for a value that was null (a `None`, a non-finite float).
pub(crate) fn schema_of(sample: &Value) -> Value {
    match sample {
        Value::Null => json!({ "type": "null" }),
        Value::Bool(_) => json!({ "type": "boolean" }),
        Value::Number(n) if n.is_f64() => json!({ "type": "number" }),
        Value::Number(_) => json!({ "type": "integer" }),
        Value::String(_) => json!({ "type": "string" }),
        Value::Array(items) => match items.first() {
            Some(first) => json!({ "type": "array", "items": schema_of(first) }),
            None => json!({ "type": "array" }),
        },
        Value::Object(members) => {
            let properties: serde_json::Map<String, Value> = members
                .iter()
                .map(|(name, value)| (name.clone(), schema_of(value)))
                .collect();
            json!({ "type": "object", "properties": properties })
        }
    }
}

/// The snapshot number every payload carries.
fn seq_schema() -> Value {
    json!({
        "type": "integer",
        "minimum": 0,
        "description": "the number of the snapshot the message was read from"
    })
}

/// The schema of a value's channel: `{"seq":N,"value":V}` with `V` as `sample`.
pub(crate) fn value_schema(sample: &Value) -> Value {
    json!({
        "type": "object",
        "properties": { "seq": seq_schema(), "value": schema_of(sample) },
        "required": ["seq", "value"],
    })
}

/// The schema of the snapshot's channel: `{"seq":N,"values":{..}}`, with the values seen
/// in `sample` (others may come: names that appear later).
pub(crate) fn snapshot_schema(sample: &Value) -> Value {
    let mut values = schema_of(sample);
    if let Value::Object(values) = &mut values {
        values.insert("additionalProperties".into(), Value::Bool(true));
    }
    json!({
        "type": "object",
        "properties": { "seq": seq_schema(), "values": values },
        "required": ["seq", "values"],
    })
}

/// One subscription asked for.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Subscription {
    pub id: u32,
    pub channel_id: u32,
}

/// What a client may send that this server does.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(tag = "op", rename_all = "camelCase")]
pub(crate) enum Incoming {
    Subscribe {
        subscriptions: Vec<Subscription>,
    },
    #[serde(rename_all = "camelCase")]
    Unsubscribe {
        subscription_ids: Vec<u32>,
    },
    #[serde(rename_all = "camelCase")]
    GetParameters {
        parameter_names: Vec<String>,
        #[serde(default)]
        id: Option<String>,
    },
    SetParameters {
        #[serde(default)]
        id: Option<String>,
    },
}

/// Operations of the protocol this server does not offer (its capabilities say so).
const UNSUPPORTED: &[&str] = &[
    "advertise",
    "unadvertise",
    "subscribeParameterUpdates",
    "unsubscribeParameterUpdates",
    "subscribeConnectionGraph",
    "unsubscribeConnectionGraph",
    "fetchAsset",
];

/// Reads one text message from a client, or says what is wrong with it.
pub(crate) fn parse(text: &str) -> Result<Incoming, String> {
    let value: Value =
        serde_json::from_str(text).map_err(|why| format!("malformed message: {why}"))?;
    let Some(op) = value.get("op").and_then(Value::as_str) else {
        return Err("malformed message: not an object with a string \"op\"".into());
    };
    if UNSUPPORTED.contains(&op) {
        return Err(format!(
            "op {op:?} is not supported: this server's only capability is \"parameters\" \
             (reads)"
        ));
    }
    let op = op.to_owned();
    serde_json::from_value(value).map_err(|why| {
        if why.to_string().starts_with("unknown variant") {
            format!("unknown op {op:?}")
        } else {
            format!("malformed {op:?} message: {why}")
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_data_frame_is_little_endian_with_its_header() {
        let frame = message_data(0x0102_0304, 0x1122_3344_5566_7788, b"{}");
        assert_eq!(
            frame,
            [
                0x01, 0x04, 0x03, 0x02, 0x01, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, b'{',
                b'}'
            ]
        );
        assert_eq!(frame.len(), DATA_HEADER + 2);
    }

    #[test]
    fn messages_are_read_or_refused_with_a_reason() {
        assert_eq!(
            parse(r#"{"op":"subscribe","subscriptions":[{"id":3,"channelId":1}]}"#),
            Ok(Incoming::Subscribe {
                subscriptions: vec![Subscription {
                    id: 3,
                    channel_id: 1
                }]
            })
        );
        assert_eq!(
            parse(r#"{"op":"getParameters","parameterNames":["x"]}"#),
            Ok(Incoming::GetParameters {
                parameter_names: vec!["x".into()],
                id: None
            })
        );
        for (bad, expected) in [
            ("", "malformed message"),
            ("[1]", "malformed message"),
            (r#"{"op":7}"#, "malformed message"),
            (r#"{"op":"shutdown"}"#, "unknown op \"shutdown\""),
            (r#"{"op":"subscribe"}"#, "malformed \"subscribe\" message"),
            (
                r#"{"op":"subscribe","subscriptions":[{"id":-1,"channelId":1}]}"#,
                "malformed \"subscribe\" message",
            ),
            (r#"{"op":"fetchAsset","uri":"x"}"#, "not supported"),
        ] {
            let why = parse(bad).unwrap_err();
            assert!(why.contains(expected), "{bad}: {why}");
        }
    }

    #[test]
    fn schemas_follow_the_json_types_of_the_sample() {
        let sample = json!({"x": 0.5, "n": 3, "on": true, "name": "a", "v": [1.5, 2.0]});
        assert_eq!(
            schema_of(&sample),
            json!({"type": "object", "properties": {
                "x": {"type": "number"}, "n": {"type": "integer"}, "on": {"type": "boolean"},
                "name": {"type": "string"}, "v": {"type": "array", "items": {"type": "number"}}
            }})
        );
        let schema = value_schema(&json!(0.5));
        assert_eq!(schema["properties"]["value"], json!({"type": "number"}));
        assert_eq!(schema["required"], json!(["seq", "value"]));
    }

    #[test]
    fn a_float_parameter_says_so() {
        let text = parameter_values(
            &[
                Parameter::new("x".into(), json!(1.0)),
                Parameter::new("n".into(), json!(2)),
            ],
            Some("r1"),
        );
        let value: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            value,
            json!({"op": "parameterValues", "id": "r1", "parameters": [
                {"name": "x", "value": 1.0, "type": "float64"}, {"name": "n", "value": 2}
            ]})
        );
    }
}
