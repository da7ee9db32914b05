//! What `qs watch` shows, and what it trusts.
//!
//! The computation's own word is its snapshot on `P/@snapshot`: every published snapshot
//! (and every reply to a get of it) carries every value. Each one **re-syncs the whole
//! table**: every row takes the snapshot's value and seq, and rows the snapshot lacks go.
//! Between snapshots, a value put on `P/<name>` replaces its row's value as it arrives
//! (**the latest arrival wins**, whatever its seq), and the header shows the seq of the
//! latest snapshot. So nothing is kept because of a number a sample carries: a forged or
//! stale sample shows until the computation's next snapshot, a computation that restarts
//! (its seq starting over) shows its new values at its first snapshot, and a liveliness
//! token declared again after the computation was gone clears the table.

use std::collections::BTreeMap;
use std::time::Instant;

/// A snapshot as it travels on `P/@snapshot`: `{"seq": 12, "values": {...}}`.
#[derive(Debug)]
pub struct Snapshot {
    pub seq: u64,
    pub values: serde_json::Map<String, serde_json::Value>,
}

impl Snapshot {
    /// The snapshot in `json`, if it is one.
    pub fn parse(json: &str) -> Option<Self> {
        let serde_json::Value::Object(mut object) = serde_json::from_str(json).ok()? else {
            return None;
        };
        let seq = object.get("seq")?.as_u64()?;
        let serde_json::Value::Object(values) = object.remove("values")? else {
            return None;
        };
        Some(Self { seq, values })
    }
}

/// A JSON value as the table shows it: numbers with six decimals when not integers.
fn show(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Number(n) if !(n.is_i64() || n.is_u64()) => {
            format!("{:.6}", n.as_f64().unwrap_or(f64::NAN))
        }
        value => value.to_string(),
    }
}

/// One row of the table.
#[derive(Default)]
struct Row {
    value: String,
    seq: Option<u64>,
    /// Puts on `P/<name>` received.
    updates: u64,
    /// `updates` at the last refresh.
    shown: u64,
}

/// The table `qs watch` redraws.
#[derive(Default)]
pub struct Table {
    rows: BTreeMap<String, Row>,
    /// The seq of the latest snapshot.
    seq: Option<u64>,
    snapshots: u64,
    snapshots_shown: u64,
    last_snapshot: Option<Instant>,
    /// The liveliness token: `None` before any news of it.
    alive: Option<bool>,
    /// Anything at all came from under the prefix.
    heard: bool,
}

impl Table {
    /// A put (`Some(json)`) or delete (`None`) on `P/<name>`, with the seq it carried.
    pub fn value(&mut self, name: &str, json: Option<&str>, seq: Option<u64>) {
        self.heard = true;
        let Some(json) = json else {
            self.rows.remove(name);
            return;
        };
        let row = self.rows.entry(name.to_owned()).or_default();
        row.value = match serde_json::from_str(json) {
            Ok(value) => show(&value),
            Err(_) => json.to_owned(),
        };
        row.seq = seq;
        row.updates += 1;
    }

    /// A snapshot put on `P/@snapshot` or replied to a get of it: the table re-synced from
    /// it. Anything that is no snapshot is ignored.
    pub fn snapshot(&mut self, json: &str) {
        let Some(snapshot) = Snapshot::parse(json) else {
            return;
        };
        self.heard = true;
        self.rows
            .retain(|name, _| snapshot.values.contains_key(name.as_str()));
        for (name, value) in &snapshot.values {
            let row = self.rows.entry(name.clone()).or_default();
            row.value = show(value);
            row.seq = Some(snapshot.seq);
        }
        self.seq = Some(snapshot.seq);
        self.snapshots += 1;
        self.last_snapshot = Some(Instant::now());
    }

    /// The liveliness token `P` came (`true`) or went (`false`). A token that comes back
    /// after it went is a new run of the computation: the old one's values go.
    pub fn token(&mut self, alive: bool) {
        self.heard = true;
        if alive && self.alive == Some(false) {
            self.rows.clear();
            self.seq = None;
            self.last_snapshot = None;
        }
        self.alive = Some(alive);
    }

    /// How long ago the latest snapshot came, if one did.
    pub fn since_snapshot(&self, now: Instant) -> Option<std::time::Duration> {
        self.last_snapshot
            .map(|at| now.saturating_duration_since(at))
    }

    /// Nothing at all came from under the prefix: no token, no value, no snapshot.
    pub fn never_answered(&self) -> bool {
        !self.heard
    }

    /// The table as text, rates over the last `seconds`; marks the rates as shown.
    pub fn render(&mut self, prefix: &str, seconds: f64) -> String {
        let status = match self.alive {
            Some(true) => "running",
            Some(false) => "gone",
            None => "not seen",
        };
        let snapshots = (self.snapshots - self.snapshots_shown) as f64 / seconds;
        self.snapshots_shown = self.snapshots;
        let seq = self.seq.map_or_else(|| "-".to_owned(), |s| s.to_string());
        let mut out = format!(
            "{prefix}  [{status}]  seq {seq}  {snapshots:.1} snapshots/s  {} values\n",
            self.rows.len()
        );
        out += &format!(
            "{:<32} {:>18} {:>12} {:>9}\n",
            "NAME", "VALUE", "SEQ", "PER S"
        );
        for (name, row) in self.rows.iter_mut() {
            let rate = (row.updates - row.shown) as f64 / seconds;
            row.shown = row.updates;
            let seq = row.seq.map_or_else(|| "-".to_owned(), |s| s.to_string());
            out += &format!("{name:<32} {:>18} {seq:>12} {rate:>9.1}\n", row.value);
        }
        out
    }
}
