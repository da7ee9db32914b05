//! Helpers shared by the integration tests: a recording connection and a small state.

#![allow(dead_code)]

use queueserver::{Connection, ConnectionError, IDict, Query, Response, Snapshot};
use std::collections::BTreeMap;

/// The state most tests publish.
pub type State = BTreeMap<&'static str, f64>;

/// A state with keys `x` and `v`.
pub fn state(x: f64, v: f64) -> State {
    BTreeMap::from([("x", x), ("v", v)])
}

/// One answer as a connection saw it.
#[derive(Clone, Debug, PartialEq)]
pub enum Answer {
    Value(&'static str, f64, u64),
    NotFound(&'static str, u64),
    All(u64),
}

/// Records everything it receives; can be told to fail.
#[derive(Debug, Default)]
pub struct Recorder {
    pub updates: Vec<u64>,
    pub answers: Vec<Answer>,
    pub subscribed: bool,
    pub fail_updates: Option<ConnectionError>,
    pub fail_responses: Option<ConnectionError>,
}

impl Recorder {
    pub fn subscriber() -> Self {
        Self {
            subscribed: true,
            ..Self::default()
        }
    }

    pub fn requester() -> Self {
        Self::default()
    }
}

impl Connection<State> for Recorder {
    fn on_update(&mut self, snapshot: &Snapshot<State>) -> Result<(), ConnectionError> {
        if let Some(error) = self.fail_updates {
            return Err(error);
        }
        self.updates.push(snapshot.seq());
        Ok(())
    }

    fn on_response(&mut self, response: Response<'_, State>) -> Result<(), ConnectionError> {
        if let Some(error) = self.fail_responses {
            return Err(error);
        }
        self.answers.push(match response {
            Response::Value { key, value, seq } => Answer::Value(key, *value, seq),
            Response::NotFound { key, seq } => Answer::NotFound(key, seq),
            Response::Snapshot(s) => Answer::All(s.seq()),
        });
        Ok(())
    }

    fn wants_updates(&self) -> bool {
        self.subscribed
    }
}

/// The query of a key request.
pub fn key(k: &'static str) -> Query<&'static str> {
    Query::Key(k)
}

/// Holds `x`; reading `boom` panics: a fault of the IDict, not of a connection.
#[derive(Clone, Debug, Default)]
pub struct Brittle;

impl IDict for Brittle {
    type Key = &'static str;
    type Value = f64;

    fn get(&self, key: &&'static str) -> Option<f64> {
        match *key {
            "x" => Some(1.0),
            "boom" => panic!("reading boom"),
            _ => None,
        }
    }
}
