//! The stream's messages: JSON text frames, each an object with a `"type"`. The crate
//! README documents them for other readers; this module writes and reads them.

use queueserver::idict::ByName;
use queueserver::{IDict, Stats};
use serde::{Deserialize, Serialize};
use std::time::{SystemTime, UNIX_EPOCH};

/// The version of the message format, sent in `hello`.
pub const FORMAT_VERSION: u32 = 1;

/// Milliseconds since the Unix epoch, by the system clock (0 if it is set before 1970).
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[derive(Serialize)]
pub(crate) struct Hello<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub version: u32,
    pub names: &'a [String],
    pub rate_hz: f64,
    pub max_rate_hz: f64,
    pub outbox: usize,
    pub max_message: usize,
    pub server_time: u64,
    pub running: bool,
}

#[derive(Serialize)]
#[serde(bound(serialize = "D: IDict, D::Value: Serialize"))]
pub(crate) struct Update<'a, D> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub seq: u64,
    pub time: u64,
    pub values: ByName<'a, D>,
}

/// `{"type":"update","seq":..,"time":..,"values":{..}}`, or why the snapshot has no JSON
/// form (a key without a valid name, a value serde refuses).
pub(crate) fn update<D>(seq: u64, time: u64, data: &D) -> Result<String, serde_json::Error>
where
    D: IDict,
    D::Value: Serialize,
{
    serde_json::to_string(&Update {
        kind: "update",
        seq,
        time,
        values: ByName(data),
    })
}

#[derive(Serialize)]
pub(crate) struct StatsMessage<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub time: u64,
    pub server: Option<&'a Stats>,
    pub view: &'a crate::ViewStats,
}

/// `{"type":"dropped","updates":N}`: the page's count of updates dropped so far.
pub(crate) fn dropped(updates: u64) -> String {
    format!(r#"{{"type":"dropped","updates":{updates}}}"#)
}

/// `{"type":"rate","hz":..}`: the rate the page is now sent updates at.
pub(crate) fn rate(hz: f64) -> String {
    serde_json::json!({ "type": "rate", "hz": hz }).to_string()
}

/// `{"type":"status","running":..,"reason":..}`.
pub(crate) fn status(running: bool, reason: &str) -> String {
    serde_json::json!({ "type": "status", "running": running, "reason": reason }).to_string()
}

/// `{"type":"error","error":..}`, with the ask's `id` when the error answers one.
pub(crate) fn error(id: Option<u64>, error: &str) -> String {
    match id {
        Some(id) => serde_json::json!({ "type": "error", "id": id, "error": error }),
        None => serde_json::json!({ "type": "error", "error": error }),
    }
    .to_string()
}

/// The part of an answer shared by every page that asked for the same key:
/// `"name":..,"seq":..,"found":..[,"value":..]`, made once per answer.
pub(crate) fn answer_body<V: Serialize>(name: &str, seq: u64, value: Option<&V>) -> String {
    #[derive(Serialize)]
    struct Body<'a, V> {
        name: &'a str,
        seq: u64,
        found: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        value: Option<&'a V>,
    }
    let body = Body {
        name,
        seq,
        found: value.is_some(),
        value,
    };
    match serde_json::to_string(&body) {
        // `{..}` without its braces, to be put after the asker's own fields.
        Ok(text) => text[1..text.len() - 1].to_owned(),
        Err(why) => {
            let why = serde_json::to_string(&format!("the value has no JSON form: {why}"))
                .unwrap_or_else(|_| "\"the value has no JSON form\"".to_owned());
            format!(
                r#""name":{},"seq":{seq},"found":true,"error":{why}"#,
                quoted(name)
            )
        }
    }
}

/// A whole answer for one page: its ask's id, then the shared body.
pub(crate) fn answer(id: u64, body: &str) -> String {
    format!(r#"{{"type":"answer","id":{id},{body}}}"#)
}

fn quoted(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".to_owned())
}

/// What a page may send.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub(crate) enum Incoming {
    /// `{"type":"ask","id":7,"name":"position"}`: the value of one key, through the
    /// server's request path.
    Ask { id: u64, name: String },
    /// `{"type":"rate","hz":10}`: send this page at most `hz` updates per second.
    Rate { hz: f64 },
}

/// Reads one message from a page, or says what is wrong with it.
pub(crate) fn parse(text: &str) -> Result<Incoming, String> {
    serde_json::from_str(text).map_err(|why| format!("malformed message: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_read_or_refused_with_a_reason() {
        assert_eq!(
            parse(r#"{"type":"ask","id":3,"name":"x"}"#),
            Ok(Incoming::Ask {
                id: 3,
                name: "x".into()
            })
        );
        assert_eq!(
            parse(r#"{"type":"rate","hz":2.5}"#),
            Ok(Incoming::Rate { hz: 2.5 })
        );
        for bad in [
            "",
            "not json",
            "[]",
            r#"{"type":"ask","id":-1,"name":"x"}"#,
            r#"{"type":"ask","name":"x"}"#,
            r#"{"type":"ask","id":1,"name":"x","extra":1}"#,
            r#"{"type":"shutdown"}"#,
            r#"{"id":1}"#,
        ] {
            let why = parse(bad).unwrap_err();
            assert!(why.starts_with("malformed message: "), "{bad}: {why}");
        }
    }

    #[test]
    fn an_answer_is_one_object_with_the_askers_id() {
        let body = answer_body("speed", 12, Some(&2.5));
        let text = answer(7, &body);
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"type":"answer","id":7,"name":"speed","seq":12,"found":true,"value":2.5})
        );
        let missing: serde_json::Value =
            serde_json::from_str(&answer(8, &answer_body::<f64>("torque", 12, None))).unwrap();
        assert_eq!(
            missing,
            serde_json::json!({"type":"answer","id":8,"name":"torque","seq":12,"found":false})
        );
    }
}
